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
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from pcifleet.control.db.engine import create_db_engine, make_sessionmaker, migrate
from pcifleet.control.db.fleet import iter_fleet
from pcifleet.control.db.models import DeviceRow, HostRow
from pcifleet.control.db.repo import cells_to_json, device_facts
from pcifleet.control.services.inventory import InventoryReport, InventoryService
from pcifleet.control.settings import Settings
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceType
from pcifleet.domain.numa import NumaCell
from pcifleet.domain.tags import Tags

NICS = (("0000:18:00.0", "physnet1", 0), ("0000:1a:00.0", "physnet2", 0))
NICS += (("0000:86:00.0", "physnet1", 1), ("0000:88:00.0", "physnet2", 1))


def host_devices() -> list[Device]:
    devices: list[Device] = []
    for address, physnet, node in NICS:
        pf = PciAddress.parse(address)
        tags = Tags({"physical_network": physnet})
        devices.append(Device(pf, "8086", "1572", DeviceType.PF, "020000", node, tags=tags))
        devices.extend(
            Device(
                pf.offset(16 + i),
                "8086",
                "154c",
                DeviceType.VF,
                "020000",
                node,
                pf,
                i,
                "iavf",
                tags=tags,
            )
            for i in range(64)
        )
    for address, node in (("0000:3b:00.0", 0), ("0000:d8:00.0", 1)):
        devices.append(
            Device(PciAddress.parse(address), "10de", "2330", DeviceType.PCI, "030200", node)
        )
    qat = PciAddress.parse("0000:3d:00.0")
    devices.extend(
        Device(qat.offset(1 + i), "8086", "37c9", DeviceType.VF, "0b4000", 0, qat, i, "4xxxvf")
        for i in range(16)
    )
    return devices


CELLS = tuple(NumaCell(i, i, frozenset(range(32 * i, 32 * i + 32)), 262144) for i in (0, 1))


def bulk_insert(sessions: Any, start: int, count: int, devices: list[Device]) -> None:
    facts = [(str(d.address), device_facts(d)) for d in devices]
    cells = cells_to_json(CELLS)
    with sessions.begin() as session:
        for index in range(start, start + count):
            host_id = str(uuid.uuid4())
            session.add(
                HostRow(
                    id=host_id,
                    name=f"host-{index:05d}",
                    state="up",
                    cells=cells,
                    physnets={},
                    generation=1,
                    inventory_generation=1,
                )
            )
            session.flush()
            session.connection().execute(
                insert(DeviceRow),
                [
                    {
                        "id": str(uuid.uuid4()),
                        "host_id": host_id,
                        "address": a,
                        "state": "available",
                        "vanished": False,
                        **f,
                    }
                    for a, f in facts
                ],
            )


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
        report = InventoryReport(devices=devices, cells=CELLS)
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
        for start in range(reported, args.hosts, 500):
            bulk_insert(sessions, start, min(500, args.hosts - start), devices)
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
