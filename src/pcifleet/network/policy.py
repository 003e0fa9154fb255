"""Instances that mix vnic types which live-migrate differently.

``macvtap`` (and ``virtio-forwarder``) ports move transparently; ``direct``,
``direct-physical``, ``vdpa`` and ``remote-managed`` ports are unplugged before a live migration
and plugged back on the destination (:class:`pcifleet.domain.vnic.LiveMigration`). An instance
with both kinds keeps part of its connectivity and loses the other for a while, which surprises
people (the original design threads asked for a warning). The operator picks:

- ``allow``: say nothing;
- ``warn`` (default): boot, and the response carries the warning;
- ``deny``: refuse the boot (``pcifleet.port.mixed_vnic_types``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from pcifleet.domain.errors import InvalidInput
from pcifleet.domain.vnic import LiveMigration, VnicType, vnic_info
from pcifleet.network.errors import MixedVnicTypes


class MixedVnicPolicy(enum.StrEnum):
    ALLOW = "allow"
    WARN = "warn"
    DENY = "deny"


def parse_policy(value: str) -> MixedVnicPolicy:
    try:
        return MixedVnicPolicy(value)
    except ValueError:
        raise InvalidInput(
            f"{value!r} is not one of: allow, warn, deny",
            field="mixed_vnic_policy",
            rule="enum",
        ) from None


def _names(types: Iterable[VnicType]) -> str:
    return ", ".join(sorted({t.value for t in types}))


def mixed_vnic_message(vnic_types: Iterable[VnicType]) -> str | None:
    """The warning for these ports' vnic types, or None when they migrate alike."""
    kinds = {t: vnic_info(t).live_migration for t in vnic_types}
    unplugged = [t for t, m in kinds.items() if m is LiveMigration.UNPLUG_REPLUG]
    transparent = [t for t, m in kinds.items() if m is LiveMigration.TRANSPARENT]
    if not unplugged or not transparent:
        return None
    return (
        f"this instance mixes vnic types that live-migrate differently: live migration will "
        f"unplug the direct ports ({_names(unplugged)}) from the guest and plug new devices "
        f"on the destination, while {_names(transparent)} ports move transparently"
    )


def check_mixed_vnic_types(
    vnic_types: Iterable[VnicType], policy: MixedVnicPolicy
) -> tuple[str, ...]:
    """The warnings to return with the boot; raises under ``deny``."""
    message = mixed_vnic_message(vnic_types)
    if message is None or policy is MixedVnicPolicy.ALLOW:
        return ()
    if policy is MixedVnicPolicy.DENY:
        raise MixedVnicTypes(
            f"{message}; the mixed_vnic_policy is deny", field="nics", rule="mixed_vnic_types"
        )
    return (message,)
