"""Port MAC addresses: unique per network, allocated under a configurable prefix.

Neutron allocates ``base_mac`` (default ``fa:16:3e:00:00:00``) with random low octets and
retries when the address is taken (``mac_generation_retries``). pcifleet does the same with an
injected random source (deterministic in tests) and a bounded number of tries; a user-given
MAC is normalized (lower case, colons) and must be a unicast, non-zero address.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Final

from pcifleet.domain.errors import InvalidNetwork
from pcifleet.network.errors import InvalidPort, NetworkExhausted

DEFAULT_PREFIX: Final = "fa:16:3e"
#: how many random addresses are tried before giving up (Neutron's default is 16)
DEFAULT_TRIES: Final = 16

_MAC = re.compile(r"^[0-9a-f]{2}([:-][0-9a-f]{2}){5}$")
_OCTET = re.compile(r"^[0-9a-f]{2}$")

#: returns a random integer in [0, n)
RandomBelow = Callable[[int], int]


def _system_random(n: int) -> int:
    return random.SystemRandom().randrange(n)


def normalize_mac(value: str, field: str = "mac_address") -> str:
    """``AA-BB-...`` -> ``aa:bb:...``; refuse malformed, multicast and all-zero addresses."""
    text = value.strip().lower() if isinstance(value, str) else ""
    if not _MAC.match(text):
        raise InvalidPort(
            f"{value!r} is not a MAC address (six hex octets)", field=field, rule="format"
        )
    text = text.replace("-", ":")
    if int(text[:2], 16) & 1:
        raise InvalidPort(f"{text} is a multicast address", field=field, rule="unicast")
    if text == "00:00:00:00:00:00":
        raise InvalidPort("00:00:00:00:00:00 is not a port address", field=field, rule="zero")
    return text


@dataclass(frozen=True, slots=True)
class MacPrefix:
    """The fixed leading octets of allocated MACs (1..5 octets, unicast)."""

    octets: tuple[int, ...]

    @classmethod
    def parse(cls, value: str) -> MacPrefix:
        parts = value.strip().lower().replace("-", ":").split(":")
        if not 1 <= len(parts) <= 5 or not all(_OCTET.match(p) for p in parts):
            raise InvalidNetwork(
                f"{value!r}: expected 1 to 5 hex octets like fa:16:3e",
                field="mac_prefix",
                rule="format",
            )
        octets = tuple(int(p, 16) for p in parts)
        if octets[0] & 1:
            raise InvalidNetwork(
                f"{value!r} would make multicast addresses", field="mac_prefix", rule="unicast"
            )
        return cls(octets)

    def __str__(self) -> str:
        return ":".join(f"{o:02x}" for o in self.octets)

    @property
    def free_bits(self) -> int:
        return 8 * (6 - len(self.octets))


def allocate_mac(
    prefix: MacPrefix,
    taken: Container[str],
    rand: RandomBelow = _system_random,
    tries: int = DEFAULT_TRIES,
) -> str:
    """A random address under ``prefix`` not in ``taken`` (``NetworkExhausted`` after ``tries``)."""
    for _ in range(tries):
        low = rand(1 << prefix.free_bits)
        octets = (*prefix.octets, *low.to_bytes(6 - len(prefix.octets), "big"))
        mac = ":".join(f"{o:02x}" for o in octets)
        if mac not in taken and mac != "00:00:00:00:00:00":
            return mac
    raise NetworkExhausted(
        f"no free MAC address under {prefix} after {tries} tries", field="mac_address"
    )
