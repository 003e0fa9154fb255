"""The agent's report with Neutron's physical_device_mappings and exclude_devices.

The host is the shipped ``compute-x710`` profile built as a fake sysfs tree (ens1f0 and ens1f1
with 8 VFs each, ens2f0/ens2f1 without VFs); discovery, qualification and the report body are
the real code.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pcifleet.control.api.schemas.hosts import InventoryIn
from pcifleet.domain.spec import parse_spec_list
from pcifleet.host.agent import inventory_of
from pcifleet.host.qualify import qualify
from pcifleet.host.rescan import Rescanner
from pcifleet.host.sysfs import SysfsReader
from pcifleet.host.vf.mapping import AgentMappings
from pcifleet.sim.profile import load_shipped
from pcifleet.sim.sysfs_builder import build_tree

SPECS = parse_spec_list(
    [
        '{"vendor_id": "8086", "product_id": "154c", "physical_network": "physnetX"}',
        '{"vendor_id": "8086", "product_id": "1572"}',
    ]
)
PF0, PF1 = "0000:11:00.0", "0000:11:00.1"
PF0_MAC = "3c:fd:fe:a3:9a:2b"
EXCLUDED = ("0000:11:02.3", "0000:11:02.4")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("x710") / "host"
    build_tree(load_shipped("compute-x710"), target)
    return target


def report(root: Path, mappings: AgentMappings | None) -> InventoryIn:
    scan = Rescanner(SysfsReader(root), pci_ids=False).scan()
    return inventory_of(qualify(scan, SPECS), 1, mappings)


def tags_by_address(body: InventoryIn) -> dict[str, dict[str, str]]:
    return {d.address: dict(d.tags) for d in body.devices}


def test_without_mappings_spec_tags_stay_and_macs_are_reported(root: Path) -> None:
    tags = tags_by_address(report(root, None))
    assert tags[PF0]["mac_address"] == PF0_MAC
    assert tags["0000:11:02.0"] == {"physical_network": "physnetX", "pf_mac_address": PF0_MAC}
    assert tags["0000:11:0a.0"]["physical_network"] == "physnetX"
    assert all(a in tags for a in EXCLUDED)


def test_mapped_pf_and_its_vfs_carry_the_physnet_and_exclusions_are_held_out(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mappings = AgentMappings.parse("physnet1:ens1f0", f"ens1f0:{';'.join(EXCLUDED)}")
    with caplog.at_level(logging.WARNING, logger="pcifleet.agent"):
        tags = tags_by_address(report(root, mappings))
    pf0_vfs = [a for a in tags if a.startswith("0000:11:02.")]
    assert len(pf0_vfs) == 8 - len(EXCLUDED)
    assert not set(EXCLUDED) & set(tags)
    assert {tags[a]["physical_network"] for a in pf0_vfs} == {"physnet1"}
    assert tags[PF0] == {"mac_address": PF0_MAC, "physical_network": "physnet1"}
    # the spec said physnetX: the mapping wins, and says so
    assert "physical_network=physnetX" in caplog.text and "physnet1" in caplog.text


@pytest.mark.parametrize("address", [PF1, "0000:11:0a.0", "0000:11:0a.7"])
def test_an_unmapped_nic_offers_no_physical_network(root: Path, address: str) -> None:
    tags = tags_by_address(report(root, AgentMappings.parse("physnet1:ens1f0")))
    assert "physical_network" not in tags[address]
    assert tags[address].get("mac_address", tags[address].get("pf_mac_address"))


def test_two_nics_on_two_physnets(root: Path) -> None:
    tags = tags_by_address(report(root, AgentMappings.parse("physnet1:ens1f0,physnet2:ens1f1")))
    assert tags["0000:11:02.5"]["physical_network"] == "physnet1"
    assert tags["0000:11:0a.5"]["physical_network"] == "physnet2"
    assert tags[PF1]["physical_network"] == "physnet2"
