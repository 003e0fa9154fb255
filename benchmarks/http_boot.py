"""Boot throughput and latency over HTTP, with 1 and with 4 controller processes on PostgreSQL.

For each process count: a fresh PostgreSQL database, 200 simulated hosts seeded in bulk
(:mod:`pcifleet.sim.http_load`: 4 NICs x 16 VFs and 2 GPUs per host), one ``pcifleet server
--workers N`` on 127.0.0.1, then 2,000 boots (VF, 2 VFs, whole PF, GPU mixed) from 16
concurrent client threads. Reports boots/s and p50/p99 latency of the successful requests,
checks the database with the audit afterwards, prints a table and one JSON line last.

    .venv/bin/python benchmarks/http_boot.py [--workers 1 4] [--hosts 200] [--boots 2000]

Target: >= 200 boots/s with 4 processes, p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


def measure(workers: int, hosts: int, boots: int, concurrency: int, tmp: Path) -> dict[str, Any]:
    url = create_database(ADMIN_URL, "pcifleet_bench")
    controller = None
    try:
        services = build_services(Settings(tmp, url), migrate_schema=True)
        seed_fleet(services.engine, hosts)
        token = create_catalog(services)
        controller = Controller(url, tmp / f"w{workers}", workers=workers).start()
        controller.wait_healthy()
        run_load([controller.url], token, boot_plan(concurrency * 4, seed=1), concurrency=4)
        result = run_load([controller.url], token, boot_plan(boots), concurrency=concurrency)
        report = audit_database(services.engine)
        services.close()
        return {
            "workers": workers,
            "boots": sum(len(v) for v in result.latencies.values()),
            "seconds": round(result.elapsed_s, 2),
            "boots_per_s": round(result.rate(), 1),
            "p50_ms": round(result.percentile_ms(0.50), 1),
            "p99_ms": round(result.percentile_ms(0.99), 1),
            "outcomes": dict(sorted(result.outcomes.items())),
            "audit_violations": len(report.violations),
        }
    finally:
        if controller is not None:
            controller.stop()
        drop_database(ADMIN_URL, url)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--boots", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in args.workers:
            began = time.perf_counter()
            rows.append(measure(workers, args.hosts, args.boots, args.concurrency, Path(tmp)))
            print(f"{workers} processes: {time.perf_counter() - began:.0f} s", file=sys.stderr)
    print(f"{'processes':>9} {'boots':>6} {'boots/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'audit':>6}")
    for row in rows:
        print(
            f"{row['workers']:>9} {row['boots']:>6} {row['boots_per_s']:>8} "
            f"{row['p50_ms']:>7} {row['p99_ms']:>7} {row['audit_violations']:>6}"
        )
    print(json.dumps({"hosts": args.hosts, "concurrency": args.concurrency, "runs": rows}))


if __name__ == "__main__":
    main()
