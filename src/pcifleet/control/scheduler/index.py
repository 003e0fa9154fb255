"""The in-memory candidate index: which hosts could take a request, best first, without a scan.

Per host the index keeps a :class:`HostSummary`: liveness, the generation it was built from,
free vCPUs and memory, and the free count of every pool key (pool keys carry the NUMA node,
so these are also the free counts per node). Hosts are kept in weigher order, one sorted list
per kind of guest (with and without device requests); a request walks that list and keeps
the hosts that pass the cheap checks — up, enough vCPUs and memory, and for every device
request at least ``count`` free devices in pools whose key the request can use — so the
expensive host fit runs on few hosts, usually one.

The database stays the truth:

- :meth:`CandidateIndex.load` rebuilds everything from the database (the bulk path) at start;
- :meth:`CandidateIndex.update` records a host this process just claimed on or freed, after
  its transaction committed;
- :meth:`CandidateIndex.catch_up` notices other processes' writes with one cheap query of every
  host's generation, at most every ``refresh_interval_s`` (or at once after a conflict), and
  reloads a bounded number of changed hosts per round (a claim reloads any host it touches
  anyway). A stale summary can only cost a fit on a host that turns out full, or one retry.

Other processes' claims and frees are replayed on the cached views
(:mod:`~pcifleet.control.scheduler.delta`), so catching up costs one query, not a reload per
host. Once such a replay shows another process claims on the fleet, equally weighted hosts
are ordered by this process's own permutation, and hosts another process changed lately are
tried after the others (:meth:`CandidateIndex.is_foreign`): concurrent processes keep to
different hosts instead of racing for the same best one.

Built host views (:class:`~pcifleet.domain.hoststate.HostState`) are cached per host together
with the generation they reflect, in an LRU bounded by ``cache_size``; a claim uses the
cached view when the generation it reads in its transaction matches, and reloads the host
otherwise.
"""

from __future__ import annotations

import bisect
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from sqlalchemy.orm import Session, sessionmaker

from pcifleet.control.scheduler.delta import catch_up_views
from pcifleet.control.scheduler.hostload import (
    HostHead,
    LoadedHost,
    load_fleet,
    load_host,
    read_heads,
)
from pcifleet.control.scheduler.outcomes import DOWN, RESOURCES, HostOutcome
from pcifleet.control.scheduler.weighers import Weigher, Weight
from pcifleet.domain.device_fit import ALL_TYPE_STAGES, label, plan_of
from pcifleet.domain.hoststate import HostState
from pcifleet.domain.placement import CpuPolicy, FitStage, InstanceRequest
from pcifleet.domain.pool import KeySet, PoolKey
from pcifleet.domain.request import DeviceMatch

DEFAULT_CACHE_SIZE: Final = 2048
DEFAULT_REFRESH_INTERVAL_S: Final = 0.5
#: hosts reloaded per catch-up round (the rest stay marked stale until a later round)
DEFAULT_REFRESH_BATCH: Final = 32
#: how long a host another process claimed on or freed counts as that process's (seconds)
DEFAULT_FOREIGN_S: Final = 2.0

Alternatives = tuple[DeviceMatch, ...]


class _KeyRegistry:
    """Pool keys seen in the fleet, numbered; which numbers each request can use (memoized)."""

    def __init__(self) -> None:
        self._ids: dict[PoolKey, int] = {}
        self._keys: list[PoolKey] = []
        #: alternatives -> (usable key ids, how many keys were examined)
        self._usable: dict[Alternatives, tuple[frozenset[int], int]] = {}
        self._lock = threading.Lock()

    def id_of(self, key: PoolKey) -> int:
        found = self._ids.get(key)
        if found is None:
            with self._lock:
                found = self._ids.get(key)
                if found is None:
                    found = self._ids[key] = len(self._keys)
                    self._keys.append(key)
        return found

    def usable(self, alternatives: Alternatives) -> frozenset[int]:
        """Keys that match an alternative and survive every type stage of the fit."""
        known, examined = self._usable.get(alternatives, (frozenset(), 0))
        keys = self._keys
        if examined == len(keys):
            return known
        fresh = tuple(keys[examined:])
        plan = plan_of(KeySet(fresh), alternatives)
        add = {examined + i for i, depth in plan.survives.items() if depth == ALL_TYPE_STAGES}
        result = known | add
        self._usable[alternatives] = (result, examined + len(fresh))
        return result


@dataclass(frozen=True, slots=True)
class HostSummary:
    """What the index knows about one host (immutable; replaced on every change)."""

    id: str
    name: str
    generation: int
    schedulable: bool
    #: (pool key id, free count) for pools with free devices
    free: tuple[tuple[int, int], ...]
    free_devices: int
    free_vcpus: int
    free_pinnable: int
    free_memory_mb: int
    cells: int
    #: the summary reflects an older generation than the database's (another writer)
    stale: bool = False
    #: bit k set when pool key k has free devices (``free`` as a bitmask: the scan's first test)
    free_keys: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "free_keys", key_mask(key for key, _ in self.free))

    def free_in(self, usable: frozenset[int]) -> int:
        return sum(count for key, count in self.free if key in usable)

    def has_room(self, request: InstanceRequest) -> bool:
        """``shortfall(request) is None`` without building the reason (the scan's hot path)."""
        nodes = request.guest_nodes
        if nodes is not None and nodes > self.cells:
            return False
        if request.cpu_policy is CpuPolicy.DEDICATED:
            if self.free_pinnable < request.vcpus:
                return False
        elif self.free_vcpus < request.vcpus:
            return False
        return request.hugepage_size_kb is not None or self.free_memory_mb >= request.memory_mb

    def shortfall(self, request: InstanceRequest) -> str | None:
        """Why the host cannot take the guest's vCPUs and memory (mirrors the fit's check)."""
        nodes = request.guest_nodes
        if nodes is not None and nodes > self.cells:
            return f"resources: the guest has {nodes} NUMA nodes, the host {self.cells} cells"
        if request.cpu_policy is CpuPolicy.DEDICATED:
            if self.free_pinnable < request.vcpus:
                return f"resources: host has {self.free_pinnable} CPUs free to pin, " + (
                    f"{request.vcpus} needed"
                )
        elif self.free_vcpus < request.vcpus:
            return (
                f"resources: host has {self.free_vcpus} shared vCPUs free, {request.vcpus} needed"
            )
        if request.hugepage_size_kb is None and self.free_memory_mb < request.memory_mb:
            return (
                f"resources: host has {self.free_memory_mb} MB memory free, "
                f"{request.memory_mb} needed"
            )
        return None


def summarize_host(head: HostHead, view: HostState, registry: _KeyRegistry) -> HostSummary:
    totals = view.totals
    ratio = view.cpu_allocation_ratio
    free = tuple((registry.id_of(pool.key), pool.count) for pool in view.pools if pool.count > 0)
    return HostSummary(
        id=head.id,
        name=head.name,
        generation=head.generation,
        schedulable=head.schedulable,
        free=free,
        free_devices=sum(count for _, count in free),
        free_vcpus=int(totals.unpinned_cpus * ratio - totals.shared_vcpus),
        free_pinnable=int(totals.unpinned_cpus - totals.shared_vcpus / ratio),
        free_memory_mb=int(totals.memory_mb * view.ram_allocation_ratio - totals.memory_used_mb),
        cells=len(view.cells),
    )


def key_mask(keys: Iterable[int]) -> int:
    """Pool key ids as a bitmask (bit k for key k)."""
    mask = 0
    for key in keys:
        mask |= 1 << key
    return mask


@dataclass(frozen=True, slots=True)
class RequestFilter:
    """A request's cheap checks, prepared once per request."""

    request: InstanceRequest
    usable: tuple[frozenset[int], ...]
    #: each device request's noun phrase (a failed claim words a rejection for every host)
    labels: tuple[str, ...]
    #: per device request: its usable keys as a bitmask, its count, its usable keys
    _devices: tuple[tuple[int, int, frozenset[int]], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        requests = self.request.device_requests
        devices = tuple(
            (key_mask(usable), r.count, usable)
            for r, usable in zip(requests, self.usable, strict=True)
        )
        object.__setattr__(self, "_devices", devices)

    @property
    def wants_devices(self) -> bool:
        return bool(self.request.device_requests)

    def passes(self, host: HostSummary) -> bool:
        """``reject(host) is None`` without building the outcome: a claim scans past many
        full hosts (packed hosts come first) and needs no reasons for them. The devices go
        first, as one AND per device request: late in a fleet's filling, most hosts a
        device request scans have vCPUs left but none of the devices it can use."""
        if not host.schedulable:
            return False
        if not host.stale and not self._has_devices(host):
            return False
        return host.has_room(self.request)

    def _has_devices(self, host: HostSummary) -> bool:
        free_keys = host.free_keys
        for mask, count, usable in self._devices:
            if not free_keys & mask:  # no usable pool has a free device
                return False
            if count > 1 and host.free_in(usable) < count:
                return False
        return True

    def reject(self, host: HostSummary, weight: Weight = ()) -> HostOutcome | None:
        """The host's failure if the index can already tell, else None (worth a fit)."""
        if not host.schedulable:
            return HostOutcome(
                host.id, host.name, False, DOWN, "host is down or disabled", weight=weight
            )
        short = host.shortfall(self.request)
        if short is not None:
            return HostOutcome(host.id, host.name, False, RESOURCES, short, weight=weight)
        if host.stale:
            return None  # counts may be out of date: let the fit decide on fresh state
        for i, (device_request, usable) in enumerate(
            zip(self.request.device_requests, self.usable, strict=True)
        ):
            have = host.free_in(usable)
            if have < device_request.count:
                message = (
                    f"spec: {have} free devices match {self.labels[i]}, "
                    f"{device_request.count} needed"
                )
                return HostOutcome(
                    host.id, host.name, False, str(FitStage.SPEC), message, i, weight
                )
        return None


@dataclass(slots=True)
class _Cached:
    generation: int
    view: HostState


@dataclass(slots=True)
class CandidateIndex:
    """See the module docstring. Safe to share between the threads of one process."""

    weigher: Weigher
    cache_size: int = DEFAULT_CACHE_SIZE
    refresh_interval_s: float = DEFAULT_REFRESH_INTERVAL_S
    refresh_batch: int = DEFAULT_REFRESH_BATCH
    clock: Callable[[], float] = time.monotonic
    _registry: _KeyRegistry = field(default_factory=_KeyRegistry)
    _hosts: dict[str, HostSummary] = field(default_factory=dict)
    #: wants_devices -> [(weight..., name, id)] sorted
    _order: dict[bool, list[tuple[object, ...]]] = field(
        default_factory=lambda: {True: [], False: []}
    )
    _entries: dict[str, dict[bool, tuple[object, ...]]] = field(default_factory=dict)
    _cache: OrderedDict[str, _Cached] = field(default_factory=OrderedDict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _load_lock: threading.RLock = field(default_factory=threading.RLock)
    _last_refresh: float = float("-inf")
    #: host id -> when another process's claim or free on it was last replayed
    _foreign: dict[str, float] = field(default_factory=dict)
    foreign_s: float = DEFAULT_FOREIGN_S
    #: salt of the per-process order among equally weighted hosts (None: by name)
    _affinity: str | None = None
    #: the salt :meth:`replay` switches the affinity on with (None: never)
    affinity_salt: str | None = None
    loaded: bool = False
    #: the throttled catch-up reloads changed hosts at once (else it only marks them stale)
    eager_reload: bool = True

    # -- building -----------------------------------------------------------------------

    def load(self, sessions: sessionmaker[Session]) -> int:
        """Rebuild from the database (bulk path); returns the number of hosts.

        The database is read without holding the index lock (a claim holding the database
        lock may be waiting for the index lock), then the new contents are swapped in.
        """
        with self._load_lock:
            fresh = CandidateIndex(
                self.weigher,
                self.cache_size,
                self.refresh_interval_s,
                self.refresh_batch,
                self.clock,
                self._registry,
            )
            fresh._affinity = self._affinity
            with sessions() as session:
                for loaded in load_fleet(session):
                    fresh._put(loaded.head, loaded.view, sort=False)
            for entries in fresh._order.values():
                entries.sort()
            with self._lock:
                self._hosts = fresh._hosts
                self._entries = fresh._entries
                self._order = fresh._order
                self._cache = fresh._cache
                self._last_refresh = self.clock()
                self.loaded = True
            return len(self._hosts)

    def ensure_loaded(self, sessions: sessionmaker[Session]) -> bool:
        """Load once (the first caller loads, concurrent callers wait); True if it loaded."""
        if self.loaded:
            return False
        with self._load_lock:
            if self.is_loaded():  # another thread loaded it while we waited
                return False
            self.load(sessions)
            return True

    def is_loaded(self) -> bool:
        return self.loaded

    def update(self, head: HostHead, view: HostState) -> None:
        """Record ``view`` as the host's state at ``head.generation`` (after a commit)."""
        with self._lock:
            known = self._hosts.get(head.id)
            if known is not None and known.generation > head.generation:
                return  # a newer state is already known
            self._put(head, view, sort=True)

    def _put(self, head: HostHead, view: HostState, *, sort: bool) -> None:
        summary = summarize_host(head, view, self._registry)
        self._set_summary(summary, sort=sort)
        self._cache[head.id] = _Cached(head.generation, view)
        self._cache.move_to_end(head.id)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _set_summary(self, summary: HostSummary, *, sort: bool) -> None:
        host_id = summary.id
        self._hosts[host_id] = summary
        old = self._entries.get(host_id)
        tie = self._tie(host_id)
        new = {
            kind: (*self.weigher.weight(summary, kind), tie, summary.name, host_id)
            for kind in (True, False)
        }
        self._entries[host_id] = new
        for kind, entries in self._order.items():
            if not sort:
                entries.append(new[kind])
                continue
            if old is not None:
                at = bisect.bisect_left(entries, old[kind])
                if at < len(entries) and entries[at] == old[kind]:
                    del entries[at]
            bisect.insort(entries, new[kind])

    def _tie(self, host_id: str) -> str:
        """The tie-break among equal weights: this process's own stable permutation once
        another process is known to claim on the fleet, else none (the name decides)."""
        if self._affinity is None:
            return ""
        return hashlib.blake2b(f"{self._affinity}/{host_id}".encode(), digest_size=8).hexdigest()

    def use_affinity(self, salt: str) -> None:
        """Order equally weighted hosts by a permutation of ``salt`` (one per process), so
        that concurrent processes open different hosts instead of racing for the same."""
        with self._lock:
            if self._affinity is not None:
                return
            self._affinity = salt
            for entries in self._order.values():
                entries.clear()
            for summary in list(self._hosts.values()):
                self._set_summary(summary, sort=False)
            for entries in self._order.values():
                entries.sort()

    def is_foreign(self, host_id: str) -> bool:
        """Whether another process claimed on or freed ``host_id`` lately (see
        :meth:`replay`): a claim tries such hosts after the others, so concurrent processes
        keep to their own hosts, whose views stay current and whose compare-and-swap wins."""
        return self.clock() - self._foreign.get(host_id, float("-inf")) < self.foreign_s

    def note_foreign(self, host_id: str) -> None:
        """Another process just claimed on or freed ``host_id`` (see :meth:`is_foreign`)."""
        self._foreign[host_id] = self.clock()

    def mark_stale(self, host_id: str, generation: int) -> None:
        """The host moved on from ``generation`` (a lost compare-and-swap): until it is
        reloaded, its counts are not trusted (a claim that already recorded a newer state
        is left alone)."""
        with self._lock:
            known = self._hosts.get(host_id)
            if known is not None and known.generation == generation and not known.stale:
                self._set_summary(replace(known, stale=True), sort=True)

    def forget(self, host_id: str) -> None:
        with self._lock:
            old = self._entries.pop(host_id, None)
            self._hosts.pop(host_id, None)
            self._cache.pop(host_id, None)
            if old is None:
                return
            for kind, entries in self._order.items():
                at = bisect.bisect_left(entries, old[kind])
                if at < len(entries) and entries[at] == old[kind]:
                    del entries[at]

    # -- reading ------------------------------------------------------------------------

    def summary(self, host_id: str) -> HostSummary | None:
        return self._hosts.get(host_id)

    def summaries(self) -> list[HostSummary]:
        return list(self._hosts.values())

    def __len__(self) -> int:
        return len(self._hosts)

    def cached_view(self, host_id: str, generation: int) -> HostState | None:
        """The cached view of the host at exactly ``generation``, else None."""
        with self._lock:
            cached = self._cache.get(host_id)
            if cached is None or cached.generation != generation:
                return None
            self._cache.move_to_end(host_id)
            return cached.view

    def cache_len(self) -> int:
        return len(self._cache)

    def prepare(self, request: InstanceRequest) -> RequestFilter:
        usable = tuple(self._registry.usable(r.alternatives) for r in request.device_requests)
        return RequestFilter(request, usable, tuple(label(r) for r in request.device_requests))

    def ordered(self, wants_devices: bool) -> list[tuple[HostSummary, Weight]]:
        """Every host in weigher order (a snapshot), with its weight."""
        with self._lock:
            entries = list(self._order[wants_devices])
        hosts = self._hosts
        found = []
        for entry in entries:
            summary = hosts.get(str(entry[-1]))
            if summary is not None:
                found.append((summary, _weight(entry)))
        return found

    def candidates(self, check: RequestFilter) -> Iterator[tuple[HostSummary, Weight]]:
        """Hosts that pass the cheap checks, best first (lazily: usually one is enough)."""
        with self._lock:
            entries = list(self._order[check.wants_devices])
        hosts = self._hosts
        for entry in entries:
            summary = hosts.get(str(entry[-1]))
            if summary is not None and check.passes(summary):
                yield summary, _weight(entry)

    # -- catching up with other processes ----------------------------------------------

    def catch_up(self, sessions: sessionmaker[Session], *, force: bool = False) -> int:
        """Notice other writers' changes (throttled); returns how many hosts changed."""
        now = self.clock()
        if not force and now - self._last_refresh < self.refresh_interval_s:
            return 0
        self._last_refresh = now
        with sessions() as session:
            return self.catch_up_in(session, reload=self.eager_reload)

    def catch_up_in(self, session: Session, *, reload: bool = True) -> int:
        """:meth:`catch_up` in the caller's transaction, unthrottled; returns hosts changed.

        ``reload=False`` only marks the changed hosts stale: a claim then reloads a stale
        host when it actually tries it, instead of every request paying for a batch of hosts
        it will never use.
        """
        changed = self._mark(read_heads(session))
        done = self.replay(session, changed)
        left = [head for head in changed if head.id not in done]
        for head in left[: self.refresh_batch if reload else 0]:
            loaded = load_host(session, head)
            self.update(loaded.head, loaded.view)
        return len(changed)

    def replay(self, session: Session, heads: Sequence[HostHead]) -> set[str]:
        """Catch cached views up to ``heads`` by replaying other processes' claims and frees
        (:mod:`~pcifleet.control.scheduler.delta`, one query); returns the hosts caught up,
        already recorded. Hosts without a cached view, or whose changes cannot be replayed,
        are left to a reload."""
        wanted = {head.id: head for head in heads}
        with self._lock:
            cached = [(i, self._cache.get(i)) for i in wanted]
        stale = [
            (host_id, entry.generation, wanted[host_id].generation, entry.view)
            for host_id, entry in cached
            if entry is not None and entry.generation < wanted[host_id].generation
        ]
        done = catch_up_views(session, stale)
        for host_id, view in done.items():
            self.update(wanted[host_id], view)
            self.note_foreign(host_id)
        if done and self.affinity_salt is not None:  # another process claims here too
            self.use_affinity(self.affinity_salt)
        return set(done)

    def caught_up_view(self, session: Session, head: HostHead) -> HostState | None:
        """The host's view at ``head.generation``: cached, or replayed from an older cached
        one (recorded); None when only a reload can tell."""
        view = self.cached_view(head.id, head.generation)
        if view is None and self.replay(session, [head]):
            view = self.cached_view(head.id, head.generation)
        return view

    def _mark(self, heads: Sequence[HostHead]) -> list[HostHead]:
        """Mark hosts whose generation or liveness moved; returns the ones to reload."""
        changed: list[HostHead] = []
        seen = set()
        with self._lock:
            for head in heads:
                seen.add(head.id)
                known = self._hosts.get(head.id)
                if known is None or known.generation != head.generation:
                    changed.append(head)
                    if known is not None and not known.stale:
                        self._set_summary(_restamp(known, head, stale=True), sort=True)
                elif known.schedulable != head.schedulable:
                    self._set_summary(_restamp(known, head, stale=False), sort=True)
            for gone in [host_id for host_id in self._hosts if host_id not in seen]:
                self.forget(gone)
        return changed

    def reload(self, session: Session, head: HostHead) -> LoadedHost:
        """Load one host in the caller's transaction (not recorded until :meth:`update`)."""
        return load_host(session, head)


def _restamp(known: HostSummary, head: HostHead, *, stale: bool) -> HostSummary:
    return HostSummary(
        known.id,
        known.name,
        known.generation,
        head.schedulable,
        known.free,
        known.free_devices,
        known.free_vcpus,
        known.free_pinnable,
        known.free_memory_mb,
        known.cells,
        stale,
    )


def _weight(entry: tuple[object, ...]) -> Weight:
    return tuple(value for value in entry[:-2] if isinstance(value, int))
