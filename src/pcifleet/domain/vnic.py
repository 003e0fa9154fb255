"""Vnic types: the one table that says what each kind of port needs and how it behaves.

A port's ``vnic_type`` (Neutron's ``binding:vnic_type``) decides everything device-related about
it: whether it needs a PCI device at all and of which type, how the agent plugs it into the
guest, which vif type the binding reports, whether a host firewall can sit in its path, and what
happens to it during live migration. Every other module asks :data:`VNIC_TABLE` (through
:func:`vnic_info`) instead of testing vnic types itself, so adding a type is one row.

Live migration (Nova since Train, Neutron's SR-IOV guide):

- indirect types (``macvtap``, ``virtio-forwarder``) move transparently: the guest sees a virtio
  NIC, only the host-side VF changes;
- direct types (``direct``, ``direct-physical``, ``vdpa``, ``remote-managed``) are unplugged from
  the guest before the move, a device is claimed on the destination and plugged back (the guest
  sees the NIC disappear; bond it with an indirect port to keep connectivity);
- ``normal`` ports carry no device and move like any virtio NIC;
- ``baremetal`` and the Cyborg ``accelerator-*`` types are accepted for completeness but carry no
  pcifleet device and cannot be live-migrated.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from pcifleet.domain.device import DeviceType
from pcifleet.domain.errors import InvalidRequest
from pcifleet.domain.request import (
    DeviceMatch,
    DeviceRequest,
    NumaPolicy,
    Requester,
    RequesterKind,
    RequestIdFactory,
    new_request_id,
)


class VnicType(enum.StrEnum):
    NORMAL = "normal"
    DIRECT = "direct"
    MACVTAP = "macvtap"
    DIRECT_PHYSICAL = "direct-physical"
    VIRTIO_FORWARDER = "virtio-forwarder"
    VDPA = "vdpa"
    REMOTE_MANAGED = "remote-managed"
    BAREMETAL = "baremetal"
    ACCELERATOR_DIRECT = "accelerator-direct"
    ACCELERATOR_DIRECT_PHYSICAL = "accelerator-direct-physical"


class LiveMigration(enum.StrEnum):
    """What live migration does to a port of this vnic type."""

    #: no device: the port moves like any virtio NIC
    NO_DEVICE = "no-device"
    #: the guest keeps its virtio NIC; the host-side device is swapped underneath
    TRANSPARENT = "transparent"
    #: detached before the move, a new device claimed and attached on the destination
    UNPLUG_REPLUG = "unplug-replug"
    #: the instance cannot be live-migrated with such a port
    NEVER = "never"


class PlugKind(enum.StrEnum):
    """How the libvirt renderer presents the port to the guest."""

    #: software switch NIC (virtio on a tap/bridge/OVS port): not pcifleet's business
    VIRTIO = "virtio"
    #: ``<interface type='hostdev'>``: the VF itself, with MAC and VLAN set by libvirt
    HOSTDEV_INTERFACE = "hostdev-interface"
    #: ``<interface type='direct'><source mode='passthrough'>`` on the VF netdev
    MACVTAP = "macvtap"
    #: plain ``<hostdev>`` with the PF address (no MAC/VLAN)
    HOSTDEV = "hostdev"
    #: ``<interface type='vdpa'>`` on ``/dev/vhost-vdpa-N``
    VDPA = "vdpa"
    #: ``<interface type='vhostuser'>``: a relay forwards virtio to the VF
    VHOSTUSER = "vhostuser"
    #: nothing for the libvirt renderer to do (bare metal, Cyborg accelerators)
    NONE = "none"


@dataclass(frozen=True, slots=True)
class VnicInfo:
    """One row of the vnic table."""

    vnic_type: VnicType
    #: the type of device the port consumes; None: the port needs no pcifleet device
    device_type: DeviceType | None
    live_migration: LiveMigration
    plug: PlugKind
    #: Neutron's ``binding:vif_type`` for a bound port (None: no in-tree binder)
    vif_type: str | None
    #: True when a host firewall (security groups) can filter this port's traffic
    host_firewall: bool
    #: the device's switching is done by a SmartNIC/DPU, not by the host
    remote_managed: bool = False

    @property
    def needs_device(self) -> bool:
        """True for the types that become a device request (Nova's ``VNIC_TYPES_SRIOV``)."""
        return self.device_type is not None

    @property
    def request_dev_type(self) -> DeviceType | None:
        """The ``dev_type`` written in the port's request, exactly as Nova does.

        Only ``direct-physical`` (type-PF) and ``vdpa`` set it. The other device types leave it
        out and still get VFs: PFs, vDPA devices and plain PCI devices are filtered out of
        requests that did not ask for them (PF/vDPA rules, and ``remote_managed`` absent on
        plain PCI devices).
        """
        if self.device_type in (DeviceType.PF, DeviceType.VDPA):
            return self.device_type
        return None


def _row(
    vnic: VnicType,
    device: DeviceType | None,
    migration: LiveMigration,
    plug: PlugKind,
    vif_type: str | None,
    *,
    firewall: bool = False,
    remote: bool = False,
) -> tuple[VnicType, VnicInfo]:
    return vnic, VnicInfo(vnic, device, migration, plug, vif_type, firewall, remote)


_M = LiveMigration
_P = PlugKind
_D = DeviceType

#: the one vnic table
VNIC_TABLE: Final = MappingProxyType(
    dict(
        [
            _row(VnicType.NORMAL, None, _M.NO_DEVICE, _P.VIRTIO, "ovs", firewall=True),
            _row(VnicType.DIRECT, _D.VF, _M.UNPLUG_REPLUG, _P.HOSTDEV_INTERFACE, "hw_veb"),
            _row(VnicType.MACVTAP, _D.VF, _M.TRANSPARENT, _P.MACVTAP, "hw_veb"),
            _row(VnicType.DIRECT_PHYSICAL, _D.PF, _M.UNPLUG_REPLUG, _P.HOSTDEV, "hostdev_physical"),
            _row(VnicType.VIRTIO_FORWARDER, _D.VF, _M.TRANSPARENT, _P.VHOSTUSER, "agilio_ovs"),
            _row(VnicType.VDPA, _D.VDPA, _M.UNPLUG_REPLUG, _P.VDPA, "ovs"),
            _row(
                VnicType.REMOTE_MANAGED,
                _D.VF,
                _M.UNPLUG_REPLUG,
                _P.HOSTDEV_INTERFACE,
                "ovs",
                remote=True,
            ),
            _row(VnicType.BAREMETAL, None, _M.NEVER, _P.NONE, "other"),
            _row(VnicType.ACCELERATOR_DIRECT, None, _M.NEVER, _P.NONE, "hw_veb"),
            _row(VnicType.ACCELERATOR_DIRECT_PHYSICAL, None, _M.NEVER, _P.NONE, None),
        ]
    )
)


def parse_vnic_type(value: str) -> VnicType:
    """A vnic type from its Neutron spelling; unknown values name the accepted ones."""
    try:
        return VnicType(value)
    except ValueError:
        accepted = ", ".join(v.value for v in VnicType)
        raise InvalidRequest(
            f"vnic_type {value!r} is not one of: {accepted}", field="vnic_type", rule="enum"
        ) from None


def vnic_info(vnic_type: VnicType | str) -> VnicInfo:
    """The table row of a vnic type (a string is parsed first)."""
    key = vnic_type if isinstance(vnic_type, VnicType) else parse_vnic_type(vnic_type)
    return VNIC_TABLE[key]


def port_device_request(
    vnic_type: VnicType | str,
    physical_network: str | None,
    trusted: bool | None,
    port_id: str,
    numa_policy: NumaPolicy | None = None,
    *,
    id_factory: RequestIdFactory = new_request_id,
) -> DeviceRequest | None:
    """The device request a port implies, built as Nova's ``create_resource_requests`` does.

    None for vnic types that carry no device. Otherwise one request for one device whose single
    alternative carries:

    - ``physical_network``: the network's physical network, or None for tunneled networks (it
      then matches devices without a physical network);
    - ``remote_managed``: "True" for remote-managed ports, "False" for every other type (so a
      port never gets a plain type-PCI device, and a remote-managed VF only goes to a
      remote-managed port);
    - ``trusted``: "True"/"False" only when the port's binding profile sets it (absent: trusted
      and untrusted VFs both match);
    - ``dev_type``: type-PF for direct-physical, vdpa for vdpa, absent otherwise.

    ``numa_policy`` is the port's own policy (it wins over the flavor's); None lets the
    instance's policy apply.
    """
    info = vnic_info(vnic_type)
    if not info.needs_device:
        return None
    props: dict[str, str | None] = {
        "physical_network": physical_network,
        "remote_managed": str(info.remote_managed),
    }
    if trusted is not None:
        props["trusted"] = str(trusted)
    match = DeviceMatch.of(dev_type=info.request_dev_type, **props)
    return DeviceRequest(
        count=1,
        alternatives=(match,),
        requester=Requester(RequesterKind.PORT, port_id),
        numa_policy=numa_policy,
        request_id=id_factory(),
    )
