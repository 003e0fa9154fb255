"""What the netlink configurator sends and how it reads the kernel's VF table, through
pyroute2's real encoder and decoder (no socket: the wire bytes are built and parsed back)."""

from __future__ import annotations

from typing import Any

import pytest
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.requests.link import LinkIPRouteFilter

from pcifleet.host.vf.model import LinkState, TxRate, VfField, VfState, VlanProto, VlanTag
from pcifleet.host.vf.netlink import num_vfs_of, parse_vf_table, vf_request

TARGET = VfState(
    index=3,
    mac="fa:16:3e:aa:bb:cc",
    vlan=VlanTag(1000, 5, VlanProto.DOT1AD),
    rate=TxRate(10, 250),
    spoofchk=False,
    trust=True,
    link_state=LinkState.DISABLE,
)


def _wire(attrs: list[tuple[str, Any]]) -> Any:
    message = ifinfmsg()
    message["index"] = 42
    message["attrs"] = attrs
    message.encode()
    decoded = ifinfmsg(message.data)
    decoded.decode()
    return decoded


def _sent(field: VfField, target: VfState = TARGET) -> Any:
    """The ``IFLA_VF_INFO`` pyroute2 puts on the wire for ``link("set", vf=...)``."""
    attrs = LinkIPRouteFilter("set").set_vf({}, vf_request(target.index, field, target))
    decoded = _wire(list(attrs.items()))
    (info,) = decoded.get("IFLA_VFINFO_LIST").get_attrs("IFLA_VF_INFO")
    return info


@pytest.mark.parametrize(
    ("field", "attribute", "expected"),
    [
        (VfField.MAC, "IFLA_VF_MAC", {"vf": 3, "mac": "fa:16:3e:aa:bb:cc"}),
        (VfField.RATE, "IFLA_VF_RATE", {"vf": 3, "min_tx_rate": 10, "max_tx_rate": 250}),
        (VfField.SPOOFCHK, "IFLA_VF_SPOOFCHK", {"vf": 3, "spoofchk": 0}),
        (VfField.TRUST, "IFLA_VF_TRUST", {"vf": 3, "trust": 1}),
        (VfField.LINK_STATE, "IFLA_VF_LINK_STATE", {"vf": 3, "link_state": 2}),
    ],
)
def test_vf_write_encodes_one_attribute(
    field: VfField, attribute: str, expected: dict[str, object]
) -> None:
    info = _sent(field)
    assert [name for name, _ in info["attrs"]] == [attribute]
    value = info.get(attribute)
    assert {key: value[key] for key in expected} == expected


def test_vf_write_vlan_8021ad_uses_vlan_list_with_proto() -> None:
    info = _sent(VfField.VLAN)
    assert [name for name, _ in info["attrs"]] == ["IFLA_VF_VLAN_LIST"]
    (entry,) = info.get("IFLA_VF_VLAN_LIST").get_attrs("IFLA_VF_VLAN_INFO")
    assert (entry["vf"], entry["vlan"], entry["qos"], entry["proto"]) == (3, 1000, 5, 0x88A8)


def test_vf_write_vlan_8021q_uses_plain_vlan() -> None:
    target = VfState(index=1, vlan=VlanTag(42, 1))
    info = _sent(VfField.VLAN, target)
    assert [name for name, _ in info["attrs"]] == ["IFLA_VF_VLAN"]
    vlan = info.get("IFLA_VF_VLAN")
    assert (vlan["vf"], vlan["vlan"], vlan["qos"]) == (1, 42, 1)


def _kernel_row(vf: int, **overrides: Any) -> tuple[str, Any]:
    """An ``IFLA_VF_INFO`` shaped like the kernel's (``rtnl_fill_vfinfo``)."""
    attrs = {
        "IFLA_VF_MAC": {"vf": vf, "mac": f"fa:16:3e:00:00:{vf:02x}"},
        "IFLA_VF_VLAN": {"vf": vf, "vlan": 0, "qos": 0},
        "IFLA_VF_TX_RATE": {"vf": vf, "tx_rate": 0},
        "IFLA_VF_RATE": {"vf": vf, "min_tx_rate": 0, "max_tx_rate": 0},
        "IFLA_VF_SPOOFCHK": {"vf": vf, "spoofchk": 1},
        "IFLA_VF_LINK_STATE": {"vf": vf, "link_state": 0},
        "IFLA_VF_TRUST": {"vf": vf, "trust": 0},
        "IFLA_VF_VLAN_LIST": {
            "attrs": [("IFLA_VF_VLAN_INFO", {"vf": vf, "vlan": 0, "qos": 0, "proto": 0x8100})]
        },
    }
    attrs.update(overrides)
    return ("IFLA_VF_INFO", {"attrs": list(attrs.items())})


def test_vf_table_parsed_from_kernel_shaped_message() -> None:
    message = _wire(
        [
            ("IFLA_IFNAME", "enp59s0f0"),
            ("IFLA_NUM_VF", 2),
            (
                "IFLA_VFINFO_LIST",
                {
                    "attrs": [
                        _kernel_row(0),
                        _kernel_row(
                            1,
                            IFLA_VF_VLAN={"vf": 1, "vlan": 1000, "qos": 5},
                            IFLA_VF_VLAN_LIST={
                                "attrs": [
                                    (
                                        "IFLA_VF_VLAN_INFO",
                                        {"vf": 1, "vlan": 1000, "qos": 5, "proto": 0x88A8},
                                    )
                                ]
                            },
                            IFLA_VF_RATE={"vf": 1, "min_tx_rate": 10, "max_tx_rate": 250},
                            IFLA_VF_SPOOFCHK={"vf": 1, "spoofchk": 0xFFFFFFFF},
                            IFLA_VF_TRUST={"vf": 1, "trust": 0xFFFFFFFF},
                            IFLA_VF_LINK_STATE={"vf": 1, "link_state": 2},
                        ),
                    ]
                },
            ),
        ]
    )
    assert num_vfs_of(message) == 2
    assert parse_vf_table(message) == [
        VfState(index=0, mac="fa:16:3e:00:00:00"),
        VfState(
            index=1,
            mac="fa:16:3e:00:00:01",
            vlan=VlanTag(1000, 5, VlanProto.DOT1AD),
            rate=TxRate(10, 250),
            spoofchk=None,  # the driver does not report it (-1)
            trust=None,
            link_state=LinkState.DISABLE,
        ),
    ]


def test_vf_table_of_link_without_sriov_is_empty() -> None:
    message = _wire([("IFLA_IFNAME", "veth0")])
    assert num_vfs_of(message) == 0
    assert parse_vf_table(message) == []
