"""Device requests: matching alternatives, live-migratable rule, request ids."""

from __future__ import annotations

import uuid

import pytest

from pcifleet.domain.device import DeviceType
from pcifleet.domain.request import (
    DeviceMatch,
    DeviceRequest,
    Requester,
    RequesterKind,
    new_request_id,
)
from pcifleet.domain.tags import Tags


def _request(*alternatives: DeviceMatch) -> DeviceRequest:
    return DeviceRequest(1, alternatives, Requester(RequesterKind.GROUP, "g"))


@pytest.mark.parametrize(
    ("alternatives", "expected"),
    [
        ((DeviceMatch.of("8086", "1234", live_migratable="true"),), True),
        ((DeviceMatch.of("8086", "1234", live_migratable="True"),), True),
        ((DeviceMatch.of("8086", "1234", live_migratable="false"),), False),
        # a group that says nothing is not live-migratable (Nova's pre-check refuses it)
        ((DeviceMatch.of("8086", "1234"),), False),
        (
            (
                DeviceMatch.of("8086", "1234", live_migratable="true"),
                DeviceMatch.of("8086", "1235", live_migratable="true"),
            ),
            True,
        ),
        (
            (
                DeviceMatch.of("8086", "1234", live_migratable="true"),
                DeviceMatch.of("8086", "1235"),
            ),
            False,
        ),
        ((), False),
    ],
)
def test_is_live_migratable(alternatives: tuple[DeviceMatch, ...], expected: bool) -> None:
    assert _request(*alternatives).is_live_migratable() is expected


@pytest.mark.parametrize(
    ("match", "device", "expected"),
    [
        (DeviceMatch.of("8086", "1234"), ("8086", "1234", DeviceType.VF, {}), True),
        (DeviceMatch.of("8086", "1234"), ("8086", "9999", DeviceType.VF, {}), False),
        (DeviceMatch.of("8086"), ("8086", "9999", DeviceType.PF, {}), True),
        (DeviceMatch.of(dev_type=DeviceType.PF), ("8086", "1", DeviceType.VF, {}), False),
        (
            DeviceMatch.of(physical_network="PhysNet1"),
            ("8086", "1", DeviceType.VF, {"physical_network": "physnet1"}),
            True,
        ),
        (DeviceMatch.of(physical_network=None), ("8086", "1", DeviceType.VF, {}), True),
        (
            DeviceMatch.of(physical_network=None),
            ("8086", "1", DeviceType.VF, {"physical_network": "physnet1"}),
            False,
        ),
    ],
)
def test_match_semantics(
    match: DeviceMatch, device: tuple[str, str, DeviceType, dict[str, str]], expected: bool
) -> None:
    vendor, product, dev_type, tags = device
    assert match.matches(vendor, product, dev_type, Tags(tags)) is expected


def test_requester_kind_tells_port_from_group() -> None:
    assert not _request(DeviceMatch.of()).from_port
    port = DeviceRequest(1, (DeviceMatch.of(),), Requester(RequesterKind.PORT, "p"))
    assert port.from_port


def test_new_request_id_is_a_uuid() -> None:
    value = new_request_id()
    assert str(uuid.UUID(value)) == value
    assert new_request_id() != value
