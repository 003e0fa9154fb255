"""Schedule and claim in one transaction, retried on conflict; and the same decision as a dry run.

:meth:`Scheduler.claim` runs, in ONE database transaction:

1. the caller's checks (quotas, ...) through :class:`ClaimWriter.check`;
2. for each candidate of the index, in weigher order — the best ``subset_size`` hosts in a
   random order first (Nova's ``host_subset_size``), so that concurrent claims land on
   different hosts instead of queueing on the best one: take the host's view (the cached one
   when the index trusts it, with no database read at all; else read the host's generation
   and liveness, and load it from the rows unless the cache holds that generation) and run
   the domain's host fit;
3. on the first fit: ``UPDATE hosts SET generation = generation + 1 WHERE generation = <view's>``
   and the host is up, skipping a row another transaction holds (the compare-and-swap, first,
   so the host row lock is always taken before device rows; it never waits), then the
   caller's instance row (:meth:`ClaimWriter.placed`), then the device rows as the state
   machine says (the chosen devices allocated, their PF/VF relatives blocked). A lost
   compare-and-swap (the view was stale, or another claim holds the host) marks the host
   stale in the index and moves on to the next candidate in the same transaction; after
   three lost ones the index is evidently behind, and the pass stops for step 4's catch-up;
4. if nothing fits: the index catches up in the same transaction (unthrottled) and, if it
   was behind another process (or the pass stopped early), the decision is made once more
   on fresh counts; then the caller records the failure (:meth:`ClaimWriter.unplaced`)
   with the outcome of every host grouped into one sentence.

When every candidate that fitted was lost to concurrent claims (nothing else is left to try),
or on a PostgreSQL serialization failure or deadlock, everything rolls back; the index catches
up at once and the whole decision is made again, at most ``claim_retries`` more times, then
:class:`~pcifleet.domain.errors.ConcurrentUpdate` (409 ``pcifleet.concurrent_update``).
Because every writer of a host's devices moves the generation, two claims can never both
commit on the same host state, whatever the number of controller processes: no device is
ever handed out twice.

:meth:`Scheduler.release` frees an instance's devices the same way (one transaction, CAS,
retries). :meth:`Scheduler.explain` makes the decision without claiming and reports every
host's outcome.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final, Protocol, TypeVar

import sqlalchemy.exc
from sqlalchemy.orm import Session, sessionmaker

from pcifleet.control.db.repo import bump_generation, drop_released_vanished, try_bump_generation
from pcifleet.control.scheduler.claim import device_changes, write_device_changes
from pcifleet.control.scheduler.delta import record_event
from pcifleet.control.scheduler.hostload import HostHead, load_host, read_head
from pcifleet.control.scheduler.index import (
    DEFAULT_CACHE_SIZE,
    DEFAULT_REFRESH_INTERVAL_S,
    CandidateIndex,
    HostSummary,
    RequestFilter,
)
from pcifleet.control.scheduler.outcomes import (
    DEFAULT_EXAMPLES,
    DOWN,
    HostOutcome,
    Summary,
    summarize,
)
from pcifleet.control.scheduler.weighers import Strategy, Weight, weigher_for
from pcifleet.domain.address import PciAddress
from pcifleet.domain.errors import ConcurrentUpdate, NotFound
from pcifleet.domain.fit import apply, fit, release
from pcifleet.domain.hoststate import HostState
from pcifleet.domain.placement import (
    DEFAULT_OPTIONS,
    FitFailure,
    FitOptions,
    InstanceRequest,
    Placement,
)

T = TypeVar("T")
#: which host ids a claim may choose (see :meth:`Scheduler.claim`)
HostChoice = Callable[[str], bool]

#: PostgreSQL error codes worth retrying: serialization failure, deadlock detected
_RETRYABLE_PGCODES: Final = frozenset({"40001", "40P01"})
_BACKOFF_S: Final = 0.002
#: compare-and-swaps a pass over the candidates may lose before the index catches up
_LOSSES_PER_PASS: Final = 3


@dataclass(frozen=True, slots=True)
class SchedulerOptions:
    strategy: Strategy = Strategy.PACK
    fit: FitOptions = DEFAULT_OPTIONS
    #: extra attempts after a lost compare-and-swap (Settings.claim_retries)
    claim_retries: int = 5
    #: host views kept in memory (LRU)
    cache_size: int = DEFAULT_CACHE_SIZE
    #: how often the index looks for other processes' writes (seconds)
    refresh_interval_s: float = DEFAULT_REFRESH_INTERVAL_S
    #: example hosts kept per outcome group (failure details, explain)
    examples: int = DEFAULT_EXAMPLES
    #: how many of the best candidates a claim picks among at random (Nova's
    #: ``host_subset_size``); 1 keeps the weigher's order exactly (deterministic)
    subset_size: int = 1
    #: seed of that random pick (None: from the system)
    seed: int | None = None


class ClaimWriter(Protocol):
    """The caller's part of the claim transaction (the instance use case)."""

    def check(self, session: Session) -> None:
        """Checks that must hold in the same transaction (quotas); raise to abort."""

    def placed(self, session: Session, host: HostHead, placement: Placement) -> bool | None:
        """Write the instance as placed (runs before the device rows that refer to it).

        ``host`` is the host after the claim (its generation already bumped). True when the
        writer stamped the instance row with that generation itself (``host_generation``, see
        :mod:`~pcifleet.control.scheduler.delta`), which saves the scheduler an UPDATE.
        """

    def unplaced(self, session: Session, summary: Summary) -> None:
        """Write the instance as failed, with the reason."""


@dataclass(frozen=True, slots=True)
class Claimed:
    #: the host after the claim (its new generation)
    host: HostHead
    placement: Placement
    view: HostState
    attempts: int


@dataclass(frozen=True, slots=True)
class Unplaced:
    summary: Summary
    attempts: int


@dataclass(frozen=True, slots=True)
class HostChange:
    """What a change of one placed instance does to its host (see :meth:`Scheduler.change_host`)."""

    #: the host's next view
    after: HostState
    #: the devices it allocated or freed (their PF/VF relatives are diffed with them)
    devices: tuple[PciAddress, ...] = ()
    #: the device request of each newly allocated device
    request_ids: Mapping[PciAddress, str] = field(default_factory=dict)


#: ``change(session, head after the bump, view before)``: the host's next view
HostChanger = Callable[[Session, HostHead, HostState], HostChange]


@dataclass(frozen=True, slots=True)
class Explanation:
    """A dry run: what the scheduler would choose, and how every host fared."""

    chosen: HostOutcome | None
    passed: int
    summary: Summary


@dataclass(slots=True)
class _Attempt:
    """What one transaction learnt: views read (recorded in the index after it ends)."""

    seen: dict[str, tuple[HostHead, HostState]] = field(default_factory=dict)
    outcomes: dict[str, HostOutcome] = field(default_factory=dict)
    #: hosts whose compare-and-swap this transaction lost (stale view, or held by another claim)
    lost: set[str] = field(default_factory=set)
    #: the host this transaction is trying or has claimed on (busy for this process's others)
    held: str | None = None
    #: the host's state after this transaction's claim (recorded in the index at commit)
    claimed: tuple[HostHead, HostState] | None = None
    #: the last pass over the candidates stopped at its loss limit (see Scheduler._place)
    cut_short: bool = False


class Scheduler:
    """One per controller process; safe to share between its threads."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        options: SchedulerOptions = SchedulerOptions(),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self.options = options
        self._random = random.Random(options.seed)
        #: hosts this process's claims are on right now (host id -> how many)
        self._busy: dict[str, int] = {}
        self._busy_lock = threading.Lock()
        #: True once a background beat catches the index up (see :meth:`follow`)
        self._followed = False
        self.index = CandidateIndex(
            weigher_for(options.strategy),
            cache_size=options.cache_size,
            refresh_interval_s=options.refresh_interval_s,
            clock=clock,
            # with a random subset, claims steer around hosts others changed: reload lazily
            eager_reload=options.subset_size <= 1,
            affinity_salt=str(os.getpid() if options.seed is None else options.seed),
        )

    # -- index ------------------------------------------------------------------------------

    def load(self) -> int:
        """Build the index from the database (at start; again at any time)."""
        return self.index.load(self._sessions)

    def follow(self) -> int:
        """Catch the index up now; from then on requests leave the periodic catch-up to the
        caller, which calls this every ``refresh_interval_s`` from a background beat.

        A serving process does so (:mod:`pcifleet.control.api.app`): catching up replays every
        claim the other processes made since the last round (tens of milliseconds of CPU with
        a few processes under load), which as part of a request was the p99 of
        ``benchmarks/http_boot.py``. A claim that finds nothing, or retries, still catches up
        in its own transaction at once.
        """
        self._followed = True
        if self.index.ensure_loaded(self._sessions):
            return 0
        return self.index.catch_up(self._sessions, force=True)

    def _ready(self, force: bool = False) -> None:
        if self.index.ensure_loaded(self._sessions):
            return
        if force or not self._followed:
            self.index.catch_up(self._sessions, force=force)

    # -- claim ------------------------------------------------------------------------------

    def claim(
        self, request: InstanceRequest, writer: ClaimWriter, *, hosts: HostChoice | None = None
    ) -> Claimed | Unplaced:
        """Choose a host and devices and claim them, or record why nothing fits.

        ``hosts`` limits the choice to the host ids it accepts (a migration excludes its
        source, or names its destination); the others are neither tried nor reported.
        """

        def work(session: Session, attempt: _Attempt, number: int) -> Claimed | Unplaced:
            check = self.index.prepare(request)  # after the index caught up: new pool keys
            writer.check(session)
            claimed = self._place(session, check, writer, attempt, number, hosts)
            if claimed is None and (self.index.catch_up_in(session) or attempt.cut_short):
                # the index was behind another process: decide again on fresh counts
                claimed = self._place(session, check, writer, attempt, number, hosts)
            if claimed is not None:
                return claimed
            if attempt.lost:  # hosts that fit were taken meanwhile: retry, do not give up
                raise ConcurrentUpdate(
                    f"{len(attempt.lost)} fitting hosts were claimed concurrently", attempt=number
                )
            summary = self._summary(check, attempt, hosts)
            writer.unplaced(session, summary)
            return Unplaced(summary, number)

        result = self._retrying(work, "claim")
        if isinstance(result, Claimed):
            self.index.update(result.host, result.view)
        return result

    def _place(
        self,
        session: Session,
        check: RequestFilter,
        writer: ClaimWriter,
        attempt: _Attempt,
        number: int,
        hosts: HostChoice | None = None,
    ) -> Claimed | None:
        """Try the candidates in order; give up after :data:`_LOSSES_PER_PASS` lost
        compare-and-swaps (``attempt.cut_short``): the index is behind the database, and
        one batch catch-up costs less than finding it out host by host."""
        lost = len(attempt.lost)
        attempt.cut_short = False
        for summary, weight in self._tried(check, hosts):
            claimed = self._claim_on(session, summary, weight, check, writer, attempt, number)
            if claimed is not None:
                return claimed
            if len(attempt.lost) - lost >= _LOSSES_PER_PASS:
                attempt.cut_short = True
                return None
        return None

    def _claim_on(
        self,
        session: Session,
        summary: HostSummary,
        weight: Weight,
        check: RequestFilter,
        writer: ClaimWriter,
        attempt: _Attempt,
        number: int,
    ) -> Claimed | None:
        """Fit and claim on one host; None (outcome or loss recorded) when it did not work.

        The first attempt never waits for a host another claim holds (it has other
        candidates). A retry waits for it, and when that claim moved the generation,
        re-reads the host once and tries again: a retry is where the candidates ran out.
        """
        request = check.request
        self._hold(summary.id, attempt)
        found = self._current(session, summary, attempt)
        while found is not None:
            head, view = found
            if not head.schedulable:
                attempt.outcomes[head.id] = HostOutcome(
                    head.id, head.name, False, DOWN, "host is down or disabled", weight=weight
                )
                return None
            result = fit(view, request, self.options.fit)
            if isinstance(result, FitFailure):
                attempt.outcomes[head.id] = HostOutcome.failed(head.id, head.name, result, weight)
                return None
            wait = number > 1
            generation = try_bump_generation(session, head.id, head.generation, wait=wait)
            if generation is not None:
                claimed = self._write(
                    session, head, generation, view, result, request, writer, number
                )
                attempt.claimed = (claimed.host, claimed.view)
                return claimed
            self.index.mark_stale(head.id, head.generation)
            again = wait and head.id not in attempt.lost
            attempt.lost.add(head.id)
            found = self._view(session, head.id, attempt) if again else None
        return None

    def _hold(self, host_id: str, attempt: _Attempt) -> None:
        """Mark ``host_id`` busy until ``attempt``'s transaction ends (see :meth:`_tried`)."""
        if attempt.held:  # one host at a time: the previous candidate did not work out
            self._unhold(attempt)
        with self._busy_lock:
            self._busy[host_id] = self._busy.get(host_id, 0) + 1
        attempt.held = host_id

    def _unhold(self, attempt: _Attempt) -> None:
        host_id, attempt.held = attempt.held, None
        if host_id is None:
            return
        with self._busy_lock:
            left = self._busy.get(host_id, 0) - 1
            if left > 0:
                self._busy[host_id] = left
            else:
                self._busy.pop(host_id, None)

    def _tried(
        self, check: RequestFilter, hosts: HostChoice | None
    ) -> Iterator[tuple[HostSummary, Weight]]:
        """The candidates in the order a claim tries them.

        First the best ``subset_size`` (k) hosts that are neither stale, foreign nor busy, in
        a random order when k > 1; then the stale, foreign and busy ones met on the way; then
        the rest in weigher order. A stale host was changed by another process (it costs a
        reload); a foreign one was claimed on by another process lately (its counts are
        current, but trying it first would make every process converge on the same hosts
        and lose compare-and-swaps there, see :meth:`CandidateIndex.is_foreign`); a busy one
        is being claimed on by another thread of this process (its claim would likely win).
        So concurrent claims spread over hosts by themselves, and a lone claim (nothing
        stale or busy) follows the weigher's order exactly when k = 1.
        """
        found = (c for c in self.index.candidates(check) if hosts is None or hosts(c[0].id))
        window: list[tuple[HostSummary, Weight]] = []
        deferred: list[tuple[HostSummary, Weight]] = []
        busy = self._busy
        foreign = self.index.is_foreign
        for candidate in found:
            summary = candidate[0]
            later = summary.stale or summary.id in busy or foreign(summary.id)
            (deferred if later else window).append(candidate)
            if len(window) >= self.options.subset_size:
                break
        if len(window) > 1:
            self._random.shuffle(window)
        yield from window
        yield from deferred
        yield from found

    def _current(
        self, session: Session, summary: HostSummary, attempt: _Attempt
    ) -> tuple[HostHead, HostState] | None:
        """The host's view: the cached one when the index trusts it (no read: the
        compare-and-swap catches a stale one), else as :meth:`_view`."""
        if not summary.stale:
            view = self.index.cached_view(summary.id, summary.generation)
            if view is not None:
                head = HostHead(summary.id, summary.name, summary.generation, summary.schedulable)
                return head, view
        return self._view(session, summary.id, attempt)

    def _write(
        self,
        session: Session,
        head: HostHead,
        generation: int,
        view: HostState,
        placement: Placement,
        request: InstanceRequest,
        writer: ClaimWriter,
        number: int,
    ) -> Claimed:
        """Write a claim on ``head``'s host, whose generation was just bumped to ``generation``."""
        after = apply(view, placement, allocate=True)
        new_head = HostHead(head.id, head.name, generation, head.schedulable)
        stamped = writer.placed(session, new_head, placement)
        request_ids = {
            address: device_request.request_id
            for device_request, group in zip(
                request.device_requests, placement.devices, strict=True
            )
            for address in group
        }
        changes = device_changes(view, after, placement.all_devices, request_ids)
        write_device_changes(session, head.id, changes)
        if not stamped:
            record_event(session, placement.instance_id, generation)
        return Claimed(new_head, placement, after, number)

    def _view(
        self, session: Session, host_id: str, attempt: _Attempt
    ) -> tuple[HostHead, HostState] | None:
        """The host as of this transaction: cached view if current, else loaded."""
        head = read_head(session, host_id)
        if head is None:
            return None
        view = self.index.caught_up_view(session, head)
        if view is None:
            view = load_host(session, head).view
            attempt.seen[host_id] = (head, view)
        return head, view

    def _summary(
        self, check: RequestFilter, attempt: _Attempt, hosts: HostChoice | None = None
    ) -> Summary:
        """Every host's outcome: the fit's where it ran, else the index's rejection."""
        outcomes = []
        for summary, weight in self.index.ordered(check.wants_devices):
            if hosts is not None and not hosts(summary.id):
                continue
            outcome = attempt.outcomes.get(summary.id) or check.reject(summary, weight)
            if outcome is not None:
                outcomes.append(outcome)
        return summarize(check.request, outcomes, self.options.examples)

    # -- release ----------------------------------------------------------------------------

    def release(self, host_id: str, instance_id: str, finish: Callable[[Session], None]) -> None:
        """Free the instance's devices (and relatives) on ``host_id``; ``finish`` runs in the
        same transaction (marks the instance deleted)."""

        def work(session: Session, attempt: _Attempt, number: int) -> Claimed | None:
            found = self._view(session, host_id, attempt)
            if found is None or instance_id not in found[1].placements:
                finish(session)
                return None
            head, view = found
            generation = bump_generation(session, head.id, head.generation)
            after = release(view, instance_id)
            placement = view.placements[instance_id]
            write_device_changes(
                session, head.id, device_changes(view, after, placement.all_devices)
            )
            finish(session)
            new_head = HostHead(head.id, head.name, generation, head.schedulable)
            if drop_released_vanished(session, head.id):
                after = load_host(session, new_head).view  # rows went: not replayable
            else:
                record_event(session, instance_id, generation)
            return Claimed(new_head, placement, after, number)

        result = self._retrying(work, f"delete of instance {instance_id}")
        if result is not None:
            self.index.update(result.host, result.view)

    # -- one host ---------------------------------------------------------------------------

    def change_host(self, host_id: str, change: HostChanger, what: str) -> HostChange:
        """Change devices of an instance already on ``host_id`` (attach/detach a port).

        One transaction, as a claim: read the host, bump its generation (compare-and-swap,
        host lock first), run ``change`` (it checks, picks devices on this host only, writes
        its own rows and returns the next view), write the device rows from the diff. What
        ``change`` raises rolls everything back and propagates; a lost race is retried.
        """

        def work(session: Session, attempt: _Attempt, number: int) -> tuple[HostHead, HostChange]:
            found = self._view(session, host_id, attempt)
            if found is None:
                raise NotFound(f"host {host_id} not found", kind="host", id=host_id)
            head, view = found
            generation = bump_generation(session, head.id, head.generation)
            new_head = HostHead(head.id, head.name, generation, head.schedulable)
            result = change(session, new_head, view)
            changes = device_changes(view, result.after, result.devices, result.request_ids)
            write_device_changes(session, head.id, changes)
            return new_head, result

        head, result = self._retrying(work, what)
        self.index.update(head, result.after)
        return result

    # -- dry run ----------------------------------------------------------------------------

    def explain(
        self,
        request: InstanceRequest,
        examples: int | None = None,
        *,
        hosts: HostChoice | None = None,
    ) -> Explanation:
        """The decision :meth:`claim` would make now, with every host's outcome; no writes.

        ``examples`` bounds the hosts listed per outcome group (default: the options');
        ``hosts`` limits the hosts considered, as for :meth:`claim`.
        """
        self._ready()
        check = self.index.prepare(request)
        attempt = _Attempt()
        outcomes = []
        with self._sessions() as session:
            for summary, weight in self.index.ordered(check.wants_devices):
                if hosts is not None and not hosts(summary.id):
                    continue
                outcome = check.reject(summary, weight) or self._try(
                    session, summary.id, request, weight, attempt
                )
                if outcome is not None:
                    outcomes.append(outcome)
        self._remember(attempt)
        chosen = next((o for o in outcomes if o.passed), None)
        passed = sum(1 for o in outcomes if o.passed)
        shown = self.options.examples if examples is None else examples
        return Explanation(chosen, passed, summarize(request, outcomes, shown))

    def _try(
        self,
        session: Session,
        host_id: str,
        request: InstanceRequest,
        weight: Weight,
        attempt: _Attempt,
    ) -> HostOutcome | None:
        found = self._view(session, host_id, attempt)
        if found is None:
            return None
        head, view = found
        if not head.schedulable:
            return HostOutcome(
                head.id, head.name, False, DOWN, "host is down or disabled", weight=weight
            )
        result = fit(view, request, self.options.fit)
        if isinstance(result, FitFailure):
            return HostOutcome.failed(head.id, head.name, result, weight)
        return HostOutcome(head.id, head.name, True, weight=weight, placement=result)

    # -- plumbing ---------------------------------------------------------------------------

    def _remember(self, attempt: _Attempt) -> None:
        for head, view in attempt.seen.values():
            self.index.update(head, view)
        if attempt.claimed is not None:
            self.index.update(*attempt.claimed)

    def _retrying(self, work: Callable[[Session, _Attempt, int], T], what: str) -> T:
        attempts = self.options.claim_retries + 1
        for number in range(1, attempts + 1):
            self._ready(force=number > 1)
            attempt = _Attempt()
            try:
                with self._transaction() as session:
                    result = work(session, attempt, number)
            except ConcurrentUpdate:
                pass
            except sqlalchemy.exc.OperationalError as error:
                if _pgcode(error) not in _RETRYABLE_PGCODES:
                    raise
            else:
                self._remember(attempt)
                return result
            finally:
                self._unhold(attempt)  # after the index learnt the claim
            time.sleep(random.uniform(0, _BACKOFF_S * number))
        raise ConcurrentUpdate(
            f"{what}: the chosen hosts kept changing concurrently; "
            f"gave up after {attempts} attempts",
            attempts=attempts,
        )

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session


def _pgcode(error: sqlalchemy.exc.OperationalError) -> str | None:
    code = getattr(error.orig, "sqlstate", None)
    return code if isinstance(code, str) else None
