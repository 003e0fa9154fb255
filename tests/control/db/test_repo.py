"""Row <-> domain conversion, the generation compare-and-swap, and the fleet bulk load."""

from __future__ import annotations

import pytest
from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from pcifleet.control.db.fleet import iter_fleet
from pcifleet.control.db.models import DeviceRow, HostRow
from pcifleet.control.db.records import HostState
from pcifleet.control.db.repo import (
    bump_generation,
    cells_from_json,
    cells_to_json,
    device_facts,
    find_host,
    host_record,
    load_host_devices,
)
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceState, DeviceType
from pcifleet.domain.errors import ConcurrentUpdate, NotFound
from pcifleet.domain.numa import HugePages, NumaCell
from pcifleet.domain.tags import Tags

PF = PciAddress.parse("0000:3b:00.0")


def _device(address: str, **kw: object) -> Device:
    fields: dict[str, object] = {
        "vendor_id": "8086",
        "product_id": "154c",
        "dev_type": DeviceType.VF,
        "class_code": "020000",
        "numa_node": 0,
        "parent": PF,
        "vf_index": 0,
        "driver": "iavf",
        "netdevs": ("ens1f0v0",),
        "tags": Tags({"physical_network": "physnet1", "trusted": "true"}),
    }
    fields.update(kw)
    return Device(PciAddress.parse(address), **fields)  # type: ignore[arg-type]


def _add_host(session: Session, host_id: str, *devices: Device) -> None:
    session.add(HostRow(id=host_id, name=f"host-{host_id}", cells=[], physnets={}))
    session.flush()
    if devices:
        session.execute(
            insert(DeviceRow),
            [
                {
                    "id": f"{host_id}-{d.address}",
                    "host_id": host_id,
                    "address": str(d.address),
                    "state": d.state.value,
                    **device_facts(d),
                }
                for d in devices
            ],
        )


def test_bump_generation_is_a_compare_and_swap(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        _add_host(session, "h1")
    with sessions.begin() as session:
        assert bump_generation(session, "h1", 0) == 1
    with sessions.begin() as session, pytest.raises(ConcurrentUpdate) as info:
        bump_generation(session, "h1", 0)
    assert info.value.code == "pcifleet.concurrent_update"
    assert info.value.status == 409
    with sessions() as session:
        assert session.get_one(HostRow, "h1").generation == 1


def test_two_sessions_that_read_the_same_generation_cannot_both_write(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        _add_host(session, "h1")
    with sessions.begin() as first:
        read = first.get_one(HostRow, "h1").generation
        bump_generation(first, "h1", read)
    with sessions.begin() as second, pytest.raises(ConcurrentUpdate):
        bump_generation(second, "h1", read)


def test_bump_generation_on_an_unknown_host_conflicts(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session, pytest.raises(ConcurrentUpdate):
        bump_generation(session, "missing", 0)


@pytest.mark.parametrize(
    "device",
    [
        _device("0000:3b:02.0"),
        _device("0000:3b:02.1", vf_index=1, numa_node=None, class_code=None, driver=None),
        _device(
            "0000:af:00.0",
            dev_type=DeviceType.PCI,
            parent=None,
            vf_index=None,
            netdevs=(),
            tags=Tags(),
            state=DeviceState.RESERVED,
        ),
    ],
)
def test_devices_round_trip_through_rows(sessions: sessionmaker[Session], device: Device) -> None:
    with sessions.begin() as session:
        _add_host(session, "h1", device)
    with sessions() as session:
        [stored] = load_host_devices(session, "h1")
    assert stored.device == device
    assert (stored.host_id, stored.vanished) == ("h1", False)


def test_cells_round_trip_through_json() -> None:
    cells = (
        NumaCell(1, 1, frozenset({9, 8}), 1024),
        NumaCell(0, None, frozenset({0, 1}), 2048, (HugePages(1048576, 4, 2),)),
    )
    assert cells_from_json(cells_to_json(cells)) == tuple(sorted(cells, key=lambda c: c.id))


def test_find_host_by_id_or_name(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        _add_host(session, "h1")
    with sessions() as session:
        assert find_host(session, "h1").name == "host-h1"
        assert find_host(session, "host-h1", lock=True).id == "h1"
        record = host_record(find_host(session, "h1"))
        assert record.state is HostState.DOWN
        with pytest.raises(NotFound):
            find_host(session, "nope")


def test_fleet_load_streams_every_host_with_its_devices(sessions: sessionmaker[Session]) -> None:
    a_devices = [_device(f"0000:3b:02.{i}", vf_index=i) for i in range(3)]
    c_devices = [_device("0000:3b:02.0", state=DeviceState.RESERVED)]
    with sessions.begin() as session:
        _add_host(session, "a", *a_devices)
        _add_host(session, "b")
        _add_host(session, "c", *c_devices)
    with sessions() as session:
        fleet = list(iter_fleet(session, batch_size=2))
    assert [f.host.id for f in fleet] == ["a", "b", "c"]
    assert [list(f.devices) for f in fleet] == [a_devices, [], c_devices]
    # equal values are shared objects across hosts (memory for 1.4 M devices)
    assert fleet[0].devices[0].address is fleet[2].devices[0].address
    assert fleet[0].devices[0].tags is fleet[2].devices[0].tags
    assert fleet[0].devices[1].parent is fleet[0].devices[2].parent
