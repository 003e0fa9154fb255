"""One exception hierarchy for pcifleet.

Every error carries a stable ``code`` (``pcifleet.<area>.<rule>``), a message rendered from
the class's ``template`` and the keyword arguments it was raised with, and an HTTP status the
API uses when it surfaces the error.

    PcifleetError                         pcifleet.error
    ├── InvalidInput                      (400) malformed input: names the field and the rule
    │   ├── InvalidAddress                pcifleet.address.invalid
    │   ├── InvalidAddressPattern         pcifleet.address.invalid_pattern
    │   ├── InvalidSpec                   pcifleet.spec.invalid
    │   │   ├── InvalidSpecAddress        pcifleet.spec.invalid_address
    │   │   └── InvalidSpecCombination    pcifleet.spec.invalid_combination
    │   ├── InvalidGroup                  pcifleet.group.invalid
    │   │   └── InvalidGroupSet           pcifleet.group.invalid_set
    │   ├── InvalidRequest                pcifleet.request.invalid
    │   │   ├── UnknownGroup              pcifleet.request.unknown_group
    │   │   └── NumaPolicyConflict        pcifleet.request.numa_policy_conflict (403)
    │   ├── InvalidFlavor                 pcifleet.flavor.invalid
    │   ├── InvalidProfile                pcifleet.sim.invalid_profile
    │   ├── InvalidNetwork                pcifleet.network.invalid
    │   ├── InvalidGuestSpec              pcifleet.guest.invalid
    │   ├── InvalidVfSetting              pcifleet.vf.invalid_setting
    │   │   └── InvalidVfRate             pcifleet.vf.invalid_rate (QoS kbit/s -> Mbit/s, burst)
    │   └── InvalidAgentConfig            pcifleet.agent.invalid_config
    ├── NotFound                          (404) pcifleet.not_found
    ├── Conflict                          (409)
    │   ├── InvalidTransition             pcifleet.device.invalid_transition
    │   ├── ConcurrentUpdate              pcifleet.concurrent_update
    │   ├── AlreadyExists                 pcifleet.already_exists
    │   ├── MigrationRefused              pcifleet.migration.refused
    │   └── MigrationStateError           pcifleet.migration.state
    ├── Forbidden                         (403) pcifleet.forbidden
    ├── NoValidHost                       (409) pcifleet.schedule.no_valid_host
    ├── QuotaExceeded                     (403) pcifleet.quota.exceeded
    ├── HostError                         (500/502) host-side failures (sysfs, netlink, libvirt)
    │   ├── SysfsError                    pcifleet.host.sysfs
    │   ├── SriovConfigError              pcifleet.host.sriov_config
    │   ├── VfError                       pcifleet.host.vf (netlink write/read on a PF failed)
    │   │   ├── VfNotFound                pcifleet.host.vf_not_found (no such PF / VF index)
    │   │   ├── VfUnsupported             pcifleet.host.vf_unsupported (driver refuses)
    │   │   └── VfRollbackFailed          pcifleet.host.vf_rollback_failed
    │   ├── MacvtapError                  pcifleet.host.macvtap
    │   ├── PlugFailed                    pcifleet.host.plug_failed (agent plug, rolled back)
    │   └── HypervisorError               pcifleet.host.hypervisor (domain, operation, libvirt text)
    │       ├── DomainNotFound            pcifleet.host.domain_not_found (404)
    │       ├── DomainXmlRejected         pcifleet.host.domain_xml_rejected (400)
    │       ├── HypervisorUnsupported     pcifleet.host.hypervisor_unsupported (501)
    │       ├── HypervisorUnavailable     pcifleet.host.hypervisor_unavailable (503)
    │       ├── DeviceNotAttached         pcifleet.host.device_not_attached (404)
    │       └── HypervisorConflict        pcifleet.host.hypervisor_conflict (409)
    │           ├── DomainExists          pcifleet.host.domain_exists
    │           ├── DomainStateError      pcifleet.host.domain_state
    │           └── DeviceAlreadyAttached pcifleet.host.device_already_attached
    └── Unavailable                       (503) pcifleet.unavailable

Subclasses set ``code``, ``status`` and ``template``; modules add their own subclasses under
the branch that fits. ``str(err)`` is the rendered message.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self


class PcifleetError(Exception):
    """Base of every error pcifleet raises on purpose."""

    code: ClassVar[str] = "pcifleet.error"
    status: ClassVar[int] = 500
    template: ClassVar[str] = "{detail}"

    def __init__(self, detail: str = "", /, **fields: Any) -> None:
        self.fields: dict[str, Any] = {"detail": detail, **fields}
        try:
            message = self.template.format(**self.fields)
        except (KeyError, IndexError, ValueError):
            message = detail or self.template
        self.message = message
        super().__init__(message)

    @classmethod
    def rendered(cls, message: str, /, **fields: Any) -> Self:
        """The error with a message that is already rendered, e.g. decoded from an API error
        document: the template is not applied a second time."""
        error = cls.__new__(cls)
        error.fields = {"detail": message, **fields}
        error.message = message
        Exception.__init__(error, message)
        return error

    @property
    def title(self) -> str:
        """A short human title derived from the code (``invalid_address`` -> "Invalid address")."""
        last = self.code.rsplit(".", 1)[-1]
        return last.replace("_", " ").capitalize()


class InvalidInput(PcifleetError):
    code = "pcifleet.invalid_input"
    status = 400


class InvalidAddress(InvalidInput):
    code = "pcifleet.address.invalid"
    template = "PCI address {value!r}: {detail}"


class InvalidAddressPattern(InvalidInput):
    code = "pcifleet.address.invalid_pattern"
    template = "PCI address pattern {value!r}: {detail}"


class InvalidSpec(InvalidInput):
    code = "pcifleet.spec.invalid"
    template = "Invalid [pci]device_spec config: {detail}"


class InvalidSpecAddress(InvalidSpec):
    """An address glob or regex in a spec; ``detail`` carries Nova's full message."""

    code = "pcifleet.spec.invalid_address"
    template = "{detail}"


class InvalidSpecCombination(InvalidSpec):
    """Keys that cannot go together, or a spec the host contradicts (Nova's own texts)."""

    code = "pcifleet.spec.invalid_combination"
    template = "{detail}"


class InvalidGroup(InvalidInput):
    code = "pcifleet.group.invalid"
    template = "Invalid PCI alias definition: {detail}"


class InvalidGroupSet(InvalidGroup):
    """A check across all groups (Nova's alias id checks); ``detail`` is the whole message."""

    code = "pcifleet.group.invalid_set"
    template = "{detail}"


class InvalidRequest(InvalidInput):
    code = "pcifleet.request.invalid"


class UnknownGroup(InvalidRequest):
    code = "pcifleet.request.unknown_group"
    template = "PCI alias {name} is not defined"


class NumaPolicyConflict(InvalidRequest):
    code = "pcifleet.request.numa_policy_conflict"
    status = 403


class InvalidFlavor(InvalidInput):
    code = "pcifleet.flavor.invalid"


class InvalidProfile(InvalidInput):
    code = "pcifleet.sim.invalid_profile"


class InvalidWorkload(InvalidInput):
    """A benchmark workload (``shared/workloads``) that cannot be read; names file and field."""

    code = "pcifleet.sim.invalid_workload"
    template = "workload {file}, {field}: {detail}"


class InvalidNetwork(InvalidInput):
    code = "pcifleet.network.invalid"


class InvalidGuestSpec(InvalidInput):
    """A guest definition the libvirt renderer cannot express (names the field and rule)."""

    code = "pcifleet.guest.invalid"


class InvalidVfSetting(InvalidInput):
    """A VF setting the kernel would refuse (VLAN range, QoS priority, multicast MAC, ...)."""

    code = "pcifleet.vf.invalid_setting"
    template = "VF setting {field}: {detail}"


class InvalidVfRate(InvalidVfSetting):
    """A QoS rate a VF cannot enforce as asked (range, burst, minimum above maximum)."""

    code = "pcifleet.vf.invalid_rate"


class InvalidAgentConfig(InvalidInput):
    """Agent options in Neutron's terms (``physical_device_mappings``, ``exclude_devices``)."""

    code = "pcifleet.agent.invalid_config"
    template = "{option}: entry {entry!r}: {detail}"


class NotFound(PcifleetError):
    code = "pcifleet.not_found"
    status = 404


class Conflict(PcifleetError):
    code = "pcifleet.conflict"
    status = 409


class InvalidTransition(Conflict):
    code = "pcifleet.device.invalid_transition"


class ConcurrentUpdate(Conflict):
    code = "pcifleet.concurrent_update"


class AlreadyExists(Conflict):
    code = "pcifleet.already_exists"


class MigrationRefused(Conflict):
    """A live migration the plan refuses (a device that cannot move), or no destination."""

    code = "pcifleet.migration.refused"


class MigrationStateError(Conflict):
    """complete/abort without a migration in flight, or a second migration of one guest."""

    code = "pcifleet.migration.state"


class Forbidden(PcifleetError):
    code = "pcifleet.forbidden"
    status = 403


class Unauthorized(PcifleetError):
    code = "pcifleet.unauthorized"
    status = 401


class NoValidHost(PcifleetError):
    code = "pcifleet.schedule.no_valid_host"
    status = 409


class QuotaExceeded(PcifleetError):
    code = "pcifleet.quota.exceeded"
    status = 403


class HostError(PcifleetError):
    code = "pcifleet.host.error"
    status = 502


class SysfsError(HostError):
    code = "pcifleet.host.sysfs"


class SriovConfigError(HostError):
    code = "pcifleet.host.sriov_config"
    status = 409


class VfError(HostError):
    """A VF read or write on a PF failed; names PF, VF index, field and the kernel's errno text."""

    code = "pcifleet.host.vf"
    template = "PF {pf}, VF {vf}, {field}: {detail}"


class VfNotFound(VfError):
    """No such PF netdev (ENODEV), or the VF index is not below the PF's VF count."""

    code = "pcifleet.host.vf_not_found"


class VfUnsupported(VfError):
    """The PF's driver does not implement this VF setting (EOPNOTSUPP)."""

    code = "pcifleet.host.vf_unsupported"


class VfRollbackFailed(VfError):
    """A write failed and undoing the writes before it failed too: the VF is left changed."""

    code = "pcifleet.host.vf_rollback_failed"


class MacvtapError(HostError):
    """Creating, reading or deleting a macvtap link failed (names link, step, errno text)."""

    code = "pcifleet.host.macvtap"
    template = "macvtap {ifname}, {step}: {detail}"


class PlugFailed(HostError):
    """The agent could not plug or unplug an instance; what it had done was rolled back."""

    code = "pcifleet.host.plug_failed"
    template = "instance {instance}, {step}: {detail}"


class HypervisorError(HostError):
    """A hypervisor call failed; names the domain, the operation and the hypervisor's text."""

    code = "pcifleet.host.hypervisor"
    template = "domain {domain}, {operation}: {detail}"


class DomainNotFound(HypervisorError):
    code = "pcifleet.host.domain_not_found"
    status = 404


class DomainXmlRejected(HypervisorError):
    """The hypervisor's parser refused a domain or device XML (a renderer bug or bad input)."""

    code = "pcifleet.host.domain_xml_rejected"
    status = 400


class HypervisorUnsupported(HypervisorError):
    """The connection's driver does not implement the operation (libvirt's test driver: hot
    plug, migration)."""

    code = "pcifleet.host.hypervisor_unsupported"
    status = 501


class HypervisorUnavailable(HypervisorError):
    """No connection to the hypervisor (daemon down, wrong URI, destination unreachable)."""

    code = "pcifleet.host.hypervisor_unavailable"
    status = 503


class DeviceNotAttached(HypervisorError):
    """Detach of a device the domain does not have."""

    code = "pcifleet.host.device_not_attached"
    status = 404


class HypervisorConflict(HypervisorError):
    code = "pcifleet.host.hypervisor_conflict"
    status = 409


class DomainExists(HypervisorConflict):
    """Another domain already has this name or UUID."""

    code = "pcifleet.host.domain_exists"


class DomainStateError(HypervisorConflict):
    """The domain is not in a state that allows the operation (start a running one, ...)."""

    code = "pcifleet.host.domain_state"


class DeviceAlreadyAttached(HypervisorConflict):
    """The domain already has a device with this PCI address or MAC."""

    code = "pcifleet.host.device_already_attached"


class Unavailable(PcifleetError):
    code = "pcifleet.unavailable"
    status = 503
