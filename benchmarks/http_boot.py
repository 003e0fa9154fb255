"""Boot throughput and latency over HTTP, with 1 and with 4 controller processes on PostgreSQL.

For each process count: a fresh PostgreSQL database, 200 simulated hosts seeded in bulk
(:mod:`pcifleet.sim.http_load`: 4 NICs x 16 VFs and 2 GPUs per host), one ``pcifleet server
--workers N`` on 127.0.0.1, then 2,000 boots (VF, 2 VFs, whole PF, GPU mixed) from 16
concurrent client threads. Reports boots/s and p50/p99 latency of the successful requests,
checks the database with the audit afterwards, prints a table and one JSON line last.

    .venv/bin/python benchmarks/http_boot.py [--workers 1 4] [--hosts 200] [--boots 2000]
        [--layout workers|servers|both]

Target: >= 200 boots/s with 4 processes, p99 <= 100 ms.

Layouts: ``workers`` (default) is one ``pcifleet server --workers N``: its processes share one
listening socket and the kernel hands each of the 16 keep-alive connections to whichever
accepts first (often 6/5/3/2); the workers then even them out themselves
(:mod:`pcifleet.control.api.balance`). ``servers`` is N ``pcifleet server`` processes on
their own ports with the clients spread evenly over them, as behind an L4 round-robin load
balancer (4 connections each).

``cpu_ms_per_boot`` splits the CPU time spent during the measured load between the controller
processes, the PostgreSQL backends serving this database, and this process (the load
clients): on a small machine it shows which of them bounds the throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import make_url

from pcifleet.control.audit import audit_database
from pcifleet.control.container import build_services
from pcifleet.control.settings import Settings
from pcifleet.sim.http_load import (
    Controller,
    boot_plan,
    create_catalog,
    create_database,
    drop_database,
    run_load,
    seed_fleet,
)

ADMIN_URL = os.environ.get(
    "PCIFLEET_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def measure(
    workers: int, hosts: int, boots: int, concurrency: int, tmp: Path, layout: str = "workers"
) -> dict[str, Any]:
    url = create_database(ADMIN_URL, "pcifleet_bench")
    controllers: list[Controller] = []
    try:
        services = build_services(Settings(tmp, url), migrate_schema=True)
        seed_fleet(services.engine, hosts)
        token = create_catalog(services)
        controllers = _start(url, tmp / f"{layout}{workers}", workers, layout)
        urls = [controller.url for controller in controllers]
        pinned = layout == "servers"
        run_load(urls, token, boot_plan(concurrency * 4, seed=1), concurrency=4, pinned=pinned)
        pids = [controller.process.pid for controller in controllers if controller.process]
        database = str(make_url(url).database)
        before = {name: _cpu(procs) for name, procs in _parts(pids, database).items()}
        load = boot_plan(boots)
        result = run_load(urls, token, load, concurrency=concurrency, pinned=pinned)
        parts = _parts(pids, database)
        spent = {name: _cpu(procs) - before.get(name, 0.0) for name, procs in parts.items()}
        report = audit_database(services.engine)
        services.close()
        return {
            "workers": workers,
            "layout": layout,
            "boots": sum(len(v) for v in result.latencies.values()),
            "seconds": round(result.elapsed_s, 2),
            "boots_per_s": round(result.rate(), 1),
            "p50_ms": round(result.percentile_ms(0.50), 1),
            "p99_ms": round(result.percentile_ms(0.99), 1),
            "outcomes": dict(sorted(result.outcomes.items())),
            "cpu_ms_per_boot": {
                name: round(seconds * 1000 / max(1, boots), 2) for name, seconds in spent.items()
            },
            "audit_violations": len(report.violations),
        }
    finally:
        for controller in controllers:
            controller.stop()
        drop_database(ADMIN_URL, url)


def _start(url: str, data_dir: Path, processes: int, layout: str) -> list[Controller]:
    """One ``pcifleet server --workers N`` (layout "workers"), or N ``pcifleet server``
    processes on their own ports (layout "servers"); healthy when this returns."""
    if layout == "workers":
        controllers = [Controller(url, data_dir, workers=processes)]
    else:
        controllers = [Controller(url, data_dir / str(i)) for i in range(processes)]
    for controller in controllers:
        controller.start()
    for controller in controllers:
        controller.wait_healthy()
    return controllers


def _parts(controller_pids: list[int], database: str) -> dict[str, list[psutil.Process]]:
    """The processes whose CPU time is accounted: controllers, PostgreSQL backends, clients."""
    controllers = []
    for pid in controller_pids:
        root = psutil.Process(pid)
        controllers += [root, *root.children(recursive=True)]
    backends = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or ())
        if process.info["name"] == "postgres" and f" {database} " in f"{cmdline} ":
            backends.append(process)
    return {"controllers": controllers, "postgres": backends, "clients": [psutil.Process()]}


def _cpu(processes: Iterable[psutil.Process]) -> float:
    """User + system seconds of ``processes`` (those that ended count as zero)."""
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--boots", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--layout", choices=("workers", "servers", "both"), default="workers")
    args = parser.parse_args()
    layouts = ("workers", "servers") if args.layout == "both" else (args.layout,)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for layout in layouts:
            for workers in args.workers:
                began = time.perf_counter()
                row = measure(workers, args.hosts, args.boots, args.concurrency, Path(tmp), layout)
                rows.append(row)
                print(
                    f"{workers} processes ({layout}): {time.perf_counter() - began:.0f} s",
                    file=sys.stderr,
                )
    print(
        f"{'processes':>9} {'layout':>8} {'boots':>6} {'boots/s':>8} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'audit':>6}  CPU ms/boot: controllers postgres clients"
    )
    for row in rows:
        cpu = row["cpu_ms_per_boot"]
        print(
            f"{row['workers']:>9} {row['layout']:>8} {row['boots']:>6} {row['boots_per_s']:>8} "
            f"{row['p50_ms']:>7} {row['p99_ms']:>7} {row['audit_violations']:>6}"
            f"  {cpu['controllers']:>24} {cpu['postgres']:>8} {cpu['clients']:>7}"
        )
    print(json.dumps({"hosts": args.hosts, "concurrency": args.concurrency, "runs": rows}))


if __name__ == "__main__":
    main()
