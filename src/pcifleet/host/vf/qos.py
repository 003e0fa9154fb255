"""QoS rates from the API's kbit/s to a VF's whole Mbit/s, with Neutron's rounding.

Neutron's SR-IOV agent (``EmbSwitch.set_device_rate``) converts each rate this way:

- ``0`` stays ``0`` (no limit / no guarantee);
- ``1..999`` kbit/s becomes ``1`` Mbit/s, the lowest a VF can be set to (never 0, which would
  silently mean "unlimited");
- ``1000`` and above is divided by 1000 and rounded half up (``decimal.ROUND_HALF_UP``):
  1499 -> 1, 1500 -> 2, 2500 -> 3.

``RateConversion.rounded`` says whether the VF will enforce something other than what was asked,
and ``note`` words it for an API response. Burst sizes are refused: a VF's rate limiter has no
burst parameter (Neutron accepts ``max_burst_kbps`` and ignores it; pcifleet says so instead).
The API range is Neutron's: ``0..2^31-1`` kbit/s.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

from pcifleet.domain.errors import InvalidVfRate
from pcifleet.host.vf.model import VfSettings

MAX_KBPS: Final = 2**31 - 1


@dataclass(frozen=True, slots=True)
class RateConversion:
    field: str
    kbps: int
    mbps: int
    rounded: bool

    @property
    def note(self) -> str | None:
        """A sentence for the API response when the VF enforces a different value."""
        if not self.rounded:
            return None
        return (
            f"{self.field} {self.kbps} kbit/s is enforced as {self.mbps} Mbit/s: "
            "VF rates are whole Mbit/s (rounded half up, at least 1 Mbit/s)"
        )


def kbps_to_vf_mbps(kbps: int, field: str = "max_kbps") -> RateConversion:
    """Neutron's conversion of one rate; ``field`` names it in errors and notes."""
    if isinstance(kbps, bool) or not isinstance(kbps, int):
        raise InvalidVfRate(f"must be an integer, got {kbps!r}", field=field, rule="type")
    if not 0 <= kbps <= MAX_KBPS:
        raise InvalidVfRate(
            f"{kbps} kbit/s is not between 0 and {MAX_KBPS}", field=field, rule="range"
        )
    if kbps == 0:
        mbps = 0
    elif kbps < 1000:
        mbps = 1
    else:
        mbps = int((Decimal(kbps) / 1000).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return RateConversion(field, kbps, mbps, rounded=mbps * 1000 != kbps)


def refuse_burst(max_burst_kbps: int | None, field: str = "max_burst_kbps") -> None:
    """Refuse a burst size (None or 0 = none asked): a VF cannot enforce one."""
    if max_burst_kbps is None or (
        isinstance(max_burst_kbps, int)
        and not isinstance(max_burst_kbps, bool)
        and max_burst_kbps == 0
    ):
        return
    raise InvalidVfRate(
        f"{max_burst_kbps!r} kbit/s cannot be enforced: an SR-IOV VF's rate limiter has no "
        "burst setting; leave it unset (or 0)",
        field=field,
        rule="burst_unsupported",
    )


@dataclass(frozen=True, slots=True)
class VfRates:
    """A QoS policy's egress rates as a VF will enforce them."""

    max_rate: RateConversion | None
    min_rate: RateConversion | None

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(
            c.note for c in (self.max_rate, self.min_rate) if c is not None and c.note is not None
        )

    def settings(self) -> VfSettings:
        """The rate part of a VF request (a rate not in the policy is left as it is)."""
        return VfSettings(
            min_tx_rate=None if self.min_rate is None else self.min_rate.mbps,
            max_tx_rate=None if self.max_rate is None else self.max_rate.mbps,
        )


def vf_rates_from_qos(
    max_kbps: int | None = None,
    min_kbps: int | None = None,
    max_burst_kbps: int | None = None,
) -> VfRates:
    """Convert a policy's egress ``max_kbps`` (bandwidth limit) and ``min_kbps`` (minimum
    bandwidth); refuse a burst and a minimum above a non-zero maximum. Rounding is monotonic,
    so a valid pair in kbit/s stays valid in Mbit/s."""
    refuse_burst(max_burst_kbps)
    max_rate = None if max_kbps is None else kbps_to_vf_mbps(max_kbps, "max_kbps")
    min_rate = None if min_kbps is None else kbps_to_vf_mbps(min_kbps, "min_kbps")
    if max_rate and min_rate and max_rate.kbps and min_rate.kbps > max_rate.kbps:
        raise InvalidVfRate(
            f"minimum {min_rate.kbps} kbit/s is above maximum {max_rate.kbps} kbit/s",
            field="min_kbps",
            rule="min_above_max",
        )
    return VfRates(max_rate, min_rate)
