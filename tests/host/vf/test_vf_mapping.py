"""Neutron's ``physical_device_mappings`` / ``exclude_devices`` and the physnet plan."""

from __future__ import annotations

import pytest

from pcifleet.domain.address import PciAddress
from pcifleet.domain.errors import InvalidAgentConfig
from pcifleet.host.vf.mapping import (
    AgentMappings,
    DeviceMapping,
    ExcludeDevices,
    PfSeen,
    PhysicalDeviceMappings,
    plan_physnets,
)


def addr(text: str) -> PciAddress:
    return PciAddress.parse(text)


@pytest.mark.parametrize(
    ("value", "report"),
    [
        ("physnet1:eth1", {"physnet1": ["eth1"]}),
        ("physnet2:eth3,physnet2:eth4", {"physnet2": ["eth3", "eth4"]}),
        (" physnet1 : eth1 , , physnet2:eth2 ", {"physnet1": ["eth1"], "physnet2": ["eth2"]}),
        (["physnet1:enp59s0f0", "physnet1:enp59s0f1"], {"physnet1": ["enp59s0f0", "enp59s0f1"]}),
        ("", {}),
        ([], {}),
    ],
)
def test_physical_device_mappings_parse(value: str | list[str], report: object) -> None:
    assert PhysicalDeviceMappings.parse(value).as_report() == report


@pytest.mark.parametrize(
    ("value", "entry", "rule"),
    [
        ("physnet1", "physnet1", "format"),
        ("physnet1:eth1:x", "physnet1:eth1:x", "format"),
        (":eth1", ":eth1", "missing_physnet"),
        ("phys net:eth1", "phys net:eth1", "physnet"),
        ("physnet1:", "physnet1:", "missing_ifname"),
        ("physnet1:averyveryverylongname", "physnet1:averyveryverylongname", "ifname"),
        ("physnet1:eth/1", "physnet1:eth/1", "ifname"),
        ("physnet1:eth1,physnet2:eth1", "physnet2:eth1", "duplicate_ifname"),
        ("physnet1:eth1,physnet1:eth1", "physnet1:eth1", "duplicate_ifname"),
        (42, 42, "type"),
    ],
)
def test_physical_device_mappings_errors(value: object, entry: object, rule: str) -> None:
    with pytest.raises(InvalidAgentConfig) as caught:
        PhysicalDeviceMappings.parse(value)  # type: ignore[arg-type]
    error = caught.value
    assert (error.fields["option"], error.fields["entry"], error.fields["rule"]) == (
        "physical_device_mappings",
        entry,
        rule,
    )
    assert str(error).startswith(f"physical_device_mappings: entry {entry!r}: ")


def test_mappings_lookups() -> None:
    mappings = PhysicalDeviceMappings.parse("physnet2:eth3,physnet1:eth1,physnet2:eth4")
    assert mappings.physnets() == ("physnet2", "physnet1")
    assert mappings.devices("physnet2") == ("eth3", "eth4")
    assert mappings.physnet_of("eth4") == "physnet2"
    assert mappings.physnet_of("eth9") is None


def test_exclude_devices_parse_neutron_example() -> None:
    excludes = ExcludeDevices.parse("eth1:0000:07:00.2;0000:07:00.3,eth2:0000:05:00.1;0000:05:00.2")
    assert excludes.ifnames() == ("eth1", "eth2")
    assert excludes.excluded("eth1") == {addr("0000:07:00.2"), addr("0000:07:00.3")}
    assert excludes.excluded("eth2") == {addr("0000:05:00.1"), addr("0000:05:00.2")}
    assert excludes.excluded("eth3") == frozenset()


def test_exclude_devices_short_addresses_and_empty_list() -> None:
    excludes = ExcludeDevices.parse(["eth1:07:00.2; 07:00.3 ;", "eth2:"])
    assert excludes.excluded("eth1") == {addr("0000:07:00.2"), addr("0000:07:00.3")}
    assert excludes.excluded("eth2") == frozenset()


@pytest.mark.parametrize(
    ("value", "rule", "fragment"),
    [
        ("eth1", "format", "':'"),
        (":0000:07:00.2", "missing_ifname", "empty"),
        ("eth 1:0000:07:00.2", "ifname", "not an interface name"),
        ("eth1:0000:07:00.9", "address", "field func"),
        ("eth1:0000:07:00", "address", "expected"),
        ("eth1:0000:07:00.2;0000:07:00.2", "duplicate_address", "listed twice"),
        ("eth1:0000:07:00.2,eth2:0000:07:00.2", "duplicate_address", "already excluded"),
        ("eth1:0000:07:00.2,eth1:0000:07:00.3", "duplicate_ifname", "appears twice"),
    ],
)
def test_exclude_devices_errors(value: str, rule: str, fragment: str) -> None:
    with pytest.raises(InvalidAgentConfig, match=fragment) as caught:
        ExcludeDevices.parse(value)
    assert caught.value.fields["option"] == "exclude_devices"
    assert caught.value.fields["rule"] == rule


def test_exclusion_must_name_a_mapped_interface() -> None:
    with pytest.raises(InvalidAgentConfig) as caught:
        AgentMappings.parse("physnet1:eth1", "eth2:0000:05:00.1")
    assert caught.value.fields["rule"] == "unmapped_ifname"
    assert str(caught.value) == (
        "exclude_devices: entry 'eth2:0000:05:00.1': interface eth2 is not in "
        "physical_device_mappings"
    )


def _vfs(bus: int, count: int) -> tuple[PciAddress, ...]:
    return tuple(PciAddress(0, bus, 0, 2).offset(i) for i in range(count))


def test_plan_physnets_several_nics_per_physnet_and_exclusions() -> None:
    mappings = AgentMappings.parse(
        "physnet2:eth3,physnet2:eth4,physnet1:eth1,physnet3:eth9",
        "eth3:0000:07:00.2;0000:07:00.5,eth4:",
    )
    seen = [
        PfSeen("eth1", addr("0000:05:00.0"), _vfs(5, 2)),
        PfSeen("eth3", addr("0000:07:00.0"), _vfs(7, 3)),
        PfSeen("eth4", addr("0000:07:00.1"), ()),
        PfSeen("eno1", addr("0000:01:00.0"), _vfs(1, 4)),  # not mapped: the management NIC
    ]
    plan = plan_physnets(mappings, seen)
    assert plan.device_mappings() == {"physnet2": ["eth3", "eth4"], "physnet1": ["eth1"]}
    assert plan.missing == (DeviceMapping("physnet3", "eth9"),)
    assert plan.excluded() == {addr("0000:07:00.2")}
    assert plan.unknown_exclusions == (("eth3", addr("0000:07:00.5")),)
    eth3 = next(pf for pf in plan.pfs if pf.ifname == "eth3")
    assert eth3.vfs == (addr("0000:07:00.3"), addr("0000:07:00.4"))
    assert plan.physnet_of_vf(addr("0000:07:00.3")) == "physnet2"
    assert plan.physnet_of_vf(addr("0000:05:00.3")) == "physnet1"
    assert plan.physnet_of_vf(addr("0000:07:00.2")) is None  # excluded
    assert plan.physnet_of_vf(addr("0000:01:00.2")) is None  # PF not mapped


def test_plan_physnets_nothing_mapped() -> None:
    plan = plan_physnets(AgentMappings.parse(""), [PfSeen("eth1", addr("05:00.0"), _vfs(5, 1))])
    assert plan.pfs == ()
    assert plan.device_mappings() == {}
    assert plan.physnet_of_vf(addr("05:00.2")) is None
