"""Measure the inventory path and fleet bulk load on SQLite (or $PCIFLEET_DATABASE_URL).

Builds N hosts of 278 devices shaped like ``shared/workloads`` (4 X710 PFs x 64 VFs, 2 GPUs,
16 QAT VFs): the first ``--reported`` hosts through ``InventoryService.report`` (the agents'
path, timed), the rest with bulk inserts; then times ``iter_fleet`` over the whole fleet (the
scheduler's startup index load). Prints one JSON line last.

    .venv/bin/python benchmarks/db_fleet_load.py --hosts 5000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from pcifleet.control.db.engine import create_db_engine, make_sessionmaker, migrate
from pcifleet.control.db.fleet import iter_fleet
from pcifleet.control.services.inventory import InventoryReport, InventoryService
from pcifleet.control.settings import Settings
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceType
from pcifleet.sim import http_load


def host_devices() -> list[Device]:
    """The load kit's host with 64 VFs per PF, plus 16 QAT VFs (278 devices)."""
    qat = PciAddress.parse("0000:3d:00.0")
    return [
        *http_load.host_devices(vfs_per_pf=64),
        *(
            Device(qat.offset(1 + i), "8086", "37c9", DeviceType.VF, "0b4000", 0, qat, i, "4xxxvf")
            for i in range(16)
        ),
    ]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=5000)
    parser.add_argument("--reported", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = os.environ.get("PCIFLEET_DATABASE_URL") or f"sqlite:///{Path(tmp) / 'bench.db'}"
        engine = create_db_engine(url)
        migrate(engine)
        sessions = make_sessionmaker(engine)
        service = InventoryService(sessions, Settings(Path(tmp), url))
        devices = host_devices()
        report = InventoryReport(devices=devices, cells=http_load.CELLS)
        reported = min(args.reported, args.hosts)
        timings = []
        for index in range(reported):
            service.register_host(f"agent-{index:05d}")
            began = time.perf_counter()
            service.report(f"agent-{index:05d}", 0, report)
            timings.append(time.perf_counter() - began)
        began = time.perf_counter()
        again = [service.report(f"agent-{i:05d}", 1, report) for i in range(min(reported, 20))]
        noop_ms = (time.perf_counter() - began) / max(len(again), 1) * 1000
        began = time.perf_counter()
        bulk = max(0, args.hosts - reported)
        http_load.seed_fleet(engine, bulk, batch=500, devices=devices, first=reported)
        seed_s = time.perf_counter() - began
        rss_before = peak_rss_mb()
        began = time.perf_counter()
        hosts = total = 0
        kept = []
        with sessions() as session:
            for fleet_host in iter_fleet(session):
                hosts += 1
                total += len(fleet_host.devices)
                kept.append(fleet_host)
        load_s = time.perf_counter() - began
        timings.sort()
        print(f"loaded {hosts} hosts, {total} devices", file=sys.stderr)
        print(
            json.dumps(
                {
                    "backend": engine.dialect.name,
                    "hosts": hosts,
                    "devices": total,
                    "first_report_p50_ms": round(timings[len(timings) // 2] * 1000, 1),
                    "first_report_max_ms": round(timings[-1] * 1000, 1),
                    "noop_report_ms": round(noop_ms, 1),
                    "bulk_seed_s": round(seed_s, 1),
                    "fleet_load_s": round(load_s, 2),
                    "peak_rss_mb_before_load": round(rss_before),
                    "peak_rss_mb_after_load_keeping_all": round(peak_rss_mb()),
                }
            )
        )
        engine.dispose()


if __name__ == "__main__":
    main()
