"""Device requests: what an instance asks for, from its flavor (a group) or from a port.

A :class:`DeviceRequest` is Nova's ``InstancePCIRequest`` made typed: ``count`` devices, each
matching any one of ``alternatives`` (Nova's list of spec dicts, OR-ed), asked for by a group
named in the flavor or by a network port, with an optional NUMA affinity policy.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from pcifleet.domain.device import DeviceType
from pcifleet.domain.tags import Tags


class NumaPolicy(enum.StrEnum):
    REQUIRED = "required"
    SOCKET = "socket"
    PREFERRED = "preferred"
    LEGACY = "legacy"


#: makes the ``request_id`` of new requests; pass a deterministic one in tests
RequestIdFactory = Callable[[], str]


def new_request_id() -> str:
    """A fresh random request id (a UUID, as Nova's ``request_id``)."""
    return str(uuid.uuid4())


class RequesterKind(enum.StrEnum):
    GROUP = "group"
    PORT = "port"


@dataclass(frozen=True, slots=True)
class Requester:
    kind: RequesterKind
    #: the group name, or the port id
    name: str


@dataclass(frozen=True, slots=True)
class DeviceMatch:
    """One alternative of a request: every set field must match the device (Nova's spec dict).

    ``props`` holds the remaining keys (``physical_network``, ``trusted``, ``remote_managed``,
    ``live_migratable``, free-form tags), sorted by key; each is compared case-insensitively
    against the device's tags, an absent device tag comparing as None, as Nova does (so
    ``physical_network=None`` matches devices without a physical network).
    """

    vendor_id: str | None = None
    product_id: str | None = None
    dev_type: DeviceType | None = None
    props: tuple[tuple[str, str | None], ...] = ()

    @classmethod
    def of(
        cls,
        vendor_id: str | None = None,
        product_id: str | None = None,
        dev_type: DeviceType | None = None,
        **props: str | None,
    ) -> DeviceMatch:
        return cls(vendor_id, product_id, dev_type, tuple(sorted(props.items())))

    def prop(self, key: str) -> str | None:
        return dict(self.props).get(key)

    def has_prop(self, key: str) -> bool:
        return any(k == key for k, _ in self.props)

    def matches(self, vendor_id: str, product_id: str, dev_type: DeviceType, tags: Tags) -> bool:
        """True when every field set here equals the device's (props case-insensitively)."""
        if self.vendor_id is not None and self.vendor_id != vendor_id:
            return False
        if self.product_id is not None and self.product_id != product_id:
            return False
        if self.dev_type is not None and self.dev_type is not dev_type:
            return False
        for key, want in self.props:
            have = tags.get_folded(key)
            if (None if want is None else want.lower()) != have:
                return False
        return True


@dataclass(frozen=True, slots=True)
class DeviceRequest:
    count: int
    alternatives: tuple[DeviceMatch, ...]
    requester: Requester
    #: None: use the instance's policy, else legacy
    numa_policy: NumaPolicy | None = None
    request_id: str = ""

    @property
    def from_port(self) -> bool:
        return self.requester.kind is RequesterKind.PORT

    def is_live_migratable(self) -> bool:
        """Nova's rule: every alternative explicitly asks for ``live_migratable`` "true".

        A request whose group says nothing about live migration is not live-migratable: the
        live migration pre-check refuses to move such an instance ("This request does not
        explicitly request live-migratable devices.").
        """
        return bool(self.alternatives) and all(
            (alt.prop("live_migratable") or "").lower() == "true" for alt in self.alternatives
        )
