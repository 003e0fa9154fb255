"""Time one host-fit decision on the benchmark fleet's host shape.

The host is the one of ``shared/workloads`` (README): 4 Intel X710 PFs (8086:1572) with 64 VFs
(8086:154c) each — two on NUMA node 0, two on node 1, on physnet1/physnet2 — two NVIDIA GPUs
(10de:2330, type-PCI) on nodes 0 and 1, and an Intel QAT PF (8086:37c8, not assignable, so not
in the fit's view) with 16 VFs (8086:37c9) on node 0. Two NUMA cells of 32 CPUs and 256 GiB.

Scenarios (each a 2-device request for a guest with one NUMA node):

- ``2vf-physnet2-required``: two ports on physnet2, policy required (as Nova builds them: one
  device request per port), on a fresh host;
- ``vf+gpu-legacy``: one VF on physnet1 plus one GPU through a group, policy legacy;
- ``2vf-physnet2-busy``: the first scenario on a host where 150 guests already hold VFs.

Prints one line per scenario (median and p99 in microseconds) and a final JSON line.
Usage: ``python benchmarks/fit.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceType
from pcifleet.domain.fit import apply, fit
from pcifleet.domain.hoststate import HostState
from pcifleet.domain.numa import NumaCell
from pcifleet.domain.placement import InstanceRequest, Placement
from pcifleet.domain.request import (
    DeviceMatch,
    DeviceRequest,
    NumaPolicy,
    Requester,
    RequesterKind,
)
from pcifleet.domain.tags import Tags

NICS = (("0000:18:00.0", 0, "physnet1"), ("0000:1a:00.0", 0, "physnet2"))
NICS += (("0000:86:00.0", 1, "physnet1"), ("0000:88:00.0", 1, "physnet2"))
GPUS = (("0000:4a:00.0", 0), ("0000:ca:00.0", 1))
QAT_PF = "0000:3d:00.0"
TARGET_MEDIAN_US = 100.0


def build_devices() -> list[Device]:
    devices = []
    for address, node, network in NICS:
        pf = PciAddress.parse(address)
        tags = Tags({"physical_network": network})
        devices.append(Device(pf, "8086", "1572", DeviceType.PF, "020000", node, tags=tags))
        for i in range(64):
            vf = pf.offset(16 + i)
            devices.append(
                Device(vf, "8086", "154c", DeviceType.VF, "020000", node, pf, i, tags=tags)
            )
    for address, node in GPUS:
        gpu = PciAddress.parse(address)
        devices.append(Device(gpu, "10de", "2330", DeviceType.PCI, "030200", node))
    qat = PciAddress.parse(QAT_PF)
    for i in range(16):
        devices.append(
            Device(qat.offset(8 + i), "8086", "37c9", DeviceType.VF, "0b4000", 0, qat, i)
        )
    return devices


def build_host() -> HostState:
    cells = [
        NumaCell(node, node, frozenset(range(node * 32, node * 32 + 32)), 262144) for node in (0, 1)
    ]
    return HostState.build("bench-host", cells, build_devices(), cpu_allocation_ratio=4.0)


def port(name: str, network: str) -> DeviceRequest:
    match = DeviceMatch.of(physical_network=network, remote_managed="False")
    return DeviceRequest(1, (match,), Requester(RequesterKind.PORT, name))


def gpu() -> DeviceRequest:
    match = DeviceMatch.of("10de", "2330", DeviceType.PCI)
    return DeviceRequest(1, (match,), Requester(RequesterKind.GROUP, "gpu"))


def two_vfs(instance_id: str = "bench") -> InstanceRequest:
    requests = (port("p1", "physnet2"), port("p2", "physnet2"))
    return InstanceRequest(
        2,
        4096,
        1,
        device_requests=requests,
        numa_policy=NumaPolicy.REQUIRED,
        instance_id=instance_id,
    )


def vf_and_gpu() -> InstanceRequest:
    requests = (gpu(), port("p1", "physnet1"))
    return InstanceRequest(4, 8192, 1, device_requests=requests, numa_policy=NumaPolicy.LEGACY)


def busy_host(guests: int) -> HostState:
    host = build_host()
    for n in range(guests):
        request = InstanceRequest(
            1,
            1024,
            1,
            device_requests=(port("p", "physnet1" if n % 2 else "physnet2"),),
            instance_id=f"guest-{n}",
        )
        placement = fit(host, request)
        assert isinstance(placement, Placement), placement
        host = apply(host, placement)
    return host


def measure(decide: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median and p99 of one call, in microseconds."""
    for _ in range(min(runs, 1000)):
        decide()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(runs):
        start = clock()
        decide()
        samples.append((clock() - start) / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20000)
    runs = parser.parse_args().runs
    fresh = build_host()
    busy = busy_host(150)
    scenarios = {
        "2vf-physnet2-required": (fresh, two_vfs()),
        "vf+gpu-legacy": (fresh, vf_and_gpu()),
        "2vf-physnet2-busy": (busy, two_vfs()),
    }
    results = {}
    for name, (host, request) in scenarios.items():
        outcome = fit(host, request)
        assert isinstance(outcome, Placement), outcome
        median, p99 = measure(lambda h=host, r=request: fit(h, r), runs)
        results[name] = {"median_us": round(median, 1), "p99_us": round(p99, 1)}
        print(f"{name}: median {median:.1f} us, p99 {p99:.1f} us ({runs} runs)")
    primary = results["2vf-physnet2-required"]
    print(
        json.dumps(
            {
                "benchmark": "fit",
                "devices": len(fresh.devices),
                "pools": len(fresh.pools),
                "runs": runs,
                "median_us": primary["median_us"],
                "p99_us": primary["p99_us"],
                "target_median_us": TARGET_MEDIAN_US,
                "scenarios": results,
            }
        )
    )


if __name__ == "__main__":
    main()
