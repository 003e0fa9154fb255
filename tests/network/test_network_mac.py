"""MAC allocation under a prefix, and normalization of user-given addresses."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcifleet.domain.errors import InvalidNetwork
from pcifleet.network.errors import InvalidPort, NetworkExhausted
from pcifleet.network.mac import MacPrefix, allocate_mac, normalize_mac


@pytest.mark.parametrize(
    ("value", "expected"),
    [("FA:16:3E:00:00:01", "fa:16:3e:00:00:01"), ("02-00-00-aa-bb-cc", "02:00:00:aa:bb:cc")],
)
def test_normalize_mac(value: str, expected: str) -> None:
    assert normalize_mac(value) == expected


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("fa:16:3e:00:01", "format"),
        ("zz:16:3e:00:00:01", "format"),
        ("01:00:5e:00:00:01", "unicast"),
        ("00:00:00:00:00:00", "zero"),
    ],
)
def test_bad_macs_are_refused(value: str, rule: str) -> None:
    with pytest.raises(InvalidPort) as caught:
        normalize_mac(value)
    assert caught.value.fields["rule"] == rule


@pytest.mark.parametrize("value", ["", "fa:16:3e:00:00:00", "01:02", "gg", "fa;16"])
def test_bad_prefixes_are_refused(value: str) -> None:
    with pytest.raises(InvalidNetwork) as caught:
        MacPrefix.parse(value)
    assert caught.value.fields["field"] == "mac_prefix"


@given(st.sets(st.integers(0, 255), max_size=200), st.integers(0, 2**32))
def test_allocated_mac_has_prefix_and_is_free(taken_low: set[int], seed: int) -> None:
    prefix = MacPrefix.parse("fa:16:3e:00:00")
    taken = {f"fa:16:3e:00:00:{n:02x}" for n in taken_low}
    rng = random.Random(seed)
    if len(taken) == 256:
        with pytest.raises(NetworkExhausted):
            allocate_mac(prefix, taken, rng.randrange, tries=64)
        return
    try:
        mac = allocate_mac(prefix, taken, rng.randrange, tries=2000)
    except NetworkExhausted:  # pragma: no cover - astronomically unlikely with 2000 tries
        pytest.fail("free addresses left but none found")
    assert mac.startswith("fa:16:3e:00:00:") and mac not in taken
    assert normalize_mac(mac) == mac


def test_exhaustion_after_tries() -> None:
    prefix = MacPrefix.parse("fa:16:3e")
    with pytest.raises(NetworkExhausted, match="after 3 tries"):
        allocate_mac(prefix, {"fa:16:3e:00:00:07"}, lambda n: 7, tries=3)
