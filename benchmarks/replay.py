"""Replay a scheduling workload (``shared/workloads/<name>``) through pcifleet's service layer.

    .venv/bin/python benchmarks/replay.py ../shared/workloads/nova-100
    .venv/bin/python benchmarks/replay.py ../shared/workloads/nova-5k --limit 1000

Steps:

1. read the workload (:mod:`pcifleet.sim.workload`): the fleet template qualified by the
   workload's Nova ``device_spec``, the aliases as groups, each request's flavor and port
   requests checked against Nova's own ``pci_requests``;
2. build a fresh SQLite database in a temporary directory (or use ``--db-url``), register every
   host and report its inventory through ``InventoryService`` (the agents' path), load the
   groups and create the flavors (:mod:`pcifleet.sim.fleet_loader`); this is ``load_s``;
3. replay the requests one at a time in index order through ``InstanceService.boot`` (schedule
   + claim, committed), timing each boot; nothing is ever freed;
4. print a summary, the comparison with ``nova-decisions.json`` when the workload has one
   (``--compare``), and LAST one JSON line: ``hosts``, ``requests``, ``placed``, ``rejected``,
   ``p50_ms``, ``p99_ms``, ``total_s`` (the replay), ``load_s``, ``peak_rss_mb`` and, when
   comparing, ``nova_*`` counts.

``--path domain`` replays on the pure domain instead (``fit`` + ``apply``, first fitting host by
index, no database): the reference the service path is compared with.

Progress goes to stderr (Rich); everything else to stdout.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import pstats
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pcifleet.control.container import Services, build_services
from pcifleet.control.scheduler.index import HostSummary
from pcifleet.control.scheduler.scheduler import Scheduler, SchedulerOptions
from pcifleet.control.scheduler.weighers import Strategy, Weight, parse_strategy
from pcifleet.control.services.instances import InstanceService, PortRequest
from pcifleet.control.services.inventory import InventoryService
from pcifleet.control.services.principal import LOCAL_ADMIN
from pcifleet.control.settings import Settings, sqlite_url
from pcifleet.domain.fit import apply, fit
from pcifleet.domain.hoststate import HostState
from pcifleet.domain.placement import Placement
from pcifleet.domain.request import DeviceRequest
from pcifleet.sim.domain_replay import NovaHostJudge, initial_host, replay_lockstep
from pcifleet.sim.fleet_loader import create_flavors, load_groups, register_hosts
from pcifleet.sim.nova_compare import Comparison, Difference, Outcome, classify, compare
from pcifleet.sim.workload import (
    DECISIONS_FILE,
    BootRequest,
    NovaDecision,
    Workload,
    load_decisions,
    load_workload,
)

STDERR = Console(stderr=True)
OUT = Console(highlight=False, soft_wrap=True)


class Booter(Protocol):
    """One way to boot a workload request: through the services, or on the domain."""

    def boot(self, request: BootRequest) -> Outcome: ...


def peak_rss_mb() -> float:
    """The process's peak resident set size (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def progress_bar(what: str, total: int) -> Iterator[Callable[[int, int], None]]:
    """A Rich progress bar on stderr; when stderr is not a terminal (a run in the background
    with output to a file), one plain line per tenth instead."""
    if not STDERR.is_terminal:
        began = time.perf_counter()
        step = max(1, total // 10)

        def log(done: int, _total: int) -> None:
            if done % step == 0 or done == _total:
                elapsed = time.perf_counter() - began
                print(f"{what}: {done}/{_total} ({elapsed:.1f} s)", file=sys.stderr, flush=True)

        yield log
        return
    columns = (
        TextColumn(f"{what:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=STDERR, transient=False) as bar:
        task = bar.add_task(what, total=total)

        def advance(done: int, _total: int) -> None:
            if done % 25 == 0 or done == _total:
                bar.update(task, completed=done)

        yield advance


# ------------------------------------------------------------------------------ domain path


class DomainBooter:
    """First fitting host by index on in-memory host states (Nova's host selection rule)."""

    def __init__(self, workload: Workload) -> None:
        base = initial_host(workload.fleet)
        self.hosts: list[HostState] = [base] * len(workload.fleet.hosts)

    def boot(self, request: BootRequest) -> Outcome:
        wanted = request.instance_request()
        for index, host in enumerate(self.hosts):
            result = fit(host, wanted)
            if isinstance(result, Placement):
                self.hosts[index] = apply(host, result)
                return Outcome(request.index, True, index, result.host_cells, result.all_devices)
        return Outcome(request.index, False, reason=f"no host of {len(self.hosts)} fits")


# ----------------------------------------------------------------------------- service path


@dataclass(frozen=True, slots=True)
class FirstHostWeigher:
    """Nova's rule in the workloads: no preference, so the index's tie-break (host name, and
    the workload's names sort in index order) decides: the first host that fits wins."""

    @property
    def name(self) -> str:
        return "first"

    def weight(self, host: HostSummary, wants_devices: bool) -> Weight:
        return ()


WEIGHERS: Final = (*(str(s) for s in Strategy), "first")


class ServiceBooter:
    """Boots through ``InstanceService.boot``: schedule + claim, one committed transaction."""

    def __init__(self, services: Services, instances: InstanceService, workload: Workload) -> None:
        self.services = services
        self.instances = instances
        self.host_index = {host.name: host.index for host in workload.fleet.hosts}

    @classmethod
    def build(
        cls, args: argparse.Namespace, workload: Workload, tmp: Path
    ) -> tuple[ServiceBooter, dict[str, float]]:
        """A migrated database with the fleet, groups and flavors, and a loaded scheduler."""
        url = args.db_url or sqlite_url(tmp)
        settings = Settings(tmp, url)
        services = build_services(settings, migrate_schema=True)
        inventory = InventoryService(services.sessions, settings)
        began = time.perf_counter()
        with progress_bar("registering hosts", len(workload.fleet.hosts)) as advance:
            fleet_load = register_hosts(inventory, workload.fleet, progress=advance)
        load_groups(services.groups, workload.fleet)
        create_flavors(services.flavors, workload.flavors)
        register_s = time.perf_counter() - began
        scheduler = make_scheduler(services, settings, args.weigher)
        began = time.perf_counter()
        scheduler.load()
        index_s = time.perf_counter() - began
        instances = InstanceService(services.sessions, services.flavors, services.groups, scheduler)
        times = {
            "register_s": register_s,
            "report_slowest_ms": fleet_load.slowest_s * 1000,
            "index_s": index_s,
        }
        return cls(services, instances, workload), times

    def boot(self, request: BootRequest) -> Outcome:
        ports = [PortRequest(p.id, p.vnic_type, p.physical_network) for p in request.ports]
        record = self.instances.boot(
            LOCAL_ADMIN, f"replay-{request.index}", request.flavor.name, ports=ports
        )
        _check_same_requests(request, record.requests)
        if record.placement is None or record.host is None:
            reason = record.fault.message if record.fault else "not placed"
            return Outcome(request.index, False, reason=reason)
        placement = record.placement
        return Outcome(
            request.index,
            True,
            self.host_index[record.host],
            placement.host_cells,
            placement.all_devices,
        )

    def close(self) -> None:
        self.services.close()


def make_scheduler(services: Services, settings: Settings, weigher: str) -> Scheduler:
    strategy = Strategy.PACK if weigher == "first" else parse_strategy(weigher)
    scheduler = Scheduler(
        services.sessions,
        SchedulerOptions(strategy=strategy, claim_retries=settings.claim_retries),
    )
    if weigher == "first":
        scheduler.index.weigher = FirstHostWeigher()
    return scheduler


def _check_same_requests(request: BootRequest, built: Sequence[DeviceRequest]) -> None:
    """The service must ask for what the workload (and Nova) asked for; ids aside."""
    ours = [replace(r, request_id="") for r in request.device_requests]
    theirs = [replace(r, request_id="") for r in built]
    if ours != theirs:
        raise SystemExit(
            f"request {request.index}: the service built other device requests than the "
            f"workload's: {theirs} != {ours}"
        )


# ----------------------------------------------------------------------------------- replay


@dataclass(frozen=True, slots=True)
class Replay:
    outcomes: list[Outcome]
    #: seconds per boot, in request order
    timings: list[float]
    total_s: float


def replay(
    booter: Booter, requests: Sequence[BootRequest], judge: NovaHostJudge | None = None
) -> Replay:
    """Boot every request in order, timing each; ``judge`` time is left out of ``total_s``."""
    outcomes: list[Outcome] = []
    timings: list[float] = []
    judging = 0.0
    began = time.perf_counter()
    with progress_bar("replaying", len(requests)) as advance:
        for done, request in enumerate(requests, 1):
            started = time.perf_counter()
            outcome = booter.boot(request)
            booted = time.perf_counter()
            timings.append(booted - started)
            if judge is not None:
                outcome = judge.judge(request, outcome)
                judging += time.perf_counter() - booted
            outcomes.append(outcome)
            advance(done, len(requests))
    return Replay(outcomes, timings, time.perf_counter() - began - judging)


def percentile_ms(timings: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile, in milliseconds."""
    if not timings:
        return 0.0
    ordered = sorted(timings)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1] * 1000


# ------------------------------------------------------------------------------- reporting


def print_summary(workload: Workload, result: Replay, path: str, weigher: str) -> None:
    placed = sum(o.placed for o in result.outcomes)
    OUT.print(
        f"\n[bold]{workload.name}[/]: {len(workload.fleet.hosts)} hosts x "
        f"{len(workload.fleet.template.devices)} assignable devices, "
        f"{len(result.outcomes)} requests ({path} path, weigher {weigher})"
    )
    OUT.print(f"  placed {placed}, rejected {len(result.outcomes) - placed}")
    ms = [t * 1000 for t in result.timings]
    if ms:
        OUT.print(
            f"  boot: p50 {percentile_ms(result.timings, 0.5):.2f} ms, "
            f"p99 {percentile_ms(result.timings, 0.99):.2f} ms, max {max(ms):.2f} ms, "
            f"mean {statistics.fmean(ms):.2f} ms; replay {result.total_s:.1f} s"
        )
    reasons = Counter(o.reason for o in result.outcomes if not o.placed)
    for reason, count in reasons.most_common(3):
        OUT.print(f"  rejected x{count}: {reason}")


def print_comparison(comparison: Comparison) -> None:
    OUT.print(
        f"\n[bold]Compared with Nova[/] ({comparison.total} requests): "
        f"pcifleet placed {comparison.ours_placed}, Nova {comparison.nova_placed}"
    )
    for difference in Difference:
        count = comparison.counts.get(difference, 0)
        if count:
            OUT.print(f"  {count:5d}  {difference}")
    for relation, count in comparison.device_relations.items():
        OUT.print(f"         of which {count}: {relation}")
    kinds = sorted({kind for kind, _ in comparison.by_kind})
    for kind in kinds:
        row = ", ".join(
            f"{difference}: {comparison.by_kind[(kind, difference)]}"
            for difference in Difference
            if (kind, difference) in comparison.by_kind
        )
        OUT.print(f"  {kind:<15} {row}")
    for reason, count in sorted(comparison.nova_host_verdicts.items(), key=lambda i: -i[1]):
        OUT.print(f"  other host x{count}: on Nova's host pcifleet's fit said: {reason}")
    OUT.print("  examples:")
    for example in comparison.examples:
        OUT.print(f"    #{example.index} {example.kind}: {example.difference}: {example.detail}")


def lockstep_counts(
    workload: Workload, decisions: Sequence[NovaDecision], limit: int
) -> dict[str, int]:
    """Each request judged on the state Nova's own decisions left (see ``replay_lockstep``)."""
    by_index = {d.index: d for d in decisions}
    steps = replay_lockstep(workload.fleet, workload.requests[:limit], by_index)
    counts: Counter[str] = Counter()
    for step in steps:
        nova = by_index[step.index]
        counts["lockstep_first_host_same"] += step.ours.host == nova.host
        if step.on_nova_host is not None:
            on_host = classify(step.on_nova_host, nova)
            counts["lockstep_accepts_nova_host"] += step.on_nova_host.placed
            counts["lockstep_same_cell"] += on_host in (Difference.SAME, Difference.OTHER_DEVICES)
            counts["lockstep_same_devices"] += on_host is Difference.SAME
        counts["lockstep_nova_illegal"] += bool(step.nova_illegal)
    return dict(counts)


def print_lockstep(counts: dict[str, int], total: int) -> None:
    OUT.print(
        f"\n[bold]Lockstep[/] (each request decided by pcifleet's fit on the fleet as "
        f"Nova's earlier decisions left it; {total} requests):"
    )
    for key, count in counts.items():
        OUT.print(f"  {key.removeprefix('lockstep_'):<22} {count}")


# ------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", type=Path, help="a folder of shared/workloads")
    parser.add_argument("--db-url", help="database URL (default: fresh SQLite in a temp dir)")
    parser.add_argument("--limit", type=int, help="replay only the first N requests")
    parser.add_argument("--path", choices=("service", "domain"), default="service")
    parser.add_argument(
        "--weigher",
        choices=WEIGHERS,
        default="pack",
        help="the scheduler's weigher; first: the first host (by name) that fits, as Nova did",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        help=f"Nova's decisions (default: WORKLOAD/{DECISIONS_FILE} when it exists)",
    )
    parser.add_argument("--no-compare", action="store_true")
    parser.add_argument(
        "--profile", type=Path, help="write cProfile stats of the replay loop to this file"
    )
    return parser.parse_args(argv)


def decisions_file(args: argparse.Namespace) -> Path | None:
    if args.no_compare:
        return None
    if args.compare is not None:
        return Path(args.compare)
    default = args.workload / DECISIONS_FILE
    return default if default.exists() else None


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    began = time.perf_counter()
    workload = load_workload(args.workload)
    limit = len(workload.requests) if args.limit is None else args.limit
    requests = workload.requests[:limit]
    found = decisions_file(args)
    decisions = () if found is None else load_decisions(found)[:limit]
    judge = None
    if decisions:
        judge = NovaHostJudge(workload.fleet, {d.index: d for d in decisions})
    with tempfile.TemporaryDirectory(prefix="pcifleet-replay-") as tmp:
        booter, load_times = build_booter(args, workload, Path(tmp), began)
        result = profiled(args.profile, lambda: replay(booter, requests, judge))
        close = getattr(booter, "close", None)
        if close is not None:
            close()
    print_summary(workload, result, args.path, args.weigher)
    line = result_line(args, workload, result, load_times)
    if decisions:
        devices = initial_host(workload.fleet).devices
        comparison = compare(result.outcomes, decisions, requests, devices)
        print_comparison(comparison)
        counts = lockstep_counts(workload, decisions, limit)
        print_lockstep(counts, len(decisions))
        line.update(comparison.as_json())
        line.update(counts)
    line["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print(json.dumps(line), flush=True)


def profiled(path: Path | None, work: Callable[[], Replay]) -> Replay:
    """Run ``work``, under cProfile when ``path`` is given (stats dumped there, top 25 to
    stderr by cumulative time)."""
    if path is None:
        return work()
    profiler = cProfile.Profile()
    result = profiler.runcall(work)
    profiler.dump_stats(path)
    pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
    return result


def result_line(
    args: argparse.Namespace, workload: Workload, result: Replay, load_times: dict[str, float]
) -> dict[str, object]:
    return {
        "workload": workload.name,
        "path": args.path,
        "weigher": args.weigher if args.path == "service" else "first",
        "hosts": len(workload.fleet.hosts),
        "devices_per_host": len(workload.fleet.template.devices),
        "requests": len(result.outcomes),
        "placed": sum(o.placed for o in result.outcomes),
        "rejected": sum(not o.placed for o in result.outcomes),
        "p50_ms": round(percentile_ms(result.timings, 0.5), 3),
        "p99_ms": round(percentile_ms(result.timings, 0.99), 3),
        "max_ms": round(max(result.timings, default=0.0) * 1000, 3),
        "total_s": round(result.total_s, 2),
        **{key: round(value, 2) for key, value in load_times.items()},
    }


def build_booter(
    args: argparse.Namespace, workload: Workload, tmp: Path, began: float
) -> tuple[Booter, dict[str, float]]:
    """The booter for ``--path`` and where the loading time went (``load_s`` in total)."""
    if args.path == "domain":
        return DomainBooter(workload), {"load_s": time.perf_counter() - began}
    read_s = time.perf_counter() - began
    booter, times = ServiceBooter.build(args, workload, tmp)
    return booter, {"load_s": time.perf_counter() - began, "read_s": read_s, **times}


if __name__ == "__main__":
    main()
