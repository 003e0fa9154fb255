"""SR-IOV agent options in Neutron's terms, and which PFs serve which physical network.

``physical_device_mappings`` (``[sriov_nic]`` in Neutron's agent) lists ``physnet:ifname``
pairs, comma separated; a physical network may have several NICs (``physnet2:eth3,physnet2:eth4``)
but a NIC serves one physical network. ``exclude_devices`` lists ``ifname:addr;addr`` per PF,
comma separated, split on the first ``:`` only because PCI addresses contain colons; every
ifname there must be a mapped one (Neutron's agent refuses to start otherwise).

Both parsers accept the option as one string (as written in a config file) or as a list of
entries (as a ListOpt or a YAML list gives it); blank entries are skipped, as Neutron does.
Every error names the option, the entry and the rule (``InvalidAgentConfig``).

``plan_physnets`` is pure: given the options and what discovery saw (PF netdev names, PCI
addresses and VF addresses, as plain values), it says which PFs serve which physical network,
which VFs are offered and which are excluded, which mapped NICs are absent, and which exclusions
name an address that is not a VF of that PF. The scheduler offers only VFs of PFs mapped to the
requested physical network.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from pcifleet.domain.address import PciAddress
from pcifleet.domain.errors import InvalidAddress, InvalidAgentConfig
from pcifleet.host.vf.model import is_valid_ifname

MAPPINGS_OPTION: Final = "physical_device_mappings"
EXCLUDE_OPTION: Final = "exclude_devices"


def _entries(value: str | Sequence[str], option: str) -> list[str]:
    if isinstance(value, str):
        raw = value.split(",")
    elif isinstance(value, Sequence) and all(isinstance(item, str) for item in value):
        raw = list(value)
    else:
        raise InvalidAgentConfig(
            "must be a string or a list of strings", option=option, entry=value, rule="type"
        )
    return [entry.strip() for entry in raw if entry.strip()]


def _ifname(name: str, option: str, entry: str) -> str:
    if not name:
        raise InvalidAgentConfig(
            "the interface name before ':' is empty",
            option=option,
            entry=entry,
            rule="missing_ifname",
        )
    if not is_valid_ifname(name):
        raise InvalidAgentConfig(
            f"{name!r} is not an interface name (1..15 characters, no blanks, '/' or ':')",
            option=option,
            entry=entry,
            rule="ifname",
        )
    return name


@dataclass(frozen=True, slots=True)
class DeviceMapping:
    physnet: str
    ifname: str


@dataclass(frozen=True, slots=True)
class PhysicalDeviceMappings:
    """``physnet:ifname`` pairs in configuration order."""

    entries: tuple[DeviceMapping, ...] = ()

    @classmethod
    def parse(cls, value: str | Sequence[str]) -> PhysicalDeviceMappings:
        entries: list[DeviceMapping] = []
        seen: dict[str, str] = {}
        for entry in _entries(value, MAPPINGS_OPTION):
            mapping = _parse_mapping(entry)
            if mapping.ifname in seen:
                raise InvalidAgentConfig(
                    f"interface {mapping.ifname} is already mapped to {seen[mapping.ifname]}; "
                    "a NIC serves one physical network",
                    option=MAPPINGS_OPTION,
                    entry=entry,
                    rule="duplicate_ifname",
                )
            seen[mapping.ifname] = mapping.physnet
            entries.append(mapping)
        return cls(tuple(entries))

    def physnets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m.physnet for m in self.entries))

    def devices(self, physnet: str) -> tuple[str, ...]:
        return tuple(m.ifname for m in self.entries if m.physnet == physnet)

    def physnet_of(self, ifname: str) -> str | None:
        return next((m.physnet for m in self.entries if m.ifname == ifname), None)

    def as_report(self) -> dict[str, list[str]]:
        """Neutron's ``configurations.device_mappings``: physnet -> [ifname, ...]."""
        return {physnet: list(self.devices(physnet)) for physnet in self.physnets()}


def _parse_mapping(entry: str) -> DeviceMapping:
    parts = entry.split(":")
    if len(parts) != 2:
        raise InvalidAgentConfig(
            "expected physnet:ifname (exactly one ':')",
            option=MAPPINGS_OPTION,
            entry=entry,
            rule="format",
        )
    physnet, ifname = (part.strip() for part in parts)
    if not physnet or any(ch.isspace() for ch in physnet):
        raise InvalidAgentConfig(
            "the physical network name before ':' is empty or contains blanks",
            option=MAPPINGS_OPTION,
            entry=entry,
            rule="missing_physnet" if not physnet else "physnet",
        )
    return DeviceMapping(physnet, _ifname(ifname, MAPPINGS_OPTION, entry))


@dataclass(frozen=True, slots=True)
class ExcludeDevices:
    """VF addresses held out of use, per PF netdev, in configuration order."""

    entries: tuple[tuple[str, frozenset[PciAddress]], ...] = ()

    @classmethod
    def parse(cls, value: str | Sequence[str]) -> ExcludeDevices:
        entries: list[tuple[str, frozenset[PciAddress]]] = []
        owner: dict[PciAddress, str] = {}
        for entry in _entries(value, EXCLUDE_OPTION):
            ifname, addresses = _parse_exclusion(entry)
            if any(ifname == name for name, _ in entries):
                raise InvalidAgentConfig(
                    f"interface {ifname} appears twice; list all its addresses in one entry",
                    option=EXCLUDE_OPTION,
                    entry=entry,
                    rule="duplicate_ifname",
                )
            for address in addresses:
                if address in owner:
                    raise InvalidAgentConfig(
                        f"address {address} is already excluded for {owner[address]}",
                        option=EXCLUDE_OPTION,
                        entry=entry,
                        rule="duplicate_address",
                    )
                owner[address] = ifname
            entries.append((ifname, frozenset(addresses)))
        return cls(tuple(entries))

    def ifnames(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.entries)

    def excluded(self, ifname: str) -> frozenset[PciAddress]:
        return next((addresses for name, addresses in self.entries if name == ifname), frozenset())


def _parse_exclusion(entry: str) -> tuple[str, list[PciAddress]]:
    ifname, colon, rest = entry.partition(":")
    if not colon:
        raise InvalidAgentConfig(
            "expected ifname:address;address (a ':' after the interface name)",
            option=EXCLUDE_OPTION,
            entry=entry,
            rule="format",
        )
    name = _ifname(ifname.strip(), EXCLUDE_OPTION, entry)
    addresses: list[PciAddress] = []
    for text in (part.strip() for part in rest.split(";")):
        if not text:
            continue
        try:
            address = PciAddress.parse(text)
        except InvalidAddress as error:
            raise InvalidAgentConfig(
                str(error), option=EXCLUDE_OPTION, entry=entry, rule="address"
            ) from error
        if address in addresses:
            raise InvalidAgentConfig(
                f"address {address} is listed twice",
                option=EXCLUDE_OPTION,
                entry=entry,
                rule="duplicate_address",
            )
        addresses.append(address)
    return name, addresses


@dataclass(frozen=True, slots=True)
class AgentMappings:
    """Both options, checked against each other."""

    devices: PhysicalDeviceMappings
    excludes: ExcludeDevices

    @classmethod
    def parse(
        cls,
        physical_device_mappings: str | Sequence[str],
        exclude_devices: str | Sequence[str] = (),
    ) -> AgentMappings:
        devices = PhysicalDeviceMappings.parse(physical_device_mappings)
        excludes = ExcludeDevices.parse(exclude_devices)
        mapped = {m.ifname for m in devices.entries}
        for ifname, addresses in excludes.entries:
            if ifname not in mapped:
                raise InvalidAgentConfig(
                    f"interface {ifname} is not in {MAPPINGS_OPTION}",
                    option=EXCLUDE_OPTION,
                    entry=f"{ifname}:{';'.join(str(a) for a in sorted(addresses))}",
                    rule="unmapped_ifname",
                )
        return cls(devices, excludes)


@dataclass(frozen=True, slots=True)
class PfSeen:
    """What discovery saw of one PF, as plain values."""

    ifname: str
    address: PciAddress
    vf_addresses: tuple[PciAddress, ...] = ()


@dataclass(frozen=True, slots=True)
class PhysnetPf:
    """A present, mapped PF: the VFs it offers on its physical network and those held out."""

    physnet: str
    ifname: str
    address: PciAddress
    vfs: tuple[PciAddress, ...]
    excluded: tuple[PciAddress, ...]


@dataclass(frozen=True, slots=True)
class PhysnetPlan:
    pfs: tuple[PhysnetPf, ...]
    #: mapped NICs discovery did not see (unplugged, renamed, given away as direct-physical)
    missing: tuple[DeviceMapping, ...]
    #: excluded addresses that are not VFs of the PF named with them
    unknown_exclusions: tuple[tuple[str, PciAddress], ...]

    def device_mappings(self) -> dict[str, list[str]]:
        """physnet -> present PF ifnames, in configuration order."""
        report: dict[str, list[str]] = {}
        for pf in self.pfs:
            report.setdefault(pf.physnet, []).append(pf.ifname)
        return report

    def excluded(self) -> frozenset[PciAddress]:
        return frozenset(address for pf in self.pfs for address in pf.excluded)

    def physnet_of_vf(self, address: PciAddress) -> str | None:
        """The physical network a VF may be offered on; None when excluded or unmapped."""
        return next((pf.physnet for pf in self.pfs if address in pf.vfs), None)


def plan_physnets(mappings: AgentMappings, seen: Iterable[PfSeen]) -> PhysnetPlan:
    """Which PFs serve which physical network on this host, and which VFs are excluded."""
    by_name = {pf.ifname: pf for pf in seen}
    pfs: list[PhysnetPf] = []
    missing: list[DeviceMapping] = []
    unknown: list[tuple[str, PciAddress]] = []
    for mapping in mappings.devices.entries:
        pf = by_name.get(mapping.ifname)
        if pf is None:
            missing.append(mapping)
            continue
        held = mappings.excludes.excluded(pf.ifname)
        unknown.extend((pf.ifname, a) for a in sorted(held - set(pf.vf_addresses)))
        pfs.append(
            PhysnetPf(
                physnet=mapping.physnet,
                ifname=pf.ifname,
                address=pf.address,
                vfs=tuple(a for a in pf.vf_addresses if a not in held),
                excluded=tuple(a for a in pf.vf_addresses if a in held),
            )
        )
    return PhysnetPlan(tuple(pfs), tuple(missing), tuple(unknown))
