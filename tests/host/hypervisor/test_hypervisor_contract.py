"""One behaviour, two implementations: the fake and the libvirt driver on ``test:///default``.

Everything here runs against both (the ``driver`` fixture), for the operations libvirt's test
driver implements: define, start, stop, undefine, state, info, list, and their errors. Hot
plug and migration, which the test driver lacks, are covered by the fake's own tests and by
the libvirt driver's "unsupported" mapping.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import uuid4

import pytest
from hypervisor_kit import domain_xml, unique_name

from pcifleet.domain.errors import (
    DomainExists,
    DomainNotFound,
    DomainStateError,
    DomainXmlRejected,
    HypervisorError,
)
from pcifleet.host.hypervisor import DomainState, HypervisorDriver


def test_define_start_stop_undefine(driver: HypervisorDriver) -> None:
    name = unique_name()
    assert driver.define(domain_xml(name)) == name
    assert driver.state(name) is DomainState.SHUT_OFF
    assert name in {d.name for d in driver.list_domains()}
    driver.start(name)
    assert driver.state(name) is DomainState.RUNNING
    info = driver.info(name)
    assert info.persistent and info.state.active and info.uuid
    driver.stop(name)
    assert driver.state(name) is DomainState.SHUT_OFF
    driver.undefine(name)
    assert name not in {d.name for d in driver.list_domains()}


def test_list_is_sorted_by_name(driver: HypervisorDriver) -> None:
    names = [unique_name("zz"), unique_name("aa")]
    for name in names:
        driver.define(domain_xml(name))
    listed = [d.name for d in driver.list_domains()]
    assert listed == sorted(listed)
    assert set(names) <= set(listed)


def test_redefine_with_the_same_uuid_updates(driver: HypervisorDriver) -> None:
    name, uuid = unique_name(), uuid4()
    driver.define(domain_xml(name, uuid=uuid))
    driver.define(domain_xml(name, uuid=uuid))
    assert [d.name for d in driver.list_domains()].count(name) == 1
    assert driver.info(name).uuid == str(uuid)


def test_another_uuid_under_a_taken_name_is_refused(driver: HypervisorDriver) -> None:
    name = unique_name()
    driver.define(domain_xml(name, uuid=uuid4()))
    with pytest.raises(DomainExists) as caught:
        driver.define(domain_xml(name, uuid=uuid4()))
    assert caught.value.fields["domain"] == name
    assert caught.value.fields["operation"] == "define"


def test_a_taken_uuid_under_another_name_is_refused(driver: HypervisorDriver) -> None:
    uuid = uuid4()
    driver.define(domain_xml(unique_name(), uuid=uuid))
    with pytest.raises(DomainExists):
        driver.define(domain_xml(unique_name(), uuid=uuid))


UNKNOWN: list[tuple[str, Callable[[HypervisorDriver, str], object]]] = [
    ("start", lambda d, n: d.start(n)),
    ("stop", lambda d, n: d.stop(n)),
    ("undefine", lambda d, n: d.undefine(n)),
    ("state", lambda d, n: d.state(n)),
    ("state", lambda d, n: d.info(n)),
]


@pytest.mark.parametrize(
    ("operation", "call"), UNKNOWN, ids=["start", "stop", "undefine", "state", "info"]
)
def test_unknown_domain(
    driver: HypervisorDriver, operation: str, call: Callable[[HypervisorDriver, str], object]
) -> None:
    name = unique_name("missing")
    with pytest.raises(DomainNotFound) as caught:
        call(driver, name)
    assert caught.value.status == 404
    assert caught.value.fields["domain"] == name
    assert str(caught.value).startswith(f"domain {name}, {operation}: ")


def test_start_twice_and_stop_twice_are_state_errors(driver: HypervisorDriver) -> None:
    name = unique_name()
    driver.define(domain_xml(name))
    with pytest.raises(DomainStateError, match="not running"):
        driver.stop(name)
    driver.start(name)
    with pytest.raises(DomainStateError, match="running") as caught:
        driver.start(name)
    assert caught.value.status == 409 and caught.value.fields["operation"] == "start"


def test_undefine_while_running_leaves_a_transient_domain(driver: HypervisorDriver) -> None:
    name = unique_name()
    driver.define(domain_xml(name))
    driver.start(name)
    driver.undefine(name)
    info = driver.info(name)
    assert info.state is DomainState.RUNNING and not info.persistent
    driver.stop(name)
    with pytest.raises(DomainNotFound):
        driver.state(name)


BAD_XML = [
    ("not-well-formed", "<domain"),
    ("slash-in-name", domain_xml("ok").replace("<name>ok</name>", "<name>a/b</name>")),
]


@pytest.mark.parametrize("xml", [b[1] for b in BAD_XML], ids=[b[0] for b in BAD_XML])
def test_xml_the_parser_refuses(driver: HypervisorDriver, xml: str) -> None:
    with pytest.raises(DomainXmlRejected) as caught:
        driver.define(xml)
    assert isinstance(caught.value, HypervisorError) and caught.value.status == 400
    assert caught.value.fields["operation"] == "define"
