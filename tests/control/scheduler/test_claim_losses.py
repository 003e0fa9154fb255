"""A claim whose index is behind the database stops losing compare-and-swaps after a few.

When another controller process has taken the devices on many hosts, the stale index still
offers them: a claim that found out host by host paid one compare-and-swap per host (at the
end of ``benchmarks/http_boot.py``, up to 20 for one request, while the requests behind it
waited). After three lost ones the pass stops, the index catches up in the same transaction,
and the decision is made again on fresh counts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sched_kit import KitFactory, Writer
from sqlalchemy import Engine, event

from pcifleet.control.scheduler.scheduler import Claimed
from pcifleet.domain.device import DeviceType
from pcifleet.domain.placement import InstanceRequest
from pcifleet.domain.request import DeviceMatch, DeviceRequest, Requester, RequesterKind

_GPU = DeviceRequest(
    1, (DeviceMatch.of(vendor_id="10de"),), Requester(RequesterKind.GROUP, "gpu"), "r"
)


def _gpu(instance_id: str) -> InstanceRequest:
    return InstanceRequest(1, 256, device_requests=(_GPU,), instance_id=instance_id)


@contextmanager
def _host_bumps(engine: Engine) -> Iterator[list[str]]:
    """The generation compare-and-swaps sent to the database meanwhile."""
    seen: list[str] = []

    def record(*args: object) -> None:
        statement = str(args[2])
        if statement.lstrip().upper().startswith("UPDATE HOSTS SET GENERATION"):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_a_claim_on_a_stale_index_catches_up_after_three_lost_swaps(
    make_kit: KitFactory, engine: Engine
) -> None:
    first = make_kit(catalogue=False)
    second = make_kit(catalogue=False)  # another controller process: its own index
    hosts = [first.add_host(f"h{i}") for i in range(1, 8)]
    for kit in (first, second):
        kit.scheduler.load()
    # the first process takes the GPU of six hosts; the second has not caught up
    taken = set()
    for n in range(6):
        claimed = first.scheduler.claim(
            _gpu(f"00000000-0000-0000-0000-00000000000{n}"), Writer(threading.Event())
        )
        assert isinstance(claimed, Claimed)
        taken.add(claimed.host.id)
    free = set(hosts) - taken
    with _host_bumps(engine) as bumps:
        result = second.scheduler.claim(
            _gpu("00000000-0000-0000-0000-0000000000ff"), Writer(threading.Event())
        )
    assert isinstance(result, Claimed) and result.host.id in free
    assert result.attempts == 1
    # three lost, then one on the host the caught-up index names (not six lost, then one)
    assert len(bumps) == 4, bumps
    assert result.placement.all_devices[0] in {
        d.address for d in result.view.devices.values() if d.dev_type is DeviceType.PCI
    }
