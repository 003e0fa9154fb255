"""The vnic table rows, and port -> device request exactly as Nova builds it."""

from __future__ import annotations

import pytest

from pcifleet.domain.device import DeviceType
from pcifleet.domain.errors import InvalidRequest
from pcifleet.domain.request import DeviceMatch, NumaPolicy, Requester, RequesterKind
from pcifleet.domain.tags import Tags
from pcifleet.domain.vnic import (
    VNIC_TABLE,
    LiveMigration,
    PlugKind,
    VnicType,
    parse_vnic_type,
    port_device_request,
    vnic_info,
)

M = LiveMigration
P = PlugKind


@pytest.mark.parametrize(
    ("vnic", "device", "migration", "plug", "vif_type", "firewall"),
    [
        ("normal", None, M.NO_DEVICE, P.VIRTIO, "ovs", True),
        ("direct", DeviceType.VF, M.UNPLUG_REPLUG, P.HOSTDEV_INTERFACE, "hw_veb", False),
        ("macvtap", DeviceType.VF, M.TRANSPARENT, P.MACVTAP, "hw_veb", False),
        ("direct-physical", DeviceType.PF, M.UNPLUG_REPLUG, P.HOSTDEV, "hostdev_physical", False),
        ("virtio-forwarder", DeviceType.VF, M.TRANSPARENT, P.VHOSTUSER, "agilio_ovs", False),
        ("vdpa", DeviceType.VDPA, M.UNPLUG_REPLUG, P.VDPA, "ovs", False),
        ("remote-managed", DeviceType.VF, M.UNPLUG_REPLUG, P.HOSTDEV_INTERFACE, "ovs", False),
        ("baremetal", None, M.NEVER, P.NONE, "other", False),
        ("accelerator-direct", None, M.NEVER, P.NONE, "hw_veb", False),
        ("accelerator-direct-physical", None, M.NEVER, P.NONE, None, False),
    ],
)
def test_vnic_table_rows(
    vnic: str,
    device: DeviceType | None,
    migration: LiveMigration,
    plug: PlugKind,
    vif_type: str | None,
    firewall: bool,
) -> None:
    info = vnic_info(vnic)
    assert info.vnic_type == vnic
    assert info.device_type is device
    assert info.live_migration is migration
    assert info.plug is plug
    assert info.vif_type == vif_type
    assert info.host_firewall is firewall
    assert info.needs_device is (device is not None)


def test_table_has_one_row_per_vnic_type() -> None:
    assert set(VNIC_TABLE) == set(VnicType)
    assert all(row.vnic_type is key for key, row in VNIC_TABLE.items())


def test_device_types_are_novas_sriov_list() -> None:
    sriov = {v.value for v, row in VNIC_TABLE.items() if row.needs_device}
    assert sriov == {
        "direct",
        "macvtap",
        "direct-physical",
        "virtio-forwarder",
        "vdpa",
        "remote-managed",
    }


def test_only_remote_managed_is_remote_managed() -> None:
    assert [v for v, row in VNIC_TABLE.items() if row.remote_managed] == [VnicType.REMOTE_MANAGED]


def test_unknown_vnic_type_names_the_accepted_ones() -> None:
    with pytest.raises(InvalidRequest) as err:
        parse_vnic_type("smart-nic")
    assert "vnic_type 'smart-nic' is not one of: normal, direct, macvtap" in str(err.value)
    assert err.value.fields["field"] == "vnic_type"
    assert err.value.fields["rule"] == "enum"


def _ids() -> str:
    return "req-1"


@pytest.mark.parametrize(
    ("vnic", "physnet", "trusted", "dev_type", "props"),
    [
        (
            "direct",
            "physnet1",
            None,
            None,
            {"physical_network": "physnet1", "remote_managed": "False"},
        ),
        (
            "direct",
            "physnet1",
            True,
            None,
            {"physical_network": "physnet1", "remote_managed": "False", "trusted": "True"},
        ),
        (
            "macvtap",
            "physnet2",
            False,
            None,
            {"physical_network": "physnet2", "remote_managed": "False", "trusted": "False"},
        ),
        (
            "direct-physical",
            "physnet1",
            None,
            DeviceType.PF,
            {"physical_network": "physnet1", "remote_managed": "False"},
        ),
        (
            "vdpa",
            None,
            None,
            DeviceType.VDPA,
            {"physical_network": None, "remote_managed": "False"},
        ),
        (
            "remote-managed",
            None,
            None,
            None,
            {"physical_network": None, "remote_managed": "True"},
        ),
        (
            "virtio-forwarder",
            "physnet1",
            None,
            None,
            {"physical_network": "physnet1", "remote_managed": "False"},
        ),
    ],
)
def test_port_request_is_built_as_nova(
    vnic: str,
    physnet: str | None,
    trusted: bool | None,
    dev_type: DeviceType | None,
    props: dict[str, str | None],
) -> None:
    request = port_device_request(vnic, physnet, trusted, "port-1", id_factory=_ids)
    assert request is not None
    assert request.count == 1
    assert request.alternatives == (DeviceMatch.of(dev_type=dev_type, **props),)
    assert request.requester == Requester(RequesterKind.PORT, "port-1")
    assert request.from_port
    assert request.request_id == "req-1"
    assert request.numa_policy is None


@pytest.mark.parametrize(
    "vnic", ["normal", "baremetal", "accelerator-direct", "accelerator-direct-physical"]
)
def test_ports_without_device_make_no_request(vnic: str) -> None:
    assert port_device_request(vnic, "physnet1", True, "port-1") is None


def test_port_numa_policy_is_carried() -> None:
    request = port_device_request(VnicType.DIRECT, "p", None, "port", NumaPolicy.REQUIRED)
    assert request is not None
    assert request.numa_policy is NumaPolicy.REQUIRED


def test_fresh_request_ids_by_default() -> None:
    first = port_device_request("direct", "p", None, "port")
    second = port_device_request("direct", "p", None, "port")
    assert first is not None and second is not None
    assert first.request_id and first.request_id != second.request_id


@pytest.mark.parametrize(
    ("tags", "dev_type", "expected"),
    [
        # tunneled network (physical_network None) matches devices without a physnet tag
        ({"remote_managed": "false"}, DeviceType.VF, True),
        ({"physical_network": "physnet1", "remote_managed": "false"}, DeviceType.VF, False),
        # remote_managed "False" never matches devices lacking the key (plain type-PCI)
        ({}, DeviceType.PCI, False),
        ({"remote_managed": "true"}, DeviceType.VF, False),
    ],
)
def test_port_request_matching_consequences(
    tags: dict[str, str], dev_type: DeviceType, expected: bool
) -> None:
    request = port_device_request("direct", None, None, "port")
    assert request is not None
    (match,) = request.alternatives
    assert match.matches("8086", "154c", dev_type, Tags(tags)) is expected


@pytest.mark.parametrize(
    ("trusted", "device_trusted", "expected"),
    [(None, "true", True), (None, None, True), (True, "true", True), (False, "true", False)],
)
def test_trusted_matching(trusted: bool | None, device_trusted: str | None, expected: bool) -> None:
    request = port_device_request("direct", "physnet1", trusted, "port")
    assert request is not None
    tags = {"physical_network": "physnet1", "remote_managed": "false"}
    if device_trusted is not None:
        tags["trusted"] = device_trusted
    assert request.alternatives[0].matches("8086", "154c", DeviceType.VF, Tags(tags)) is expected
