"""Selectors: parsing from spec values, matching against a host view, explanations."""

from __future__ import annotations

import pytest

from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceType
from pcifleet.domain.errors import InvalidSpec, InvalidSpecAddress
from pcifleet.domain.selectors import (
    CLASS_NAMES,
    REGISTRY,
    AddressSelector,
    ClassSelector,
    DevnameSelector,
    DriverSelector,
    HostDevices,
    IndexRanges,
    NumaSelector,
    PfAddressSelector,
    PfNameSelector,
    ProductSelector,
    RemoteManagedSelector,
    Selector,
    VendorSelector,
    build_selector,
    sort_selectors,
)

A = PciAddress.parse


def _pf(address: str, vendor: str, product: str, netdev: str, driver: str, numa: int) -> Device:
    return Device(
        A(address),
        vendor,
        product,
        DeviceType.PF,
        class_code="020000",
        numa_node=numa,
        driver=driver,
        netdevs=(netdev,),
    )


def _vf(pf: Device, index: int, product: str, driver: str, netdevs: tuple[str, ...] = ()) -> Device:
    return Device(
        pf.address.offset(index + 1),
        pf.vendor_id,
        product,
        DeviceType.VF,
        class_code="020000",
        numa_node=pf.numa_node,
        parent=pf.address,
        vf_index=index,
        driver=driver,
        netdevs=netdevs,
    )


INTEL_PF = _pf("0000:81:00.0", "8086", "1572", "ens1f0", "i40e", 0)
INTEL_VFS = tuple(
    _vf(INTEL_PF, i, "154c", "iavf", ("ens1f0v1",) if i == 1 else ()) for i in range(4)
)
MLX_PF = _pf("0000:82:00.0", "15b3", "101d", "ens2f0", "mlx5_core", 1)
MLX_VFS = tuple(_vf(MLX_PF, i, "101e", "vfio-pci") for i in range(2))
GPU = Device(A("0000:3b:00.0"), "10de", "1db4", DeviceType.PCI, "030200", None, driver="vfio-pci")
MGMT = Device(
    A("0000:01:00.0"), "8086", "1521", DeviceType.PCI, "020000", 0, driver="igb", netdevs=("eno1",)
)
UNBOUND = Device(A("0000:05:00.0"), "1af4", "1000", DeviceType.PCI, None, None)
DEVICES = (INTEL_PF, *INTEL_VFS, MLX_PF, *MLX_VFS, GPU, MGMT, UNBOUND)
HOST = HostDevices(DEVICES, card_serials={MLX_PF.address: "MT2048X01234"})
BY_ADDRESS = {str(d.address): d for d in DEVICES}


def _matching(selector: Selector) -> list[str]:
    return [
        str(d.address)
        for d in sorted(DEVICES, key=lambda d: d.address)
        if selector.matches(d, HOST)
    ]


def _sel(key: str, value: object) -> Selector:
    selector = build_selector(key, value)
    assert selector is not None
    return selector


# ----------------------------------------------------------------------- host view


def test_host_view_answers_what_selectors_ask() -> None:
    assert len(HOST) == len(DEVICES)
    assert HOST[A("0000:81:00.0")] is INTEL_PF
    assert HOST.is_pf(A("0000:81:00.0"))
    assert not HOST.is_pf(A("0000:81:00.1"))
    assert not HOST.is_pf(A("0000:99:00.0"))
    assert HOST.by_netdev("ens1f0") is INTEL_PF
    assert HOST.by_netdev("ens1f0v1") is INTEL_VFS[1]
    assert HOST.by_netdev("nope") is None
    assert HOST.vfs_of(INTEL_PF.address) == INTEL_VFS
    assert HOST.vfs_of(GPU.address) == ()
    assert list(HOST.ordered()) == sorted(d.address for d in DEVICES)


def test_host_view_of_a_few_devices() -> None:
    host = HostDevices.of(GPU, MGMT)
    assert list(host) == [GPU.address, MGMT.address]
    assert host.ordered() == (MGMT.address, GPU.address)
    assert host.by_netdev("eno1") is MGMT


def test_card_serial_is_the_devices_own_or_its_pfs() -> None:
    host = HostDevices(DEVICES, card_serials={MLX_PF.address: "SN1", INTEL_VFS[0].address: "SN2"})
    assert host.card_serial(MLX_VFS[0]) == "SN1"
    assert host.card_serial(MLX_PF) == "SN1"
    assert host.card_serial(INTEL_VFS[0]) == "SN2"
    assert host.card_serial(INTEL_VFS[1]) is None
    assert HostDevices(DEVICES, card_serials={GPU.address: ""}).card_serial(GPU) is None


# -------------------------------------------------------------------------- registry


def test_registry_holds_every_selector_key() -> None:
    assert set(REGISTRY) == {
        "vendor_id",
        "product_id",
        "address",
        "devname",
        "driver",
        "class",
        "numa_node",
        "pf",
        "pf_address",
    }


def test_selectors_sort_cheap_first_keeping_written_order_on_ties() -> None:
    chain = [
        _sel("pf", "ens1f0"),
        _sel("address", "*:81:*.*"),
        _sel("driver", "iavf"),
        _sel("product_id", "154c"),
        _sel("vendor_id", "8086"),
        RemoteManagedSelector(),
    ]
    keys = [s.key for s in sort_selectors(chain)]
    assert keys == ["product_id", "vendor_id", "driver", "address", "pf", "remote_managed"]


# ------------------------------------------------------------------ vendor / product

_P = "Invalid [pci]device_spec config: "


@pytest.mark.parametrize(
    ("value", "ids"),
    [
        ("8086", {"8086"}),
        ("10DE", {"10de"}),
        ("86", {"0086"}),
        (" 8086 ", {"8086"}),
        ("0x15b3", {"15b3"}),
        (["8086", "15B3"], {"8086", "15b3"}),
    ],
)
def test_vendor_ids_normalize_like_nova(value: object, ids: set[str]) -> None:
    selector = _sel("vendor_id", value)
    assert isinstance(selector, VendorSelector)
    assert selector.ids == ids


@pytest.mark.parametrize("value", ["*", " * ", ["8086", "*"]])
def test_wildcard_id_needs_no_selector(value: object) -> None:
    assert build_selector("vendor_id", value) is None
    assert build_selector("product_id", value) is None


@pytest.mark.parametrize(
    ("key", "value", "message", "rule"),
    [
        (
            "vendor_id",
            "zz",
            _P + "property vendor_id ('zz') does not parse as a hex number.",
            "hex",
        ),
        (
            "vendor_id",
            "-1",
            _P + "property vendor_id ('-1') does not parse as a hex number.",
            "hex",
        ),
        (
            "vendor_id",
            "10000",
            _P + "property vendor_id (10000) is greater than the maximum allowable value (FFFF).",
            "range",
        ),
        (
            "product_id",
            "1FFFF",
            _P + "property product_id (1FFFF) is greater than the maximum allowable value (FFFF).",
            "range",
        ),
        (
            "product_id",
            "15 4c",
            _P + "property product_id ('15 4c') does not parse as a hex number.",
            "hex",
        ),
        ("vendor_id", 8086, _P + "vendor_id (8086) must be a str or a list of them", "type"),
        ("vendor_id", None, _P + "vendor_id (None) must be a str or a list of them", "type"),
        ("vendor_id", [], _P + "vendor_id must not be an empty list", "empty"),
    ],
)
def test_id_errors(key: str, value: object, message: str, rule: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        build_selector(key, value)
    assert str(info.value) == message
    assert info.value.fields == {"detail": message.removeprefix(_P), "field": key, "rule": rule}


def test_vendor_and_product_match_and_explain() -> None:
    vendor = _sel("vendor_id", "8086")
    product = _sel("product_id", ["154c", "1572"])
    assert isinstance(product, ProductSelector)
    assert _matching(vendor) == [
        "0000:01:00.0",
        "0000:81:00.0",
        "0000:81:00.1",
        "0000:81:00.2",
        "0000:81:00.3",
        "0000:81:00.4",
    ]
    assert _matching(product) == [
        "0000:81:00.0",
        "0000:81:00.1",
        "0000:81:00.2",
        "0000:81:00.3",
        "0000:81:00.4",
    ]
    assert vendor.describe() == "vendor_id 8086"
    assert vendor.why_not(MLX_PF, HOST) == "vendor_id 15b3 != 8086"
    assert product.why_not(GPU, HOST) == "product_id 1db4 not in {154c, 1572}"


# -------------------------------------------------------------------------- address


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # a single address naming a PF matches the PF and its VFs (Nova §1.4)
        (
            "0000:81:00.0",
            ["0000:81:00.0", "0000:81:00.1", "0000:81:00.2", "0000:81:00.3", "0000:81:00.4"],
        ),
        (
            {"domain": "0000", "bus": "81", "slot": "00", "function": "0"},
            ["0000:81:00.0", "0000:81:00.1", "0000:81:00.2", "0000:81:00.3", "0000:81:00.4"],
        ),
        # a single address of a VF or a plain device matches just that device
        ("0000:81:00.2", ["0000:81:00.2"]),
        ("0000:3b:00.0", ["0000:3b:00.0"]),
        # an address that is not on the host matches nothing
        ("0000:99:00.0", []),
        # globs match own addresses only, never through the parent
        ("*:81:00.0", ["0000:81:00.0"]),
        ("*:82:*.*", ["0000:82:00.0", "0000:82:00.1", "0000:82:00.2"]),
        (".2", ["0000:81:00.2", "0000:82:00.2"]),
        ({"bus": "8"}, [f"0000:8{b}:00.{f}" for b, n in ((1, 5), (2, 3)) for f in range(n)]),
    ],
)
def test_address_selector(value: object, expected: list[str]) -> None:
    assert _matching(_sel("address", value)) == expected


def test_address_selector_explains() -> None:
    selector = _sel("address", "*:0a:00.*")
    assert selector.describe() == "address *:0a:00.*"
    assert selector.why_not(GPU, HOST) == "address 0000:3b:00.0 not in *:0a:00.*"
    assert isinstance(selector, AddressSelector)
    assert selector.pf_address(HOST) is None
    pf_spec = _sel("address", "0000:81:00.0")
    assert isinstance(pf_spec, AddressSelector)
    assert pf_spec.pf_address(HOST) == INTEL_PF.address


def test_address_selector_keeps_novas_errors() -> None:
    with pytest.raises(InvalidSpecAddress) as info:
        build_selector("address", ["0000:81:00.0"])
    assert str(info.value) == "The PCI address ['0000:81:00.0'] has an incorrect format."


# -------------------------------------------------------------------------- devname


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "ens1f0",
            ["0000:81:00.0", "0000:81:00.1", "0000:81:00.2", "0000:81:00.3", "0000:81:00.4"],
        ),
        ("ens1f0v1", ["0000:81:00.2"]),
        ("eno1", ["0000:01:00.0"]),
        (" eno1 ", ["0000:01:00.0"]),
        ("missing0", []),
    ],
)
def test_devname_selector(name: str, expected: list[str]) -> None:
    assert _matching(_sel("devname", name)) == expected


def test_devname_explains_and_blank_is_absent() -> None:
    selector = _sel("devname", "eno1")
    assert isinstance(selector, DevnameSelector)
    assert selector.why_not(GPU, HOST) == "devname eno1 is 0000:01:00.0, not 0000:3b:00.0"
    assert _sel("devname", "nope0").why_not(GPU, HOST) == "devname nope0 is not present on the host"
    assert build_selector("devname", "") is None
    assert build_selector("devname", "   ") is None
    with pytest.raises(InvalidSpec) as info:
        build_selector("devname", 5)
    assert info.value.fields["rule"] == "type"


# ------------------------------------------------------------------ native selectors


def test_driver_selector() -> None:
    selector = _sel("driver", ["vfio-pci", "igb"])
    assert isinstance(selector, DriverSelector)
    assert _matching(selector) == ["0000:01:00.0", "0000:3b:00.0", "0000:82:00.1", "0000:82:00.2"]
    assert selector.why_not(INTEL_PF, HOST) == "driver i40e not in {igb, vfio-pci}"
    assert selector.why_not(UNBOUND, HOST) == "driver (none) not in {igb, vfio-pci}"
    assert _matching(_sel("driver", "")) == ["0000:05:00.0"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("030200", ["0000:3b:00.0"]),
        ("03", ["0000:3b:00.0"]),
        ("display", ["0000:3b:00.0"]),
        ("0x0302", ["0000:3b:00.0"]),
        (["Ethernet", "03"], None),
        ("0207", []),
    ],
)
def test_class_selector(value: object, expected: list[str] | None) -> None:
    selector = _sel("class", value)
    got = _matching(selector)
    if expected is None:  # every device with a known class
        expected = [
            str(d.address) for d in sorted(DEVICES, key=lambda d: d.address) if d.class_code
        ]
    assert got == expected
    assert not selector.matches(UNBOUND, HOST)


def test_class_selector_explains_and_rejects() -> None:
    selector = _sel("class", "ethernet")
    assert isinstance(selector, ClassSelector)
    assert selector.describe() == "class 0200"
    assert selector.why_not(GPU, HOST) == "class 030200 not in 0200"
    assert selector.why_not(UNBOUND, HOST) == "class (unknown) not in 0200"
    for bad in ("020", "gpuish", "0200000"):
        with pytest.raises(InvalidSpec) as info:
            build_selector("class", bad)
        assert info.value.fields == {
            "detail": info.value.fields["detail"],
            "field": "class",
            "rule": "format",
        }
        assert "2, 4 or 6 hex digits" in str(info.value)
    assert CLASS_NAMES["nvme"] == "0108"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, ["0000:82:00.0", "0000:82:00.1", "0000:82:00.2"]),
        ("1", ["0000:82:00.0", "0000:82:00.1", "0000:82:00.2"]),
        (None, ["0000:05:00.0", "0000:3b:00.0"]),
        (
            [None, 1],
            ["0000:05:00.0", "0000:3b:00.0", "0000:82:00.0", "0000:82:00.1", "0000:82:00.2"],
        ),
    ],
)
def test_numa_selector(value: object, expected: list[str]) -> None:
    assert _matching(_sel("numa_node", value)) == expected


@pytest.mark.parametrize(
    ("value", "rule"), [(-1, "format"), ("x", "format"), (True, "type"), (1.5, "type")]
)
def test_numa_selector_errors(value: object, rule: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        build_selector("numa_node", value)
    assert info.value.fields["field"] == "numa_node"
    assert info.value.fields["rule"] == rule


def test_numa_selector_explains_unknown() -> None:
    selector = _sel("numa_node", [0, None])
    assert isinstance(selector, NumaSelector)
    assert selector.why_not(MLX_PF, HOST) == "numa_node 1 not in {0, unknown}"
    assert selector.describe() == "numa_node {0, unknown}"


@pytest.mark.parametrize(
    ("text", "ranges", "inside", "outside"),
    [
        ("0-3,7", "0-3,7", [0, 3, 7], [4, 8, -1]),
        ("7, 0-3", "0-3,7", [2], [5]),
        ("5", "5", [5], [4, 6]),
        ("2-2", "2", [2], [1]),
    ],
)
def test_index_ranges(text: str, ranges: str, inside: list[int], outside: list[int]) -> None:
    parsed = IndexRanges.parse("pf", text)
    assert str(parsed) == ranges
    assert all(i in parsed for i in inside)
    assert not any(i in parsed for i in outside)
    assert None not in parsed


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("ens1f0#", "vf_range"),
        ("ens1f0#3-1", "vf_range"),
        ("ens1f0#a", "vf_range"),
        ("ens1f0#1,,2", "vf_range"),
        ("ens1f0#-2", "vf_range"),
        ("#1", "format"),
        (3, "type"),
    ],
)
def test_pf_selector_errors(value: object, rule: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        build_selector("pf", value)
    assert info.value.fields["field"] == "pf"
    assert info.value.fields["rule"] == rule


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ens1f0", ["0000:81:00.1", "0000:81:00.2", "0000:81:00.3", "0000:81:00.4"]),
        ("ens1f0#0,2-3", ["0000:81:00.1", "0000:81:00.3", "0000:81:00.4"]),
        (["ens1f0#1", "ens2f0#0"], ["0000:81:00.2", "0000:82:00.1"]),
        ("eno1", []),
        ("missing0", []),
    ],
)
def test_pf_selector_selects_vfs_by_pf_name(value: object, expected: list[str]) -> None:
    assert _matching(_sel("pf", value)) == expected


def test_pf_selector_explains() -> None:
    selector = _sel("pf", "ens1f0#0-1")
    assert isinstance(selector, PfNameSelector)
    assert selector.describe() == "pf ens1f0#0-1"
    assert selector.why_not(INTEL_VFS[3], HOST) == "VF 3 of 0000:81:00.0 is not in pf ens1f0#0-1"
    assert selector.why_not(GPU, HOST) == "0000:3b:00.0 is not a VF (wanted pf ens1f0#0-1)"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0000:81:00.0", ["0000:81:00.1", "0000:81:00.2", "0000:81:00.3", "0000:81:00.4"]),
        ("0000:81:00.0#3", ["0000:81:00.4"]),
        ("*:8*:00.0", None),
        ("*:82:00.0#0-9", ["0000:82:00.1", "0000:82:00.2"]),
    ],
)
def test_pf_address_selector(value: str, expected: list[str] | None) -> None:
    if expected is None:
        with pytest.raises(InvalidSpecAddress):
            build_selector("pf_address", value)
        return
    selector = _sel("pf_address", value)
    assert isinstance(selector, PfAddressSelector)
    assert _matching(selector) == expected
    assert not selector.matches(INTEL_PF, HOST)


def test_pf_address_selector_explains() -> None:
    selector = _sel("pf_address", "0000:81:00.0#0")
    assert selector.describe() == "pf_address 0000:81:00.0#0"
    assert (
        selector.why_not(MLX_VFS[0], HOST)
        == "VF 0 of 0000:82:00.0 is not in pf_address 0000:81:00.0#0"
    )
    assert selector.why_not(GPU, HOST) == (
        "0000:3b:00.0 is not a VF (wanted pf_address 0000:81:00.0#0)"
    )


def test_remote_managed_selector_needs_a_vpd_serial() -> None:
    selector = RemoteManagedSelector()
    assert selector.describe() == "remote_managed (a VPD card serial number)"
    assert _matching(selector) == ["0000:82:00.0", "0000:82:00.1", "0000:82:00.2"]
    assert selector.why_not(GPU, HOST) == (
        "remote_managed needs a VPD card serial number; 0000:3b:00.0 has none"
    )
