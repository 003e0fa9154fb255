"""Networking errors, under the branches of :mod:`pcifleet.domain.errors` they belong to.

They live here rather than in the shared hierarchy file so the networking area stays
self-contained; the client still rebuilds them by code once this module is imported (and by
status otherwise)::

    InvalidInput
    ├── InvalidNetwork (domain)       pcifleet.network.invalid
    └── InvalidPort                   pcifleet.port.invalid (QoS, security groups, vnic rules)
        └── MixedVnicTypes            pcifleet.port.mixed_vnic_types (policy deny)
    Conflict
    ├── NetworkExhausted              pcifleet.network.exhausted (no free VLAN/VNI/MAC)
    ├── NetworkInUse                  pcifleet.network.in_use (ports left on it)
    ├── PortInUse                     pcifleet.port.in_use (bound to an instance)
    ├── NoDeviceOnHost                pcifleet.port.no_device_on_host (attach: no free VF there)
    └── InstanceNotRunning            pcifleet.port.instance_not_running (attach/detach)
"""

from __future__ import annotations

from pcifleet.domain.errors import Conflict, InvalidInput


class InvalidPort(InvalidInput):
    code = "pcifleet.port.invalid"


class MixedVnicTypes(InvalidPort):
    code = "pcifleet.port.mixed_vnic_types"


class NetworkExhausted(Conflict):
    code = "pcifleet.network.exhausted"


class NetworkInUse(Conflict):
    code = "pcifleet.network.in_use"


class PortInUse(Conflict):
    code = "pcifleet.port.in_use"


class NoDeviceOnHost(Conflict):
    code = "pcifleet.port.no_device_on_host"


class InstanceNotRunning(Conflict):
    code = "pcifleet.port.instance_not_running"
