"""Real netlink inside a namespace made by the test: veth links, passthrough macvtap, and the
VF configurator against a link without SR-IOV (this machine has no SR-IOV NIC, so real VF
writes are not possible here; those run against the fake in the ``*_fake_nic`` tests)."""

from __future__ import annotations

import errno
from typing import Any

import pytest

from pcifleet.domain.errors import InvalidInput, MacvtapError, VfNotFound
from pcifleet.host.vf.macvtap import MacvtapPlugger
from pcifleet.host.vf.model import VfSettings, VlanTag
from pcifleet.host.vf.netlink import NetlinkVfConfigurator, run_in_netns
from pcifleet.host.vf.service import VfManager

LOWER = "lower0"
PEER = "lower0p"
TAP = "mvtap0"


def _links(name: str) -> dict[str, Any]:
    def operation(ipr: Any) -> dict[str, Any]:
        return {str(m.get("IFLA_IFNAME")): m for m in ipr.link("dump")}

    return run_in_netns(name, operation)


@pytest.fixture
def veth(netns_name: str) -> str:
    """A veth pair ``lower0``/``lower0p`` in the test namespace; returns the namespace name."""

    def operation(ipr: Any) -> None:
        ipr.link("add", ifname=LOWER, kind="veth", peer=PEER)
        ipr.link("set", index=ipr.link_lookup(ifname=LOWER)[0], mtu=9000)

    run_in_netns(netns_name, operation)
    return netns_name


def test_macvtap_passthrough_over_veth_real_netlink(veth: str) -> None:
    link = MacvtapPlugger(veth).plug(LOWER, TAP)
    lower = _links(veth)[LOWER]
    assert link.mode == "passthru"
    assert link.lower_ifname == LOWER
    assert link.lower_index == lower["index"]
    assert link.mac == lower.get("IFLA_ADDRESS")  # passthrough shares the lower MAC
    assert link.mtu == 9000  # inherited from the lower device
    assert link.admin_up
    assert MacvtapPlugger(veth).read(TAP) == link


def test_macvtap_mac_sets_lower_device_real_netlink(veth: str) -> None:
    link = MacvtapPlugger(veth).plug(LOWER, TAP, mac="FA:16:3E:12:34:56", mtu=1500)
    assert link.mac == "fa:16:3e:12:34:56"
    assert link.mtu == 1500
    assert _links(veth)[LOWER].get("IFLA_ADDRESS") == "fa:16:3e:12:34:56"


def test_macvtap_one_per_lower_in_passthrough_real_netlink(veth: str) -> None:
    plugger = MacvtapPlugger(veth)
    plugger.plug(LOWER, TAP)
    with pytest.raises(MacvtapError) as caught:
        plugger.plug(LOWER, "mvtap1")
    assert caught.value.fields["step"] == "create"
    assert caught.value.fields["errno"] == errno.EINVAL
    assert "mvtap1" not in _links(veth)


def test_macvtap_failed_step_deletes_link_real_netlink(veth: str) -> None:
    def lower_mtu_1500(ipr: Any) -> None:
        ipr.link("set", index=ipr.link_lookup(ifname=LOWER)[0], mtu=1500)

    run_in_netns(veth, lower_mtu_1500)
    with pytest.raises(MacvtapError, match="set mtu: Invalid argument"):
        MacvtapPlugger(veth).plug(LOWER, TAP, mtu=9000)  # above the lower device's MTU
    assert TAP not in _links(veth)


def test_macvtap_unplug_real_netlink(veth: str) -> None:
    plugger = MacvtapPlugger(veth)
    plugger.plug(LOWER, TAP)
    assert plugger.unplug(TAP) is True
    assert plugger.unplug(TAP) is False
    links = _links(veth)
    assert TAP not in links
    assert LOWER in links


def test_macvtap_unplug_refuses_other_links_real_netlink(veth: str) -> None:
    with pytest.raises(MacvtapError) as caught:
        MacvtapPlugger(veth).unplug(LOWER)
    assert caught.value.fields["rule"] == "not_macvtap"
    assert LOWER in _links(veth)


def test_macvtap_missing_lower_real_netlink(veth: str) -> None:
    with pytest.raises(MacvtapError) as caught:
        MacvtapPlugger(veth).plug("nosuch0", TAP)
    assert caught.value.fields["rule"] == "missing_link"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"lower_ifname": "a" * 16, "ifname": TAP}, "lower_ifname"),
        ({"lower_ifname": LOWER, "ifname": "bad/name"}, "ifname"),
        ({"lower_ifname": LOWER, "ifname": TAP, "mac": "01:00:5e:00:00:01"}, "mac"),
        ({"lower_ifname": LOWER, "ifname": TAP, "mtu": 67}, "mtu"),
    ],
)
def test_macvtap_input_rejected_before_netlink(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        MacvtapPlugger("pcf-never-created").plug(**kwargs)
    assert caught.value.fields["field"] == field


def test_vf_read_on_link_without_sriov_real_netlink(veth: str) -> None:
    configurator = NetlinkVfConfigurator(veth)
    assert configurator.num_vfs(LOWER) == 0
    with pytest.raises(VfNotFound, match="has no VFs") as caught:
        configurator.read(LOWER, 0)
    assert caught.value.fields["pf"] == LOWER
    assert caught.value.fields["rule"] == "index"
    with pytest.raises(VfNotFound, match="has no VFs"):
        configurator.apply(LOWER, 0, VfSettings(vlan=VlanTag(100)))


def test_vf_missing_pf_is_kernel_enodev_real_netlink(veth: str) -> None:
    configurator = NetlinkVfConfigurator(veth)
    with pytest.raises(VfNotFound) as caught:
        configurator.read("nosuch0", 2)
    assert caught.value.fields["errno"] == errno.ENODEV
    assert str(caught.value) == "PF nosuch0, VF 2, link: No such device (ENODEV)"


def test_vf_manager_over_netlink_on_link_without_sriov_real_netlink(veth: str) -> None:
    manager = VfManager(NetlinkVfConfigurator(veth))
    before = _links(veth)[LOWER].get("IFLA_ADDRESS")
    with pytest.raises(VfNotFound):
        manager.configure(LOWER, 0, VfSettings(mac="fa:16:3e:00:00:01"))
    assert manager.held() == ()
    assert _links(veth)[LOWER].get("IFLA_ADDRESS") == before
