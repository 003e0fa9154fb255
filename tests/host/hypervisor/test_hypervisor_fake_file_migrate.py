"""A migration between two file-backed fake hypervisors as two agent processes see them: the
domain leaves the source's state file and appears in the destination's, and the destination
agent's own (earlier loaded) hypervisor object sees it and does not overwrite it."""

from __future__ import annotations

from pathlib import Path

from pcifleet.host.hypervisor.driver import DomainState, MigrateOptions
from pcifleet.host.hypervisor.fake_file import FileBackedFakeHypervisor, read_json
from pcifleet.host.migrator import connect_peer

DOMAIN = (
    "<domain type='kvm'><name>{name}</name><uuid>{uuid}</uuid>"
    "<memory unit='KiB'>1048576</memory><vcpu>1</vcpu><os><type>hvm</type></os>"
    "<devices><interface type='direct'><mac address='fa:16:3e:00:00:01'/>"
    "<source dev='{dev}' mode='passthrough'/><model type='virtio'/></interface></devices>"
    "</domain>"
)
UUIDS = ("6c2c8a8e-3f3a-4d0c-9d8f-1f2e3d4c5b6a", "7d3d9b9f-4a4b-4e1d-8e9f-2a3b4c5d6e7f")


def names(path: Path) -> list[str]:
    domains = read_json(path)["domains"]
    assert isinstance(domains, list)
    return [str(d["name"]) for d in domains]


def test_fake_file_migration_moves_the_domain_between_state_files(tmp_path: Path) -> None:
    source = FileBackedFakeHypervisor(tmp_path / "h1.json", f"fake://{tmp_path}/h1.json")
    dest_uri = f"fake://{tmp_path}/h2.json"
    dest_agent = FileBackedFakeHypervisor(tmp_path / "h2.json", dest_uri)  # the other process
    dest_agent.define(DOMAIN.format(name="other", uuid=UUIDS[1], dev="ens1f0v5"))
    source.define(DOMAIN.format(name="vm", uuid=UUIDS[0], dev="ens1f0v0"))
    source.start("vm")

    peer = connect_peer(source, dest_uri)
    assert peer is not dest_agent and source.peers[dest_uri] is peer
    xml = DOMAIN.format(name="vm", uuid=UUIDS[0], dev="ens1f0v1")
    source.migrate("vm", dest_uri, MigrateOptions(dest_xml=xml))

    assert names(tmp_path / "h1.json") == []
    assert names(tmp_path / "h2.json") == ["other", "vm"]
    assert dest_agent.state("vm") is DomainState.RUNNING  # re-read, not the stale copy
    assert "ens1f0v1" in dest_agent.xml("vm")
    dest_agent.undefine("other")  # a write by the destination keeps the arrived domain
    assert names(tmp_path / "h2.json") == ["vm"]
    assert [d.name for d in source.list_domains()] == []
