"""VF values and the fake NIC's own checks (the same checks the netlink configurator makes)."""

from __future__ import annotations

import errno

import pytest

from pcifleet.domain.errors import InvalidVfRate, InvalidVfSetting, VfNotFound, VfUnsupported
from pcifleet.host.vf.configurator import errno_error
from pcifleet.host.vf.fake import FakeVfConfigurator
from pcifleet.host.vf.model import (
    LinkState,
    TxRate,
    VfField,
    VfSettings,
    VfState,
    VlanProto,
    VlanTag,
    changed_fields,
    settings_from_state,
    target_state,
)

PF = "ens1f0"


@pytest.mark.parametrize(
    ("build", "field", "rule"),
    [
        (lambda: VlanTag(4096), "vlan", "range"),
        (lambda: VlanTag(-1), "vlan", "range"),
        (lambda: VlanTag(True), "vlan", "type"),  # type: ignore[arg-type]
        (lambda: VlanTag(10, qos=8), "qos", "range"),
        (lambda: VlanTag(10, proto="802.1x"), "vlan_proto", "type"),  # type: ignore[arg-type]
        (lambda: VfSettings(vlan=VlanTag(0, qos=3)), "qos", "needs_vlan"),
        (lambda: VfSettings(vlan=VlanTag(0, proto=VlanProto.DOT1AD)), "vlan_proto", "needs_vlan"),
        (lambda: VfSettings(mac="01:00:5e:00:00:01"), "mac", "unicast"),
        (lambda: VfSettings(mac="ff:ff:ff:ff:ff:ff"), "mac", "unicast"),
        (lambda: VfSettings(mac="fa:16:3e:00:00"), "mac", "format"),
        (lambda: VfSettings(mac="fa:16:3e:00:00:0g"), "mac", "format"),
        (lambda: VfSettings(mac="fa:16-3e:00:00:01"), "mac", "format"),
        (lambda: VfSettings(spoofchk=1), "spoofchk", "type"),  # type: ignore[arg-type]
        (lambda: VfSettings(link_state="up"), "link_state", "type"),  # type: ignore[arg-type]
        (lambda: LinkState.from_kernel(3), "link_state", "range"),
        (lambda: VlanProto.from_ethertype(0x0800), "vlan_proto", "ethertype"),
    ],
)
def test_vf_setting_rejected(build: object, field: str, rule: str) -> None:
    with pytest.raises(InvalidVfSetting) as caught:
        build()  # type: ignore[operator]
    assert caught.value.fields["field"] == field
    assert caught.value.fields["rule"] == rule
    assert field in str(caught.value)


@pytest.mark.parametrize(
    ("build", "field", "rule"),
    [
        (lambda: TxRate(200, 100), "min_tx_rate", "min_above_max"),
        (lambda: TxRate(-1, 0), "min_tx_rate", "range"),
        (lambda: TxRate(0, 2**32), "max_tx_rate", "range"),
        (lambda: VfSettings(min_tx_rate=5, max_tx_rate=4), "min_tx_rate", "min_above_max"),
        (lambda: VfSettings(max_tx_rate=1.5), "max_tx_rate", "type"),  # type: ignore[arg-type]
    ],
)
def test_vf_rate_rejected(build: object, field: str, rule: str) -> None:
    with pytest.raises(InvalidVfRate) as caught:
        build()  # type: ignore[operator]
    assert (caught.value.fields["field"], caught.value.fields["rule"]) == (field, rule)


@pytest.mark.parametrize(
    "accepted",
    [
        lambda: VlanTag(4095, 7, VlanProto.DOT1AD),
        lambda: VfSettings(mac="00:00:00:00:00:00"),  # clears the admin MAC
        lambda: VfSettings(mac="FA-16-3E-AB-CD-EF"),
        lambda: TxRate(500, 0),  # a minimum with no maximum
        lambda: VfSettings(vlan=VlanTag(0)),  # untagged
    ],
)
def test_vf_setting_accepted(accepted: object) -> None:
    accepted()  # type: ignore[operator]


def test_vf_mac_normalized() -> None:
    assert VfSettings(mac=" FA-16-3E-AB-CD-EF ").mac == "fa:16:3e:ab:cd:ef"


def test_vf_enum_kernel_values() -> None:
    assert [s.kernel_value for s in LinkState] == [0, 1, 2]
    assert LinkState.from_kernel(2) is LinkState.DISABLE
    assert VlanProto.DOT1AD.ethertype == 0x88A8
    assert VlanProto.from_ethertype(0x8100) is VlanProto.DOT1Q


def test_vf_settings_fields_in_write_order() -> None:
    settings = VfSettings(link_state=LinkState.ENABLE, min_tx_rate=3, mac="fa:16:3e:00:00:01")
    assert settings.fields == (VfField.MAC, VfField.RATE, VfField.LINK_STATE)
    assert VfSettings().fields == ()


def test_vf_target_and_diff_roundtrip() -> None:
    current = VfState(index=0, rate=TxRate(10, 100))
    target = target_state(current, VfSettings(max_tx_rate=50, trust=True))
    assert target.rate == TxRate(10, 50)
    assert changed_fields(current, target) == (VfField.RATE, VfField.TRUST)
    back = target_state(target, settings_from_state(current, changed_fields(current, target)))
    assert back == current


@pytest.mark.parametrize(
    ("code", "kind", "text"),
    [
        (errno.ENODEV, VfNotFound, "No such device"),
        (errno.EOPNOTSUPP, VfUnsupported, "Operation not supported"),
        (errno.EPROTONOSUPPORT, VfUnsupported, "Protocol not supported"),
        (errno.EINVAL, None, "Invalid argument"),
        (errno.EPERM, None, "Operation not permitted"),
    ],
)
def test_vf_errno_translation(code: int, kind: type | None, text: str) -> None:
    error = errno_error(PF, 3, "vlan", code)
    if kind is not None:
        assert isinstance(error, kind)
    assert str(error) == f"PF {PF}, VF 3, vlan: {text} ({errno.errorcode[code]})"
    assert error.fields["errno_text"] == text


def test_fake_nic_unknown_pf_is_enodev() -> None:
    nic = FakeVfConfigurator()
    for call in (lambda: nic.read("eth7", 0), lambda: nic.num_vfs("eth7")):
        with pytest.raises(VfNotFound) as caught:
            call()
        assert caught.value.fields["errno"] == errno.ENODEV
        assert caught.value.fields["field"] == "link"


@pytest.mark.parametrize("index", [4, -1, 100])
def test_fake_nic_index_must_be_below_numvfs(index: int) -> None:
    nic = FakeVfConfigurator()
    nic.add_pf(PF, 4)
    with pytest.raises(VfNotFound) as caught:
        nic.apply(PF, index, VfSettings(trust=True))
    assert caught.value.fields["rule"] == "index"
    assert nic.writes == []


def test_fake_nic_without_vfs_reports_zero() -> None:
    nic = FakeVfConfigurator()
    nic.add_pf("veth0", 0)
    assert nic.num_vfs("veth0") == 0
    with pytest.raises(VfNotFound, match="has no VFs"):
        nic.read("veth0", 0)


def test_fake_nic_rate_pair_checked_before_any_write() -> None:
    nic = FakeVfConfigurator()
    nic.add_pf(PF, 1)
    nic.apply(PF, 0, VfSettings(max_tx_rate=100))
    writes = len(nic.writes)
    with pytest.raises(InvalidVfRate):
        nic.apply(PF, 0, VfSettings(mac="fa:16:3e:00:00:01", min_tx_rate=101))
    assert len(nic.writes) == writes
    assert nic.read(PF, 0).mac == "00:00:00:00:00:00"


def test_fake_nic_writes_even_unchanged_fields() -> None:
    # the configurator is dumb by contract; VfManager does the comparing
    nic = FakeVfConfigurator()
    nic.add_pf(PF, 1)
    nic.apply(PF, 0, VfSettings(spoofchk=True))
    nic.apply(PF, 0, VfSettings(spoofchk=True))
    assert [w.field for w in nic.writes] == [VfField.SPOOFCHK, VfField.SPOOFCHK]


def test_fake_nic_persistent_failure() -> None:
    nic = FakeVfConfigurator()
    nic.add_pf(PF, 1)
    nic.fail(PF, 0, VfField.RATE, errno.EINVAL, times=None)
    for _ in range(3):
        with pytest.raises(Exception, match="Invalid argument"):
            nic.apply(PF, 0, VfSettings(min_tx_rate=10))
    nic.remove_pf(PF)
    with pytest.raises(VfNotFound):
        nic.read(PF, 0)
