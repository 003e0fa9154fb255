"""The device catalogue carries the real ids, drivers and SR-IOV limits of each model."""

from __future__ import annotations

from pathlib import Path

import pytest

from pcifleet.domain.errors import InvalidProfile
from pcifleet.sim.catalogue import (
    MODELS,
    DeviceKind,
    VfLayout,
    find_by_ids,
    get_model,
    model_names,
)

PCI_IDS = Path("/usr/share/misc/pci.ids")


@pytest.mark.parametrize(
    ("name", "vendor", "device", "vf_device", "driver", "vf_driver", "max_vfs", "class_code"),
    [
        ("intel-x710", 0x8086, 0x1572, 0x154C, "i40e", "iavf", 64, 0x020000),
        ("intel-e810-xxv", 0x8086, 0x159B, 0x1889, "ice", "iavf", 128, 0x020000),
        ("intel-e810-c", 0x8086, 0x1592, 0x1889, "ice", "iavf", 128, 0x020000),
        ("intel-82599", 0x8086, 0x10FB, 0x10ED, "ixgbe", "ixgbevf", 63, 0x020000),
        ("mellanox-cx5", 0x15B3, 0x1017, 0x1018, "mlx5_core", "mlx5_core", 127, 0x020000),
        ("mellanox-cx6", 0x15B3, 0x101B, 0x101C, "mlx5_core", "mlx5_core", 127, 0x020000),
        ("mellanox-cx6dx", 0x15B3, 0x101D, 0x101E, "mlx5_core", "mlx5_core", 127, 0x020000),
        ("intel-qat-c62x", 0x8086, 0x37C8, 0x37C9, "c6xx", "c6xxvf", 16, 0x0B4000),
        ("qemu-nvme", 0x1B36, 0x0010, 0x0010, "nvme", "nvme", 127, 0x010802),
    ],
)
def test_sriov_models_carry_real_ids_and_limits(
    name: str,
    vendor: int,
    device: int,
    vf_device: int,
    driver: str,
    vf_driver: str,
    max_vfs: int,
    class_code: int,
) -> None:
    model = get_model(name)
    assert (model.vendor_id, model.device_id, model.class_code) == (vendor, device, class_code)
    assert model.driver == driver
    assert model.sriov is not None
    assert (model.sriov.vf_device_id, model.sriov.vf_driver, model.sriov.max_vfs) == (
        vf_device,
        vf_driver,
        max_vfs,
    )


@pytest.mark.parametrize(
    ("name", "device", "class_code", "driver"),
    [
        ("nvidia-a100", 0x20B5, 0x030200, "nvidia"),
        ("nvidia-h100-sxm", 0x2330, 0x030200, "nvidia"),
        ("samsung-pm9a3", 0xA80A, 0x010802, "nvme"),
        ("qemu-e1000e", 0x10D3, 0x020000, "e1000e"),
        ("qemu-virtio-net", 0x1041, 0x020000, "virtio-pci"),
    ],
)
def test_plain_models_have_no_sriov(name: str, device: int, class_code: int, driver: str) -> None:
    model = get_model(name)
    assert (model.device_id, model.class_code, model.driver) == (device, class_code, driver)
    assert model.sriov is None


def test_82599_interleaves_vfs_and_others_pack_them() -> None:
    sriov = get_model("intel-82599").sriov
    assert sriov is not None
    assert (sriov.layout, sriov.first_vf_offset) == (VfLayout.INTERLEAVED, 0x80)
    packed = [m.name for m in MODELS.values() if m.sriov and m.sriov.layout is VfLayout.PACKED]
    assert "intel-x710" in packed
    assert "intel-e810-xxv" in packed


def test_only_qemu_mirrors_the_pf_link_into_vfs() -> None:
    mirrored = {m.name for m in MODELS.values() if m.sriov and m.sriov.vf_link_reported}
    assert mirrored == {"qemu-nvme"}


def test_unknown_model_names_the_field_and_rule() -> None:
    with pytest.raises(InvalidProfile) as caught:
        get_model("intel-x999", field="nics[2].model")
    assert caught.value.fields["field"] == "nics[2].model"
    assert caught.value.fields["rule"] == "unknown_model"
    assert "intel-x999" in str(caught.value)
    assert "intel-x710" in str(caught.value)


def test_find_by_ids_and_kinds() -> None:
    assert find_by_ids(0x1B36, 0x0010) is get_model("qemu-nvme")
    assert find_by_ids(0xFFFF, 0x0001) is None
    assert "nvidia-a100" in model_names(DeviceKind.GPU)
    assert "intel-x710" not in model_names(DeviceKind.GPU)
    assert model_names() == tuple(sorted(MODELS))


@pytest.mark.skipif(not PCI_IDS.is_file(), reason="pci.ids database not installed")
@pytest.mark.parametrize("name", sorted(n for n in MODELS if n != "intel-qat-4xxx"))
def test_ids_exist_in_the_pci_ids_database(name: str) -> None:
    """Every catalogued id (PF and VF) is a real one; QAT 4xxx is newer than Debian 12's file."""
    model = MODELS[name]
    devices = _vendor_devices(model.vendor_id)
    assert model.device_id in devices
    if model.sriov is not None:
        assert model.sriov.vf_device_id in devices


def _vendor_devices(vendor: int) -> set[int]:
    """Device ids listed under one vendor (its lines up to the next vendor line)."""
    found: set[int] = set()
    inside = False
    for line in PCI_IDS.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line or line.startswith("#"):
            continue
        if not line.startswith("\t"):
            inside = line.startswith(f"{vendor:04x}  ")
        elif inside and not line.startswith("\t\t"):
            found.add(int(line[1:5], 16))
    return found
