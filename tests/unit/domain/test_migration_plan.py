"""The live migration plan: one verdict and reason per device request and per port."""

from __future__ import annotations

import pytest

from pcifleet.domain.address import PciAddress
from pcifleet.domain.migration import Action, PortInfo, infer_vnic_type, plan_migration
from pcifleet.domain.placement import Placement
from pcifleet.domain.request import DeviceMatch, DeviceRequest, Requester, RequesterKind
from pcifleet.domain.tags import Tags
from pcifleet.domain.vnic import VnicType, port_device_request

A = PciAddress.parse("0000:3b:02.0")
B = PciAddress.parse("0000:3b:02.1")
PF = PciAddress.parse("0000:3b:00.0")
LM = Tags({"live_migratable": "True"})


def group(name: str, live: str | None) -> DeviceRequest:
    props = {} if live is None else {"live_migratable": live}
    match = DeviceMatch.of("10de", "1eb8", **props)
    return DeviceRequest(1, (match,), Requester(RequesterKind.GROUP, name), request_id=name)


def port(port_id: str, vnic: VnicType) -> DeviceRequest:
    request = port_device_request(vnic, "physnet1", None, port_id, id_factory=lambda: port_id)
    assert request is not None
    return request


@pytest.mark.parametrize(
    ("vnic", "action", "words"),
    [
        (VnicType.MACVTAP, Action.TRANSPARENT, "source device rewritten"),
        (VnicType.VIRTIO_FORWARDER, Action.TRANSPARENT, "keeps its virtio NIC"),
        (VnicType.DIRECT, Action.UNPLUG_REPLUG, "unplugged from the guest"),
        (VnicType.VDPA, Action.UNPLUG_REPLUG, "plugged back after"),
        (VnicType.REMOTE_MANAGED, Action.UNPLUG_REPLUG, "unplugged"),
        (VnicType.DIRECT_PHYSICAL, Action.REFUSED, "not marked live_migratable"),
    ],
)
def test_each_port_vnic_type_gets_its_verdict(vnic: VnicType, action: Action, words: str) -> None:
    plan = plan_migration("vm", [port("p1", vnic)], [(A,)], [PortInfo("p1", vnic)])
    (item,) = plan.items
    assert (item.action, item.vnic_type, item.source) == (action, vnic, (A,))
    assert words in item.reason
    assert plan.allowed is (action is not Action.REFUSED)


def test_direct_physical_moves_when_its_pf_is_marked_live_migratable() -> None:
    ports = [PortInfo("p1", VnicType.DIRECT_PHYSICAL)]
    request = port("p1", VnicType.DIRECT_PHYSICAL)
    plan = plan_migration("vm", [request], [(PF,)], ports, {PF: LM})
    assert plan.items[0].action is Action.UNPLUG_REPLUG and plan.allowed


@pytest.mark.parametrize(
    ("flags", "allowed"),
    [(("true", "True"), True), (("true", None), False), (("false", "true"), False)],
)
def test_flavor_devices_move_only_if_all_are_live_migratable(
    flags: tuple[str | None, str | None], allowed: bool
) -> None:
    requests = [group("gpu", flags[0]), group("qat", flags[1])]
    plan = plan_migration("vm", requests, [(A,), (B,)])
    assert plan.allowed is allowed
    for item, flag in zip(plan.items, flags, strict=True):
        expected = Action.MOVE if (flag or "").lower() == "true" else Action.REFUSED
        assert item.action is expected and item.vnic_type is None
    if not allowed:
        assert "does not explicitly request live-migratable devices" in plan.refusal


def test_mixed_types_warn_that_the_direct_ports_are_unplugged() -> None:
    ports = [
        PortInfo("mv", VnicType.MACVTAP),
        PortInfo("dp", VnicType.DIRECT),
        PortInfo("nm", VnicType.NORMAL),
    ]
    requests = [port("mv", VnicType.MACVTAP), port("dp", VnicType.DIRECT)]
    plan = plan_migration("vm", requests, [(A,), (B,)], ports)
    assert [i.action for i in plan.items] == [
        Action.TRANSPARENT,
        Action.UNPLUG_REPLUG,
        Action.NO_DEVICE,
    ]
    (warning,) = plan.warnings
    assert "direct ports (dp) will be unplugged" in warning and "(mv, nm)" in warning


def test_only_direct_ports_give_no_mixed_warning() -> None:
    plan = plan_migration("vm", [port("dp", VnicType.DIRECT)], [(A,)])
    assert plan.warnings == () and plan.items[0].action is Action.UNPLUG_REPLUG


def test_a_port_type_that_never_moves_refuses_the_migration() -> None:
    plan = plan_migration("vm", [], [], [PortInfo("bm", VnicType.BAREMETAL)])
    assert not plan.allowed and "port bm: baremetal ports cannot be" in plan.refusal


@pytest.mark.parametrize(
    ("vnic", "inferred"),
    [
        (VnicType.DIRECT, VnicType.DIRECT),
        (VnicType.MACVTAP, VnicType.DIRECT),  # indistinguishable: the conservative choice
        (VnicType.DIRECT_PHYSICAL, VnicType.DIRECT_PHYSICAL),
        (VnicType.VDPA, VnicType.VDPA),
        (VnicType.REMOTE_MANAGED, VnicType.REMOTE_MANAGED),
    ],
)
def test_unknown_ports_are_inferred_from_their_request(vnic: VnicType, inferred: VnicType) -> None:
    assert infer_vnic_type(port("p", vnic)) is inferred


def test_with_destination_maps_each_source_device_to_its_destination() -> None:
    requests = [port("mv", VnicType.MACVTAP), group("gpu", "true")]
    plan = plan_migration("vm", requests, [(A,), (B,)], [PortInfo("mv", VnicType.MACVTAP)])
    dest_a, dest_b = PciAddress.parse("0000:5e:02.0"), PciAddress.parse("0000:af:00.0")
    moved = plan.with_destination("h2", Placement("vm", (), ((dest_a,), (dest_b,))))
    assert moved.destination_host == "h2"
    assert dict(moved.device_map) == {A: dest_a, B: dest_b}
    assert [i.destination for i in moved.items] == [(dest_a,), (dest_b,)]
