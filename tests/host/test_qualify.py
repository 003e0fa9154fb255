"""Device specs applied to a scan of the real capture, and spec files in both forms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pcifleet.domain.device import DeviceType
from pcifleet.domain.errors import InvalidSpec
from pcifleet.domain.spec import parse_spec_list
from pcifleet.host.discovery import scan
from pcifleet.host.model import HostScan
from pcifleet.host.qualify import load_spec_file, qualify
from pcifleet.host.sysfs import SysfsReader

SPECS = [
    {"address": "0000:41:00.7", "exclude": True},
    {"vendor_id": "1b36", "product_id": "0010", "address": "0000:41:*.*", "tier": "fast"},
    {"devname": "eth1", "physical_network": "physnet1", "trusted": "true"},
]


@pytest.fixture(scope="module")
def found(sriov_capture: Path) -> HostScan:
    return scan(SysfsReader(sriov_capture), pci_ids=False)


@pytest.mark.parametrize(
    ("address", "assignable", "tags", "spec_index"),
    [
        ("0000:41:00.1", True, {"tier": "fast"}, 1),
        ("0000:41:01.0", True, {"tier": "fast"}, 1),
        ("0000:41:00.0", True, {"tier": "fast"}, 1),
        ("0000:41:00.7", False, {}, 0),
        ("0000:42:00.0", True, {"physical_network": "physnet1", "trusted": "true"}, 2),
        ("0000:21:00.1", False, {}, None),
        ("0000:00:1f.2", False, {}, None),
    ],
)
def test_verdicts(
    found: HostScan, address: str, assignable: bool, tags: dict[str, str], spec_index: int | None
) -> None:
    verdict = qualify(found, parse_spec_list([json.dumps(s) for s in SPECS])).get(address)
    assert verdict is not None
    assert (verdict.assignable, dict(verdict.tags), verdict.spec_index) == (
        assignable,
        tags,
        spec_index,
    )
    assert dict(verdict.device.tags) == tags
    assert verdict.device.address == verdict.function.address


def test_reasons_per_spec_when_nothing_matched(found: HostScan) -> None:
    verdict = qualify(found, parse_spec_list([json.dumps(s) for s in SPECS])).get("0000:21:00.1")
    assert verdict is not None
    assert len(verdict.reasons) == 3
    assert [r.split(":", 1)[0] for r in verdict.reasons] == ["spec 0", "spec 1", "spec 2"]
    assert "0000:21:00.1" in verdict.reasons[1]  # the address selector said no
    assert verdict.explain() == "; ".join(verdict.reasons)


def test_exclusion_reason_and_assignable_devices(found: HostScan) -> None:
    result = qualify(found, parse_spec_list([json.dumps(s) for s in SPECS]))
    excluded = result.get("0000:41:00.7")
    assert excluded is not None and excluded.excluded
    assert excluded.reasons == ("excluded by spec 0",)
    devices = result.assignable()
    assert [str(d.address) for d in devices][:2] == ["0000:41:00.0", "0000:41:00.1"]
    assert len(devices) == 1 + 7 + 1  # the PF, 7 of its 8 VFs, the virtio NIC
    assert {d.dev_type for d in devices} == {DeviceType.PF, DeviceType.VF, DeviceType.PCI}


def test_no_specs_means_nothing_assignable(found: HostScan) -> None:
    result = qualify(found, parse_spec_list([]))
    assert result.assignable() == ()
    verdict = result.get("0000:42:00.0")
    assert verdict is not None and verdict.reasons == ("no device spec configured",)


@pytest.mark.parametrize(
    "text",
    [
        "\n".join(json.dumps(s) for s in SPECS),
        "# comment\n\n" + "\n".join(json.dumps(s) for s in SPECS) + "\n",
        json.dumps(SPECS),
        json.dumps(SPECS, indent=2),
    ],
)
def test_spec_file_forms(tmp_path: Path, text: str) -> None:
    path = tmp_path / "device_spec"
    path.write_text(text)
    specs = load_spec_file(path)
    assert len(specs) == 3
    assert [s.exclude for s in specs] == [True, False, False]


def test_single_object_file(tmp_path: Path) -> None:
    path = tmp_path / "device_spec.json"
    path.write_text(json.dumps(SPECS[1], indent=2))
    assert len(load_spec_file(path)) == 1


@pytest.mark.parametrize(
    ("text", "field", "rule", "fragment"),
    [
        ('{"vendor_id": "1b36"}\n{"vendor_id": \n', "device_spec", "json", "line 2"),
        ('{"vendor_id": "1b36"}\n["x"]\n', "device_spec", "type", "line 2"),
        ("42", "spec_file", "type", "expected a JSON list or object"),
    ],
)
def test_spec_file_errors(tmp_path: Path, text: str, field: str, rule: str, fragment: str) -> None:
    path = tmp_path / "device_spec"
    path.write_text(text)
    with pytest.raises(InvalidSpec) as caught:
        load_spec_file(path)
    assert (caught.value.fields["field"], caught.value.fields["rule"]) == (field, rule)
    assert fragment in str(caught.value)


def test_unreadable_spec_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec) as caught:
        load_spec_file(tmp_path)
    assert caught.value.fields["rule"] == "unreadable"
