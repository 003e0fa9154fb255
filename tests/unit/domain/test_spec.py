"""Device specs (the whitelist): Nova's device_spec keys, errors, first match, exclusions."""

from __future__ import annotations

import json

import pytest

from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceType
from pcifleet.domain.errors import InvalidSpec, InvalidSpecAddress, InvalidSpecCombination
from pcifleet.domain.selectors import HostDevices, parse_hex_id
from pcifleet.domain.spec import (
    DeviceSpec,
    SpecList,
    default_resource_class,
    normalize_resource_class,
    normalize_trait,
    parse_bool_tag,
    parse_spec_list,
)
from pcifleet.domain.tags import Tags

A = PciAddress.parse
_P = "Invalid [pci]device_spec config: "


def _pf(address: str, vendor: str, product: str, netdev: str) -> Device:
    return Device(A(address), vendor, product, DeviceType.PF, "020000", 0, netdevs=(netdev,))


def _vfs(pf: Device, product: str, count: int) -> tuple[Device, ...]:
    return tuple(
        Device(
            pf.address.offset(i + 1),
            pf.vendor_id,
            product,
            DeviceType.VF,
            "020000",
            pf.numa_node,
            parent=pf.address,
            vf_index=i,
            driver="iavf",
        )
        for i in range(count)
    )


INTEL_PF = _pf("0000:81:00.0", "8086", "1572", "ens1f0")
INTEL_VFS = _vfs(INTEL_PF, "154c", 4)
MLX_PF = _pf("0000:82:00.0", "15b3", "101d", "ens2f0")
MLX_VFS = _vfs(MLX_PF, "101e", 2)
GPU = Device(A("0000:3b:00.0"), "10de", "1db4", DeviceType.PCI, "030200", None)
MGMT = Device(A("0000:01:00.0"), "8086", "1521", DeviceType.PCI, "020000", 0, netdevs=("eno1",))
DEVICES = (INTEL_PF, *INTEL_VFS, MLX_PF, *MLX_VFS, GPU, MGMT)
HOST = HostDevices(DEVICES, card_serials={MLX_PF.address: "MT2048X01234"})


def _specs(*entries: object, placement: bool = False) -> SpecList:
    return parse_spec_list([json.dumps(e) for e in entries], report_in_placement=placement)


def _one(entry: dict[str, object], placement: bool = False) -> DeviceSpec:
    return DeviceSpec.parse(entry, report_in_placement=placement)


def _assignable(specs: SpecList) -> list[str]:
    return [str(a) for a, q in specs.qualify_all(HOST).items() if q.assignable]


# ------------------------------------------------------------------ option shape


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{vendor_id: 8086}", _P + "Invalid entry: '{vendor_id: 8086}'"),
        ("", _P + "Invalid entry: ''"),
        ('"abc"', _P + """Invalid entry: '"abc"'; Expecting list or dict"""),
        ("5", _P + "Invalid entry: '5'; Expecting list or dict"),
        ("null", _P + "Invalid entry: 'null'; Expecting list or dict"),
        ("[1]", _P + "Invalid entry: '1'; Expecting dict"),
        ('["a"]', _P + "Invalid entry: 'a'; Expecting dict"),
        ('[{"vendor_id": "8086"}, [true]]', _P + "Invalid entry: '[True]'; Expecting dict"),
    ],
)
def test_option_shape_errors_are_novas(value: str, message: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_spec_list([value])
    assert str(info.value) == message
    assert info.value.fields["field"] == "device_spec"
    assert info.value.code == "pcifleet.spec.invalid"


def test_values_may_be_dicts_lists_or_json_and_keep_order() -> None:
    specs = parse_spec_list(
        [
            '{"vendor_id": "10de"}',
            '[{"vendor_id": "8086", "product_id": "154c"}, {"vendor_id": "15b3"}]',
            {"address": "0000:01:00.0"},
            [{"devname": "ens2f0"}],
        ]
    )
    assert [s.describe() for s in specs] == [
        "vendor_id 10de",
        "vendor_id 8086, product_id 154c",
        "vendor_id 15b3",
        "address 0000:01:00.0",
        "devname ens2f0",
    ]
    assert len(specs) == 5


def test_no_entries_means_nothing_is_assignable() -> None:
    specs = parse_spec_list([])
    result = specs.qualify_all(HOST)
    assert not any(q.assignable for q in result.values())
    assert result[GPU.address].reasons() == ("no device spec configured",)
    assert SpecList().qualify(GPU, HOST).explain() == "no device spec configured"


# -------------------------------------------------------------------------- keys


@pytest.mark.parametrize(
    ("entry", "described"),
    [
        ({"vendor_id": "10DE", "product_id": "1DB4"}, "vendor_id 10de, product_id 1db4"),
        ({"vendor_id": "86", "product_id": " 154c"}, "vendor_id 0086, product_id 154c"),
        ({"vendor_id": "*", "product_id": "*"}, "any device"),
        ({}, "any device"),
        ({"address": "*:0a:00.*"}, "address *:0a:00.*"),
        ({"address": ":0a:00."}, "address *:0a:00.*"),
        ({"address": {"bus": "0a"}}, "address regex(bus='0a')"),
        ({"address": ""}, "any device"),
        ({"address": None}, "any device"),
        ({"devname": ""}, "any device"),
        ({"devname": "", "address": "0000:81:00.0"}, "address 0000:81:00.0"),
        ({"devname": "eth0", "address": ""}, "devname eth0"),
        ({"driver": "vfio-pci", "vendor_id": "8086"}, "vendor_id 8086, driver vfio-pci"),
    ],
)
def test_selector_keys(entry: dict[str, object], described: str) -> None:
    assert _one(entry).describe() == described


def test_address_and_devname_together_is_novas_error() -> None:
    with pytest.raises(InvalidSpecCombination) as info:
        _one({"devname": "eth0", "address": "0000:81:00.0"})
    assert str(info.value) == (
        "Invalid PCI Whitelist: The PCI whitelist can specify devname or address, but not both"
    )
    assert info.value.fields["rule"] == "devname_and_address"


@pytest.mark.parametrize(
    ("entry", "error", "message"),
    [
        (
            {"vendor_id": "xyz"},
            InvalidSpec,
            _P + "property vendor_id ('xyz') does not parse as a hex number.",
        ),
        (
            {"product_id": "12345"},
            InvalidSpec,
            _P + "property product_id (12345) is greater than the maximum allowable value (FFFF).",
        ),
        (
            {"address": "0000:0a:00.9"},
            InvalidSpecAddress,
            _P + "property func (9) is greater than the maximum allowable value (7).",
        ),
        (
            {"address": "1:2:3:4.0"},
            InvalidSpecAddress,
            "The PCI address 1:2:3:4.0 has an incorrect format.",
        ),
        (
            {"address": {"bus": "[6[-7]"}},
            InvalidSpecAddress,
            "The PCI address {'bus': '[6[-7]'} has an incorrect format.",
        ),
        ({"address": 12}, InvalidSpecAddress, "The PCI address 12 has an incorrect format."),
    ],
)
def test_nova_key_errors(entry: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        _one(entry)
    assert str(info.value) == message


def test_parse_hex_id_rejects_non_strings() -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_hex_id("vendor_id", 8086)
    assert str(info.value) == _P + "property vendor_id (8086) must be a string"


# ----------------------------------------------------------------------- bool tags

_ACCEPTABLE = "'0', '1', 'f', 'false', 'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'"


@pytest.mark.parametrize(
    ("value", "normalized"),
    [
        ("yes", "true"),
        ("Y", "true"),
        ("on", "true"),
        ("1", "true"),
        (" TRUE ", "true"),
        (True, "true"),
        (1, "true"),
        ("no", "false"),
        ("OFF", "false"),
        ("f", "false"),
        (False, "false"),
        (0, "false"),
    ],
)
@pytest.mark.parametrize("tag", ["managed", "live_migratable"])
def test_bool_tags_normalize(tag: str, value: object, normalized: str) -> None:
    assert _one({tag: value}).tags[tag] == normalized


@pytest.mark.parametrize("tag", ["managed", "live_migratable", "one_time_use"])
@pytest.mark.parametrize(("value", "shown"), [("maybe", "maybe"), ("", ""), (2, "2"), ([1], "[1]")])
def test_bool_tag_errors_are_novas(tag: str, value: object, shown: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        _one({tag: value}, placement=True)
    assert str(info.value) == (
        f"{_P}Cannot parse tag '{tag}': Unrecognized value '{shown}', "
        f"acceptable values are: {_ACCEPTABLE}"
    )
    assert info.value.fields["field"] == tag
    assert info.value.fields["rule"] == "bool"


def test_null_bool_tag_is_absent() -> None:
    spec = _one({"managed": None, "live_migratable": None})
    assert "managed" not in spec.tags
    assert spec.managed is True  # absent behaves as managed (Nova)
    assert spec.live_migratable is False


def test_parse_bool_tag_directly() -> None:
    assert parse_bool_tag("x", "Yes") is True
    assert parse_bool_tag("x", "0") is False


def test_one_time_use_needs_placement_reporting() -> None:
    with pytest.raises(InvalidSpec) as info:
        _one({"one_time_use": "yes"})
    assert str(info.value) == (
        _P + "one_time_use=true requires pci.report_in_placement to be enabled"
    )
    assert info.value.fields["rule"] == "requires_placement"
    assert _one({"one_time_use": "yes"}, placement=True).one_time_use
    assert _one({"one_time_use": "no"}).tags["one_time_use"] == "false"


def test_placement_reporting_rejects_devname() -> None:
    with pytest.raises(InvalidSpecCombination) as info:
        _one({"devname": "ens1f0"}, placement=True)
    assert str(info.value) == (
        "Invalid [pci]device_spec configuration. PCI Placement reporting does not support "
        "'devname' based device specification but we got {'devname': 'ens1f0'}. "
        "Please use PCI address in the configuration instead."
    )


# ---------------------------------------------------------------------- other tags


def test_tags_flow_except_placement_keys() -> None:
    spec = _one(
        {
            "vendor_id": "8086",
            "physical_network": "physnet1",
            "trusted": "true",
            "remote_managed": "False",
            "managed": "no",
            "live_migratable": "yes",
            "resource_class": "foobar",
            "traits": "hw_cpu_x86_avx,my-trait",
            "rack": "r12",
            "capacity": 40,
            "fast": True,
        }
    )
    assert spec.tags == Tags(
        {
            "physical_network": "physnet1",
            "trusted": "true",
            "remote_managed": "False",
            "managed": "false",
            "live_migratable": "true",
            "rack": "r12",
            "capacity": "40",
            "fast": "true",
        }
    )
    assert spec.resource_class == "CUSTOM_FOOBAR"
    assert spec.traits == ("CUSTOM_MY_TRAIT", "HW_CPU_X86_AVX")
    assert spec.physical_network == "physnet1"
    assert spec.managed is False
    assert spec.live_migratable is True
    assert spec.remote_managed is False


def test_physical_network_null_is_an_absent_tag() -> None:
    spec = _one({"vendor_id": "8086", "physical_network": None})
    assert "physical_network" not in spec.tags
    assert spec.physical_network is None


@pytest.mark.parametrize(
    ("entry", "field", "rule"),
    [
        ({"rack": ["a"]}, "rack", "tag_type"),
        ({"physical_network": {"a": 1}}, "physical_network", "tag_type"),
        ({"resource_class": 5}, "resource_class", "type"),
        ({"traits": ["A"]}, "traits", "type"),
    ],
)
def test_tag_value_errors(entry: dict[str, object], field: str, rule: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        _one(entry)
    assert info.value.fields["field"] == field
    assert info.value.fields["rule"] == rule


def test_non_string_keys_are_rejected() -> None:
    with pytest.raises(InvalidSpec) as info:
        DeviceSpec.parse({1: "x"})  # type: ignore[dict-item]
    assert info.value.fields["rule"] == "type"


@pytest.mark.parametrize(
    ("name", "normalized"),
    [
        ("pgpu", "PGPU"),
        ("PCI_DEVICE", "PCI_DEVICE"),
        ("foobar", "CUSTOM_FOOBAR"),
        ("custom-foo", "CUSTOM_CUSTOM_FOO"),
        ("a###b", "CUSTOM_A_B"),
        ("custom_gpu", "CUSTOM_GPU"),
        ("CUSTOM_", "CUSTOM_CUSTOM_"),
    ],
)
def test_normalize_resource_class(name: str, normalized: str) -> None:
    assert normalize_resource_class(name) == normalized


def test_default_resource_class() -> None:
    assert default_resource_class("123a", "567b") == "CUSTOM_PCI_123A_567B"


@pytest.mark.parametrize(
    ("name", "normalized"),
    [
        ("hw_cpu_x86_avx", "HW_CPU_X86_AVX"),
        ("COMPUTE_MANAGED_PCI_DEVICE", "COMPUTE_MANAGED_PCI_DEVICE"),
        ("custom_fast", "CUSTOM_FAST"),
        ("my-trait", "CUSTOM_MY_TRAIT"),
        (" gold ", "CUSTOM_GOLD"),
    ],
)
def test_normalize_trait(name: str, normalized: str) -> None:
    assert normalize_trait(name) == normalized


def test_empty_resource_class_and_traits_mean_none() -> None:
    spec = _one({"resource_class": "", "traits": " , "})
    assert spec.resource_class is None
    assert spec.traits == ()
    assert spec.resource_class_for(GPU) == "CUSTOM_PCI_10DE_1DB4"


# ------------------------------------------------------------------- qualification


def test_first_match_wins_and_its_tags_flow() -> None:
    specs = _specs(
        {"vendor_id": "8086", "product_id": "154c", "physical_network": "physnet1"},
        {"vendor_id": "8086", "physical_network": "physnet2", "resource_class": "nic"},
    )
    result = specs.qualify_all(HOST)
    vf = result[INTEL_VFS[0].address]
    assert vf.assignable
    assert vf.spec_index == 0
    assert vf.tags == Tags({"physical_network": "physnet1"})
    assert vf.resource_class == "CUSTOM_PCI_8086_154C"
    assert vf.explain() == "assignable by spec 0"
    assert vf.reasons() == ()
    pf = result[INTEL_PF.address]
    assert pf.spec_index == 1
    assert pf.tags == Tags({"physical_network": "physnet2"})
    assert pf.resource_class == "CUSTOM_NIC"
    assert pf.traits == ()
    assert not result[GPU.address].assignable
    assert result[GPU.address].tags == Tags()
    assert result[GPU.address].resource_class is None


def test_pf_address_spec_matches_the_pf_and_its_vfs() -> None:
    specs = _specs({"address": "0000:81:00.0", "physical_network": "physnet1"})
    assert _assignable(specs) == [str(INTEL_PF.address)] + [str(v.address) for v in INTEL_VFS]
    result = specs.qualify_all(HOST)
    assert all(result[v.address].tags["physical_network"] == "physnet1" for v in INTEL_VFS)


def test_devname_of_a_pf_matches_the_pf_and_its_vfs() -> None:
    specs = _specs({"devname": "ens2f0", "physical_network": "physnet2"})
    assert _assignable(specs) == ["0000:82:00.0", "0000:82:00.1", "0000:82:00.2"]
    assert _assignable(_specs({"devname": "eno1"})) == ["0000:01:00.0"]
    assert _assignable(_specs({"devname": "missing0"})) == []


def test_vendor_product_and_address_combine() -> None:
    specs = _specs({"vendor_id": "8086", "product_id": "154c", "address": "*:81:00.*"})
    assert _assignable(specs) == ["0000:81:00.1", "0000:81:00.2", "0000:81:00.3", "0000:81:00.4"]


def test_reasons_name_each_spec() -> None:
    specs = _specs(
        {"vendor_id": "8086", "product_id": "154c"},
        {"address": "0000:3b:00.0", "physical_network": "x"},
        {"vendor_id": "15b3", "pf": "ens2f0#1"},
    )
    quali = specs.qualify(MLX_VFS[0], HOST)
    assert not quali.assignable
    assert quali.spec_index is None
    assert quali.reasons() == (
        "spec 0: vendor_id 15b3 != 8086",
        "spec 1: address 0000:82:00.1 not in 0000:3b:00.0",
        "spec 2: VF 0 of 0000:82:00.0 is not in pf ens2f0#1",
    )
    assert quali.explain() == "; ".join(quali.reasons())


def test_native_selectors_in_a_spec() -> None:
    specs = _specs(
        {"class": "display", "numa_node": None, "resource_class": "gpu"},
        {"pf": "ens1f0#0-1", "driver": "iavf", "physical_network": "physnet1"},
        {"pf_address": "0000:81:00.0#3", "physical_network": "physnet9"},
    )
    result = specs.qualify_all(HOST)
    assert _assignable(specs) == [
        "0000:3b:00.0",
        "0000:81:00.1",
        "0000:81:00.2",
        "0000:81:00.4",
    ]
    assert result[GPU.address].resource_class == "CUSTOM_GPU"
    assert result[INTEL_VFS[3].address].tags == Tags({"physical_network": "physnet9"})


# ---------------------------------------------------------------------- exclusions


def test_exclusions_win_wherever_they_are() -> None:
    specs = _specs(
        {"vendor_id": "8086", "physical_network": "physnet1"},
        {"exclude": True, "devname": "eno1"},
        {"exclude": "yes", "pf": "ens1f0#0"},
    )
    result = specs.qualify_all(HOST)
    assert _assignable(specs) == ["0000:81:00.0", "0000:81:00.2", "0000:81:00.3", "0000:81:00.4"]
    mgmt = result[MGMT.address]
    assert mgmt.excluded
    assert mgmt.spec_index == 1
    assert mgmt.reasons() == ("excluded by spec 1",)
    assert mgmt.tags == Tags()
    assert result[INTEL_VFS[0].address].explain() == "excluded by spec 2"
    assert specs.specs[1].describe() == "exclude devname eno1"
    misses = specs.misses(MGMT, HOST)
    assert misses[0] == "spec 0: matches"
    assert misses[1] == "spec 1: excludes it"


def test_exclusion_false_is_an_ordinary_spec() -> None:
    spec = _one({"exclude": "no", "vendor_id": "10de", "physical_network": "x"})
    assert not spec.exclude
    assert spec.tags == Tags({"physical_network": "x"})


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"exclude": True, "devname": "eno1", "physical_network": "x"}, "physical_network"),
        ({"exclude": True, "vendor_id": "8086", "resource_class": "nic"}, "resource_class"),
    ],
)
def test_exclusions_take_no_tags(entry: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        _one(entry)
    assert info.value.fields == {
        "detail": f"an exclusion (exclude=true) takes selectors only, not tags: {field}",
        "field": field,
        "rule": "exclusion_tags",
    }


def test_exclude_must_be_bool_like() -> None:
    with pytest.raises(InvalidSpec) as info:
        _one({"exclude": "sometimes"})
    assert "Cannot parse tag 'exclude': Unrecognized value 'sometimes'" in str(info.value)


# ---------------------------------------------------------------- remote managed


def test_remote_managed_needs_a_vpd_serial() -> None:
    specs = _specs({"vendor_id": "*", "product_id": "101e", "remote_managed": "true"})
    assert _assignable(specs) == ["0000:82:00.1", "0000:82:00.2"]
    no_serial = _specs({"product_id": "154c", "remote_managed": "True"})
    quali = no_serial.qualify(INTEL_VFS[0], HOST)
    assert not quali.assignable
    assert quali.reasons() == (
        "spec 0: remote_managed needs a VPD card serial number; 0000:81:00.1 has none",
    )
    # the tag keeps its text as written (Nova compares it case-insensitively)
    assert no_serial.specs[0].tags["remote_managed"] == "True"


def test_remote_managed_lenient_false() -> None:
    spec = _one({"remote_managed": "bogus"})
    assert spec.remote_managed is False
    assert spec.tags["remote_managed"] == "bogus"


def test_remote_managed_devname_must_exist_on_the_host() -> None:
    specs = _specs({"devname": "nonexdev0", "physical_network": "hr", "remote_managed": "true"})
    with pytest.raises(InvalidSpecCombination) as info:
        specs.qualify_all(HOST)
    assert info.value.fields["rule"] == "remote_managed_not_present"
    assert "nonexdev0" in str(info.value)
    # without the check the spec simply matches nothing
    assert not any(q.assignable for q in specs.qualify_all(HOST, check=False).values())


@pytest.mark.parametrize(
    "entry",
    [
        {"address": "0000:82:00.0", "remote_managed": "true"},
        {
            "address": "0000:82:00.0",
            "vendor_id": "15b3",
            "product_id": "101d",
            "remote_managed": "yes",
        },
        {"devname": "ens2f0", "remote_managed": "true"},
    ],
)
def test_remote_managed_on_a_pf_is_rejected(entry: dict[str, object]) -> None:
    with pytest.raises(InvalidSpecCombination) as info:
        _specs(entry).check_host(HOST)
    assert info.value.fields["rule"] == "remote_managed_pf"
    assert "0000:82:00.0 is a PF" in str(info.value)


def test_remote_managed_pf_spec_with_the_vf_product_selects_vfs() -> None:
    specs = _specs({"devname": "ens2f0", "product_id": "101e", "remote_managed": "true"})
    specs.check_host(HOST)
    assert _assignable(specs) == ["0000:82:00.1", "0000:82:00.2"]


def test_remote_managed_pf_spec_with_foreign_ids_is_novas_error() -> None:
    specs = _specs({"address": "0000:82:00.0", "product_id": "1234", "remote_managed": "true"})
    with pytest.raises(InvalidSpec) as info:
        specs.check_host(HOST)
    assert str(info.value) == (
        _P + "the specified VF vendor ID * and product ID 1234 do not match the expected VF "
        "IDs based on the corresponding PF identified by PCI address 0000:82:00.0"
    )


# ---------------------------------------------------------------------- speed


def _big_host() -> HostDevices:
    devices: list[Device] = []
    for p in range(8):
        pf = _pf(f"0000:{0x10 + p:02x}:00.0", "8086", "1572", f"ens{p}f0")
        devices += [pf, *_vfs(pf, "154c", 64)]
    devices += [
        Device(PciAddress(0, 0x80 + j // 8, j % 8, 0), "1af4", "1000", DeviceType.PCI)
        for j in range(88)
    ]
    return HostDevices(devices)


def test_qualifying_600_devices_against_10_specs() -> None:
    host = _big_host()
    specs = _specs(
        {"vendor_id": "10de", "product_id": "1db4"},
        {"vendor_id": "8086", "product_id": "37c9"},
        {"exclude": True, "pf": "ens0f0#0-1"},
        {"exclude": True, "devname": "ens7f0"},
        {"address": "0000:10:00.0", "physical_network": "physnet1"},
        {"pf": "ens1f0", "physical_network": "physnet2"},
        {"pf_address": "0000:12:00.0#0-31", "physical_network": "physnet3"},
        {"address": {"bus": "1[3-5]"}, "vendor_id": "8086", "physical_network": "physnet4"},
        {"class": "ethernet", "numa_node": 1, "physical_network": "physnet5"},
        {"vendor_id": "8086", "product_id": "1572", "managed": "no"},
    )
    result = specs.qualify_all(host)
    assert len(host) == 608
    # 63 (PF 10 + 62 VFs) + 64 + 32 + 195 (3 PFs with VFs) + 3 PFs by id; 67 excluded
    assert sum(q.assignable for q in result.values()) == 357
    assert sum(q.excluded for q in result.values()) == 67
