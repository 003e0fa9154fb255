"""Hardware profiles: both formats, the shipped examples, and strict errors naming the field."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from pcifleet.domain.errors import InvalidProfile
from pcifleet.sim.profile import (
    load_profile,
    load_shipped,
    loads_profile,
    parse_profile,
    shipped_profiles,
)

TOML = """
hostname = "h1"
[cpu]
sockets = 2
cores_per_socket = 4
threads_per_core = 2
[[numa]]
id = 0
socket = 0
memory_mb = 4096
hugepages = [{ size_kb = 2048, total = 512, free = 500 }]
[[numa]]
id = 1
socket = 1
memory_mb = 4096
pci_root_bus = 0x80
[[nics]]
model = "intel-x710"
numa_node = 1
pfs = 2
vfs = [4, 0]
netdev = "enp{bus}s0f{pf}"
[[gpus]]
model = "nvidia-a100"
numa_node = 0
count = 2
"""

YAML = """
hostname: h1
cpu: {sockets: 2, cores_per_socket: 4, threads_per_core: 2}
numa:
  - {id: 0, socket: 0, memory_mb: 4096, hugepages: [{size_kb: 2048, total: 512, free: 500}]}
  - {id: 1, socket: 1, memory_mb: 4096, pci_root_bus: 0x80}
nics:
  - {model: intel-x710, numa_node: 1, pfs: 2, vfs: [4, 0], netdev: "enp{bus}s0f{pf}"}
gpus:
  - {model: nvidia-a100, numa_node: 0, count: 2}
"""


def _base() -> dict[str, Any]:
    data = yaml.safe_load(YAML)
    assert isinstance(data, dict)
    return data


def test_toml_and_yaml_describe_the_same_host() -> None:
    from_toml = loads_profile(TOML, "toml")
    from_yaml = loads_profile(YAML, "yaml")
    assert from_toml == from_yaml
    nic = from_toml.cards[0]
    assert (nic.model.name, nic.numa_node, nic.pfs, nic.vfs, nic.total_vfs) == (
        "intel-x710",
        1,
        2,
        (4, 0),
        64,
    )
    assert nic.vf_drivers == (("iavf",) * 4, ())
    assert from_toml.node(1).pci_root_bus == 0x80
    assert from_toml.node(0).hugepages[0].free == 500
    assert from_toml.cpu.total == 16


@pytest.mark.parametrize(("suffix", "text"), [(".toml", TOML), (".yaml", YAML), (".yml", YAML)])
def test_load_profile_picks_the_format_from_the_suffix(
    tmp_path: Path, suffix: str, text: str
) -> None:
    path = tmp_path / f"host{suffix}"
    path.write_text(text)
    assert load_profile(path).hostname == "h1"


def test_explicit_format_overrides_the_suffix(tmp_path: Path) -> None:
    path = tmp_path / "host.conf"
    path.write_text(YAML)
    assert load_profile(path, "yaml").hostname == "h1"
    with pytest.raises(InvalidProfile) as caught:
        load_profile(path)
    assert caught.value.fields["rule"] == "format"


def test_missing_file_is_an_invalid_profile(tmp_path: Path) -> None:
    with pytest.raises(InvalidProfile) as caught:
        load_profile(tmp_path / "absent.toml")
    assert caught.value.fields["rule"] == "readable"


@pytest.mark.parametrize(
    ("text", "fmt"), [("hostname = ", "toml"), ("a: [1, 2", "yaml"), ("- 1", "yaml")]
)
def test_syntax_errors_and_non_mappings(text: str, fmt: Any) -> None:
    with pytest.raises(InvalidProfile) as caught:
        loads_profile(text, fmt)
    assert caught.value.fields["field"] == "profile"


@pytest.mark.parametrize("name", shipped_profiles())
def test_every_shipped_profile_loads(name: str) -> None:
    profile = load_shipped(name)
    assert profile.hostname
    assert profile.numa


def test_shipped_profiles_are_the_documented_ones() -> None:
    assert set(shipped_profiles()) >= {
        "compute-x710.toml",
        "compute-cx6-gpu.yaml",
        "telco-e810-qat.toml",
        "bench-4x128.toml",
        "q35-numa-nvme-sriov.toml",
    }
    assert load_shipped("bench-4x128") == load_shipped("bench-4x128.toml")
    with pytest.raises(InvalidProfile) as caught:
        load_shipped("nope")
    assert caught.value.fields["rule"] == "unknown_profile"


Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: object) -> Mutation:
    def apply(data: dict[str, Any]) -> None:
        target: Any = data
        *parents, last = path.split(".")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value

    return apply


def _all(*mutations: Mutation) -> Mutation:
    def apply(data: dict[str, Any]) -> None:
        for mutation in mutations:
            mutation(data)

    return apply


def _drop(key: str) -> Mutation:
    def apply(data: dict[str, Any]) -> None:
        del data[key]

    return apply


INVALID: list[tuple[Mutation, str, str]] = [
    (_drop("hostname"), "hostname", "required"),
    (_set("hostname", "bad host!"), "hostname", "format"),
    (_set("colour", "blue"), "colour", "unknown_key"),
    (_drop("cpu"), "cpu", "required"),
    (_set("cpu.sockets", True), "cpu.sockets", "type"),
    (_set("cpu.sockets", 0), "cpu.sockets", "range"),
    (
        _all(_set("cpu", {"sockets": 1, "cores_per_socket": 3}), _set("numa.1.socket", 0)),
        "numa",
        "uneven_cores",
    ),
    (_set("numa", []), "numa", "required"),
    (_set("numa.1.id", 0), "numa[1].id", "duplicate"),
    (_set("numa.1.socket", 0), "numa", "socket_without_node"),
    (_set("numa.0.socket", 5), "numa[0].socket", "range"),
    (_set("numa.0.memory_mb", "lots"), "numa[0].memory_mb", "type"),
    (_set("numa.0.hugepages.0.free", 600), "numa[0].hugepages[0].free", "range"),
    (_set("numa.0.hugepages.0.size_kb", 3000), "numa[0].hugepages[0].size_kb", "power_of_two"),
    (_set("numa.1.pci_root_bus", 0x100), "numa[1].pci_root_bus", "range"),
    (_set("nics.0.model", "intel-x999"), "nics[0].model", "unknown_model"),
    (_set("nics.0.model", "nvidia-a100"), "nics[0].model", "model_kind"),
    (_set("gpus.0.model", "intel-x710"), "gpus[0].model", "model_kind"),
    (_set("nics.0.numa_node", 7), "nics[0].numa_node", "numa_node"),
    (_set("nics.0.numa_node", -2), "nics[0].numa_node", "range"),
    (_set("nics.0.vfs", [65, 0]), "nics[0].vfs", "max_vfs"),
    (_set("nics.0.vfs", [4]), "nics[0].vfs", "length"),
    (_set("nics.0.vfs", -1), "nics[0].vfs", "type"),
    (_set("nics.0.total_vfs", 2), "nics[0].vfs", "max_vfs"),
    (_set("nics.0.total_vfs", 65), "nics[0].total_vfs", "range"),
    (_set("nics.0.pfs", 3), "nics[0].pfs", "range"),
    (_set("gpus.0.vfs", 1), "gpus[0].vfs", "max_vfs"),
    (_set("nics.0.vf_drivers", ["iavf"]), "nics[0].vf_drivers", "length"),
    (_set("nics.0.vf_drivers", [1, 2, 3, 4]), "nics[0].vf_drivers", "type"),
    (_set("nics.0.netdev", "eth{port}"), "nics[0].netdev", "pattern"),
    (_set("nics.0.netdev", "eth{"), "nics[0].netdev", "pattern"),
    (_set("gpus.0.netdev", "gpu{pf}"), "gpus[0].netdev", "not_network"),
    (_set("nics.0.macs", ["52:54:00:00:00:01"]), "nics[0].macs", "length"),
    (_set("nics.0.macs", ["52:54:00:00:00:01", "nope"]), "nics[0].macs", "format"),
    (_set("nics.0.operstate", "sideways"), "nics[0].operstate", "choice"),
    (_set("nics.0.slot", 0x20), "nics[0].slot", "range"),
    (_set("nics.0.speed", 10), "nics[0].speed", "unknown_key"),
    (_set("nics", {"model": "intel-x710"}), "nics", "type"),
    (
        _set("onboard", [{"model": "ich9-lpc", "address": "00:1f.9"}]),
        "onboard[0].address",
        "address",
    ),
    (
        _set("onboard", [{"model": "ich9-lpc", "address": "01:00.0"}]),
        "onboard[0].address",
        "bus_zero",
    ),
    (_set("root_port", "intel-x710"), "root_port", "model_kind"),
    (_set("iommu", "yes"), "iommu", "type"),
]


@pytest.mark.parametrize(("mutate", "field", "rule"), INVALID)
def test_invalid_profiles_name_the_field_and_the_rule(
    mutate: Mutation, field: str, rule: str
) -> None:
    data = copy.deepcopy(_base())
    mutate(data)
    with pytest.raises(InvalidProfile) as caught:
        parse_profile(data)
    assert caught.value.fields["field"] == field
    assert caught.value.fields["rule"] == rule
    assert str(caught.value).startswith(f"{field}:")
    assert caught.value.code == "pcifleet.sim.invalid_profile"


def test_vf_drivers_apply_per_vf_and_empty_means_unbound() -> None:
    data = _base()
    data["nics"][0].update(vfs=3, vf_drivers=["iavf", "vfio-pci", ""])
    card = parse_profile(data).cards[0]
    assert card.vf_drivers == (("iavf", "vfio-pci", None),) * 2


def test_vf_driver_empty_leaves_vfs_unbound() -> None:
    data = _base()
    data["nics"][0].update(vf_driver="")
    assert parse_profile(data).cards[0].vf_drivers[0] == (None,) * 4
