"""The fake's own behaviour: hot plug, migration, recorded calls and injected failures."""

from __future__ import annotations

import pytest
from hypervisor_kit import GPU, VF, domain_xml, hostdev, vf_port

from pcifleet.domain.address import PciAddress
from pcifleet.domain.errors import (
    DeviceAlreadyAttached,
    DeviceNotAttached,
    DomainExists,
    DomainNotFound,
    DomainStateError,
    DomainXmlRejected,
    HypervisorError,
    HypervisorUnavailable,
)
from pcifleet.host.hypervisor import (
    Call,
    DomainState,
    FakeHypervisor,
    HypervisorDriver,
    MigrateOptions,
    Operation,
)
from pcifleet.host.libvirt import GuestDevice

OTHER = PciAddress.parse("0000:81:10.4")


def running(fake: FakeHypervisor, name: str = "vm") -> str:
    fake.define(domain_xml(name))
    fake.start(name)
    return name


def keys(fake: FakeHypervisor, name: str, *, live: bool = True) -> set[tuple[str, str]]:
    return {k for d in fake.devices(name, live=live) for k in d.keys if k[0] != "xml"}


def test_the_fake_is_a_driver(fake: FakeHypervisor) -> None:
    assert isinstance(fake, HypervisorDriver)


def test_devices_of_the_defined_xml_are_live_after_start(fake: FakeHypervisor) -> None:
    fake.define(domain_xml("vm", devices=(GuestDevice(GPU),)))
    assert keys(fake, "vm", live=False) == {("pci", str(GPU))}
    assert fake.devices("vm") == ()
    fake.start("vm")
    assert keys(fake, "vm") == {("pci", str(GPU))}


def test_attach_and_detach_live_and_config(fake: FakeHypervisor) -> None:
    name = running(fake)
    fake.attach_device(name, vf_port())
    assert keys(fake, name) == {("pci", str(VF)), ("mac", "fa:16:3e:00:00:01")}
    assert keys(fake, name, live=False) == keys(fake, name)
    fake.detach_device(name, vf_port())
    assert fake.devices(name) == () and fake.devices(name, live=False) == ()


def test_live_only_attach_leaves_the_config_alone(fake: FakeHypervisor) -> None:
    name = running(fake)
    fake.attach_device(name, hostdev(), config=False)
    assert keys(fake, name) == {("pci", str(GPU))}
    assert fake.devices(name, live=False) == ()


def test_neither_live_nor_config_means_current_like_libvirt(fake: FakeHypervisor) -> None:
    fake.define(domain_xml("vm"))
    fake.attach_device("vm", hostdev(), live=False, config=False)
    assert keys(fake, "vm", live=False) == {("pci", str(GPU))}


DUPLICATES = [
    ("same-pci-function", hostdev(VF), vf_port(address=VF)),
    ("same-mac", vf_port(), vf_port(address=OTHER)),
]


@pytest.mark.parametrize(
    ("first", "second"), [d[1:] for d in DUPLICATES], ids=[d[0] for d in DUPLICATES]
)
def test_a_device_plugged_twice_is_refused_without_change(
    fake: FakeHypervisor, first: str, second: str
) -> None:
    name = running(fake)
    fake.attach_device(name, first)
    before = fake.devices(name)
    with pytest.raises(DeviceAlreadyAttached) as caught:
        fake.attach_device(name, second)
    assert caught.value.status == 409 and caught.value.fields["domain"] == name
    assert fake.devices(name) == before


def test_detach_of_a_missing_device(fake: FakeHypervisor) -> None:
    name = running(fake)
    with pytest.raises(DeviceNotAttached, match=str(GPU)):
        fake.detach_device(name, hostdev())


def test_detach_matches_a_nic_by_its_mac(fake: FakeHypervisor) -> None:
    name = running(fake)
    fake.attach_device(name, vf_port())
    fake.detach_device(
        name, '<interface type="hostdev"><mac address="FA:16:3E:00:00:01"/></interface>'
    )
    assert fake.devices(name) == ()


STATE_ERRORS = [
    ("live-on-shut-off", False, True, False, "inactive domain"),
    ("config-on-transient", True, False, True, "transient domain"),
]


@pytest.mark.parametrize(
    ("start", "live", "config", "text"),
    [s[1:] for s in STATE_ERRORS],
    ids=[s[0] for s in STATE_ERRORS],
)
def test_hot_plug_state_rules(
    fake: FakeHypervisor, start: bool, live: bool, config: bool, text: str
) -> None:
    fake.define(domain_xml("vm"))
    if start:
        fake.start("vm")
        fake.undefine("vm")
    with pytest.raises(DomainStateError, match=text):
        fake.attach_device("vm", hostdev(), live=live, config=config)


BAD_FRAGMENTS = [("not-xml", "<hostdev"), ("not-a-device", "<disk type='file'/>")]


@pytest.mark.parametrize(
    "fragment", [b[1] for b in BAD_FRAGMENTS], ids=[b[0] for b in BAD_FRAGMENTS]
)
def test_bad_fragments(fake: FakeHypervisor, fragment: str) -> None:
    name = running(fake)
    with pytest.raises(DomainXmlRejected):
        fake.attach_device(name, fragment)


def test_a_domain_xml_with_one_function_twice_is_refused(fake: FakeHypervisor) -> None:
    xml = domain_xml("vm").replace("<devices/>", f"<devices>{hostdev()}{hostdev()}</devices>")
    with pytest.raises(DomainXmlRejected, match="used twice"):
        fake.define(xml)


def test_calls_are_recorded_failed_ones_too(fake: FakeHypervisor) -> None:
    name = running(fake)
    with pytest.raises(DomainStateError):
        fake.start(name)
    assert fake.operations() == [Operation.DEFINE, Operation.START, Operation.START]
    fake.attach_device(name, hostdev(), config=False)
    assert fake.calls[-1] == Call(Operation.ATTACH, name, hostdev(), True, False)


def test_injected_failures_happen_before_any_change(fake: FakeHypervisor) -> None:
    name = running(fake)
    fake.fail(Operation.ATTACH, times=2)
    for _ in range(2):
        with pytest.raises(HypervisorError, match=f"domain {name}, attach-device: injected"):
            fake.attach_device(name, hostdev())
    assert fake.devices(name) == ()
    fake.attach_device(name, hostdev())
    assert keys(fake, name) == {("pci", str(GPU))}


def test_an_injected_error_of_a_given_class(fake: FakeHypervisor) -> None:
    name = running(fake)
    fake.fail(Operation.STOP, HypervisorUnavailable("gone", domain=name, operation="stop"))
    with pytest.raises(HypervisorUnavailable):
        fake.stop(name)
    assert fake.state(name) is DomainState.RUNNING


def test_migration_moves_the_running_domain_to_its_peer() -> None:
    dest = FakeHypervisor("fake://dest/")
    source = FakeHypervisor("fake://source/", peers={dest.uri: dest})
    name = running(source)
    source.attach_device(name, hostdev())
    new_xml = domain_xml(name, devices=(GuestDevice(OTHER),))
    source.migrate(name, dest.uri, MigrateOptions(dest_xml=new_xml))
    with pytest.raises(DomainNotFound):
        source.state(name)
    info = dest.info(name)
    assert info.state is DomainState.RUNNING and info.persistent
    assert keys(dest, name) == {("pci", str(OTHER))} and dest.xml(name) == new_xml


def test_a_transient_migration_keeps_no_config_on_the_destination() -> None:
    dest = FakeHypervisor("fake://dest/")
    source = FakeHypervisor(peers={dest.uri: dest})
    source.migrate(running(source), dest.uri, MigrateOptions(persist=False))
    assert not dest.info("vm").persistent


MIGRATE_ERRORS = [
    ("unknown-destination", True, "fake://nowhere/", HypervisorUnavailable),
    ("not-running", False, "fake://dest/", DomainStateError),
]


@pytest.mark.parametrize(
    ("start", "uri", "error"), [m[1:] for m in MIGRATE_ERRORS], ids=[m[0] for m in MIGRATE_ERRORS]
)
def test_migration_errors_leave_the_source_alone(
    start: bool, uri: str, error: type[HypervisorError]
) -> None:
    dest = FakeHypervisor("fake://dest/")
    source = FakeHypervisor(peers={dest.uri: dest})
    source.define(domain_xml("vm"))
    if start:
        source.start("vm")
    with pytest.raises(error):
        source.migrate("vm", uri)
    assert source.info("vm").state.active is start
    assert dest.list_domains() == ()


def test_migration_onto_a_taken_name_is_refused() -> None:
    dest = FakeHypervisor("fake://dest/")
    dest.define(domain_xml("vm"))
    source = FakeHypervisor(peers={dest.uri: dest})
    with pytest.raises(DomainExists):
        source.migrate(running(source), dest.uri)
    assert source.state("vm") is DomainState.RUNNING
