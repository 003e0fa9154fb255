"""kbit/s -> VF Mbit/s with Neutron's rule (reference neutron-sriov.md §5.2), and burst refusal."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcifleet.domain.errors import InvalidVfRate
from pcifleet.host.vf.model import VfSettings
from pcifleet.host.vf.qos import (
    MAX_KBPS,
    kbps_to_vf_mbps,
    refuse_burst,
    vf_rates_from_qos,
)


@pytest.mark.parametrize(
    ("kbps", "mbps", "rounded"),
    [
        # Neutron's own examples
        (999, 1, True),
        (1000, 1, False),
        (1499, 1, True),
        (1500, 2, True),
        (2499, 2, True),
        (2500, 3, True),
        (10000, 10, False),
        # the edges
        (0, 0, False),
        (1, 1, True),
        (500, 1, True),
        (1001, 1, True),
        (MAX_KBPS, 2147484, True),
    ],
)
def test_qos_kbps_to_vf_mbps(kbps: int, mbps: int, rounded: bool) -> None:
    conversion = kbps_to_vf_mbps(kbps)
    assert (conversion.mbps, conversion.rounded) == (mbps, rounded)
    assert (conversion.note is not None) == rounded


def test_qos_rounding_note_wording() -> None:
    assert kbps_to_vf_mbps(1499, "max_kbps").note == (
        "max_kbps 1499 kbit/s is enforced as 1 Mbit/s: VF rates are whole Mbit/s "
        "(rounded half up, at least 1 Mbit/s)"
    )


@given(st.integers(min_value=1, max_value=MAX_KBPS))
def test_qos_conversion_never_zero_and_half_up(kbps: int) -> None:
    mbps = kbps_to_vf_mbps(kbps).mbps
    assert mbps >= 1
    expected = Decimal(kbps) / 1000
    assert abs(Decimal(mbps) - expected) <= Decimal("0.5") or kbps < 1000
    assert mbps == max(1, int(expected.quantize(Decimal(1), rounding=ROUND_HALF_UP)))


@given(st.integers(0, MAX_KBPS), st.integers(0, MAX_KBPS))
def test_qos_conversion_is_monotonic(a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert kbps_to_vf_mbps(low).mbps <= kbps_to_vf_mbps(high).mbps


@pytest.mark.parametrize(
    ("value", "rule"),
    [(-1, "range"), (MAX_KBPS + 1, "range"), (1.5, "type"), (True, "type"), ("100", "type")],
)
def test_qos_rate_rejected(value: object, rule: str) -> None:
    with pytest.raises(InvalidVfRate) as caught:
        kbps_to_vf_mbps(value, "min_kbps")  # type: ignore[arg-type]
    assert (caught.value.fields["field"], caught.value.fields["rule"]) == ("min_kbps", rule)


@pytest.mark.parametrize("burst", [1, 800, MAX_KBPS, True, "0"])
def test_qos_burst_refused(burst: object) -> None:
    with pytest.raises(InvalidVfRate, match="no burst setting") as caught:
        refuse_burst(burst)  # type: ignore[arg-type]
    assert caught.value.fields["rule"] == "burst_unsupported"
    assert caught.value.fields["field"] == "max_burst_kbps"


@pytest.mark.parametrize("burst", [None, 0])
def test_qos_no_burst_accepted(burst: int | None) -> None:
    refuse_burst(burst)


def test_qos_policy_to_vf_settings() -> None:
    rates = vf_rates_from_qos(max_kbps=10500, min_kbps=999)
    assert rates.settings() == VfSettings(min_tx_rate=1, max_tx_rate=11)
    assert len(rates.notes) == 2
    only_max = vf_rates_from_qos(max_kbps=3000)
    assert only_max.settings() == VfSettings(max_tx_rate=3)  # min left as it is
    assert only_max.notes == ()


def test_qos_policy_refusals() -> None:
    with pytest.raises(InvalidVfRate, match="above maximum") as caught:
        vf_rates_from_qos(max_kbps=2000, min_kbps=2001)
    assert caught.value.fields["rule"] == "min_above_max"
    vf_rates_from_qos(max_kbps=0, min_kbps=5000)  # max 0 = unlimited
    with pytest.raises(InvalidVfRate, match="burst"):
        vf_rates_from_qos(max_kbps=2000, max_burst_kbps=1600)
