"""Device specs (the "whitelist"): which devices of a host are assignable, and their tags.

A spec is a list of selectors (:mod:`pcifleet.domain.selectors`) plus tags. A spec list is
evaluated in order and the **first** spec matching a device wins (Nova); its tags flow to the
device. Every key of Nova's ``[pci] device_spec`` is accepted with Nova's semantics and error
texts, so an operator can paste Nova's JSON values unchanged:

- selectors: ``vendor_id``, ``product_id`` (hex, ``%04x``, ``*`` = any), ``address`` (glob or
  regex, default ``*:*:*.*``), ``devname`` (blank = absent; not together with ``address``). A
  single ``address`` naming a PF, or a ``devname`` that is a PF, matches the PF **and** its VFs;
- tags: ``physical_network`` (may be JSON ``null``), ``trusted``, ``remote_managed`` (kept as
  written; a remote-managed spec only matches devices with a VPD card serial number, and may
  not name a PF), ``managed``, ``live_migratable``, ``one_time_use`` (bool-like, normalized to
  ``"true"``/``"false"``; ``one_time_use=true`` needs ``report_in_placement``), and any
  unknown key (a free-form tag). ``resource_class`` and ``traits`` stay on the spec for
  Placement-style reporting and never become device tags (Nova §1.6).

pcifleet adds selectors ``driver``, ``class``, ``numa_node``, ``pf`` (``"ens1f0#0-3,7"``) and
``pf_address`` (these key names are therefore not free-form tags), and **exclusions**: an entry
with ``"exclude": true`` holds selectors only; a device it matches is never assignable, wherever
the exclusion sits in the list (the management NIC, a VF kept for a DHCP agent).

Tag values are strings; JSON booleans become ``"true"``/``"false"``, numbers their decimal text,
``null`` drops the tag (an absent tag compares as None, exactly like Nova's ``null``). Lists
and objects are rejected (Nova would carry them into pools as unhashable keys).

Where Nova crashes or silently accepts nonsense, pcifleet rejects with a named field and rule:
non-string or negative ``vendor_id``/``product_id`` (``product_id`` is stripped like
``vendor_id``), list/object tag values, unknown keys inside a regex address. Nova's texts are
reproduced where the reference records them; the two remote-managed host errors
(devname not present, spec naming a PF) use pcifleet's own wording under Nova's rules.
Host-dependent rules (those Nova checks against sysfs when nova-compute starts) run in
:meth:`SpecList.check_host`, against a :class:`HostDevices` view, never against the OS.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device
from pcifleet.domain.errors import InvalidSpec, InvalidSpecCombination
from pcifleet.domain.selectors import (
    ANY,
    AddressSelector,
    DevnameSelector,
    HostDevices,
    ProductSelector,
    RemoteManagedSelector,
    Selector,
    VendorSelector,
    build_selector,
    sort_selectors,
)
from pcifleet.domain.tags import EMPTY_TAGS, Tags

__all__ = [
    "DeviceSpec",
    "HostDevices",
    "Qualification",
    "SpecList",
    "default_resource_class",
    "normalize_resource_class",
    "normalize_trait",
    "parse_bool_tag",
    "parse_spec_list",
]

# ------------------------------------------------------------------------ bool tags

TRUE_STRINGS: Final = ("1", "t", "true", "on", "y", "yes")
FALSE_STRINGS: Final = ("0", "f", "false", "off", "n", "no")
_ACCEPTABLE: Final = ", ".join(f"'{s}'" for s in sorted(TRUE_STRINGS + FALSE_STRINGS))


def _bool_or_none(value: object) -> bool | None:
    """oslo's ``bool_from_string`` core: bools as is, else the stripped lower-cased text."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_STRINGS:
        return True
    return False if text in FALSE_STRINGS else None


def parse_bool_tag(tag: str, value: object) -> bool:
    """Strict bool-like parsing, with Nova's message for anything else."""
    parsed = _bool_or_none(value)
    if parsed is None:
        raise InvalidSpec(
            f"Cannot parse tag '{tag}': Unrecognized value '{value}', "
            f"acceptable values are: {_ACCEPTABLE}",
            field=tag,
            rule="bool",
        )
    return parsed


# ------------------------------------------------------------ resource classes, traits

#: os-resource-classes' standard classes (a spec may name one instead of a CUSTOM_ class)
STANDARD_RESOURCE_CLASSES: Final = frozenset(
    {
        "VCPU",
        "MEMORY_MB",
        "DISK_GB",
        "PCI_DEVICE",
        "SRIOV_NET_VF",
        "NUMA_SOCKET",
        "NUMA_CORE",
        "NUMA_THREAD",
        "NUMA_MEMORY_MB",
        "IPV4_ADDRESS",
        "VGPU",
        "VGPU_DISPLAY_HEAD",
        "NET_BW_EGR_KILOBIT_PER_SEC",
        "NET_BW_IGR_KILOBIT_PER_SEC",
        "PCPU",
        "MEM_ENCRYPTION_CONTEXT",
        "FPGA",
        "PGPU",
        "NET_PACKET_RATE_KILOPACKET_PER_SEC",
        "NET_PACKET_RATE_EGR_KILOPACKET_PER_SEC",
        "NET_PACKET_RATE_IGR_KILOPACKET_PER_SEC",
    }
)
#: os-traits' top-level namespaces; a trait under one of them is taken as standard
STANDARD_TRAIT_NAMESPACES: Final = ("COMPUTE_", "HW_", "MISC_", "OWNER_", "STORAGE_")
_CUSTOM: Final = re.compile(r"CUSTOM_[A-Z0-9_]+")
_TOKEN: Final = re.compile(r"[A-Z0-9_]+")
_NOT_TOKEN: Final = re.compile(r"[^A-Z0-9_]+")


def _custom_name(upper: str) -> str:
    return "CUSTOM_" + _NOT_TOKEN.sub("_", upper)


def normalize_resource_class(name: str) -> str:
    """Nova's rule: upper-case; a standard class or a valid ``CUSTOM_`` name stays, anything
    else becomes ``CUSTOM_`` + the name with runs of other characters replaced by ``_``
    (``pgpu`` -> ``PGPU``, ``foobar`` -> ``CUSTOM_FOOBAR``, ``custom-foo`` ->
    ``CUSTOM_CUSTOM_FOO``, ``a###b`` -> ``CUSTOM_A_B``)."""
    upper = name.upper()
    if upper in STANDARD_RESOURCE_CLASSES or _CUSTOM.fullmatch(upper):
        return upper
    return _custom_name(upper)


def default_resource_class(vendor_id: str, product_id: str) -> str:
    """``CUSTOM_PCI_<VENDOR>_<PRODUCT>``, Nova's class for a device whose spec names none."""
    return f"CUSTOM_PCI_{vendor_id}_{product_id}".upper()


def normalize_trait(name: str) -> str:
    """Like resource classes; "standard" is approximated by os-traits' namespaces."""
    upper = name.strip().upper()
    if _CUSTOM.fullmatch(upper):
        return upper
    if upper.startswith(STANDARD_TRAIT_NAMESPACES) and _TOKEN.fullmatch(upper):
        return upper
    return _custom_name(upper)


# ----------------------------------------------------------------------- spec keys

NOVA_SELECTOR_KEYS: Final = ("vendor_id", "product_id", "address", "devname")
NATIVE_SELECTOR_KEYS: Final = ("driver", "class", "numa_node", "pf", "pf_address")
#: bool-like tags Nova normalizes to "true"/"false"
BOOL_TAGS: Final = ("managed", "live_migratable", "one_time_use")
#: kept on the spec for Placement-style reporting, never device tags
PLACEMENT_KEYS: Final = ("resource_class", "traits")
EXCLUDE_KEY: Final = "exclude"
REMOTE_MANAGED: Final = "remote_managed"

_BOTH_MESSAGE: Final = (
    "Invalid PCI Whitelist: The PCI whitelist can specify devname or address, but not both"
)


def _tag_text(key: str, value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise InvalidSpec(
        f"tag '{key}' ({value!r}) must be a string, a number, a bool or null",
        field=key,
        rule="tag_type",
    )


def _optional_text(key: str, value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidSpec(f"{key} ({value!r}) must be a string", field=key, rule="type")
    return value


def _parse_traits(value: object) -> tuple[str, ...]:
    text = _optional_text("traits", value)
    if text is None:
        return ()
    return tuple(sorted({normalize_trait(t) for t in text.split(",") if t.strip()}))


@dataclass(frozen=True, slots=True)
class _Tagging:
    """What the tag keys of one entry parse into."""

    tags: Tags
    remote_managed: bool
    resource_class: str | None
    traits: tuple[str, ...]


def _parse_tags(entry: Mapping[str, object], report_in_placement: bool) -> _Tagging:
    tags: dict[str, str] = {}
    for key, value in entry.items():
        if key in NOVA_SELECTOR_KEYS or key in NATIVE_SELECTOR_KEYS or key == EXCLUDE_KEY:
            continue
        if key in PLACEMENT_KEYS:
            continue
        if key in BOOL_TAGS and value is not None:
            tags[key] = "true" if parse_bool_tag(key, value) else "false"
            continue
        text = _tag_text(key, value)
        if text is not None:
            tags[key] = text
    if tags.get("one_time_use") == "true" and not report_in_placement:
        raise InvalidSpec(
            "one_time_use=true requires pci.report_in_placement to be enabled",
            field="one_time_use",
            rule="requires_placement",
        )
    rc = _optional_text("resource_class", entry.get("resource_class"))
    return _Tagging(
        tags=Tags(tags) if tags else EMPTY_TAGS,
        remote_managed=_bool_or_none(entry.get(REMOTE_MANAGED)) is True,
        resource_class=None if rc is None else normalize_resource_class(rc),
        traits=_parse_traits(entry.get("traits")),
    )


def _location_selector(entry: Mapping[str, object]) -> Selector | None:
    """``address`` or ``devname`` (Nova: both truthy is an error; blank means absent)."""
    address = entry.get("address")
    devname = entry.get("devname")
    if address and devname:
        raise InvalidSpecCombination(_BOTH_MESSAGE, field="devname", rule="devname_and_address")
    if devname:
        return build_selector("devname", devname)
    return build_selector("address", address) if address else None


def _selectors(entry: Mapping[str, object]) -> list[Selector]:
    found: list[Selector | None] = [
        build_selector("vendor_id", entry.get("vendor_id", ANY)),
        build_selector("product_id", entry.get("product_id", ANY)),
        _location_selector(entry),
    ]
    found.extend(build_selector(k, entry[k]) for k in NATIVE_SELECTOR_KEYS if k in entry)
    return [s for s in found if s is not None]


# ----------------------------------------------------------------------- the spec


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One entry of the spec list: selectors (all must match) and what flows to the device."""

    selectors: tuple[Selector, ...]
    #: tags that flow to matched devices (and so become pool keys)
    tags: Tags = EMPTY_TAGS
    #: normalized; None means the device's default ``CUSTOM_PCI_<VENDOR>_<PRODUCT>``
    resource_class: str | None = None
    traits: tuple[str, ...] = ()
    #: an exclusion: matched devices are never assignable
    exclude: bool = False
    remote_managed: bool = False
    #: the entry as written, for messages
    source: str = field(default="", compare=False)

    @classmethod
    def parse(cls, entry: Mapping[str, object], *, report_in_placement: bool = False) -> DeviceSpec:
        """Parse one ``device_spec`` dict (Nova's keys and pcifleet's native ones)."""
        for key in entry:
            if not isinstance(key, str):
                raise InvalidSpec(f"key {key!r} must be a string", field=str(key), rule="type")
        exclude = entry.get(EXCLUDE_KEY)
        excluded = exclude is not None and parse_bool_tag(EXCLUDE_KEY, exclude)
        selectors = _selectors(entry)
        tagging = _parse_tags(entry, report_in_placement)
        if report_in_placement and entry.get("devname"):
            raise InvalidSpecCombination(
                "Invalid [pci]device_spec configuration. PCI Placement reporting does not "
                f"support 'devname' based device specification but we got {dict(entry)}. "
                "Please use PCI address in the configuration instead.",
                field="devname",
                rule="devname_with_placement",
            )
        if excluded:
            _check_exclusion(entry, tagging)
        if tagging.remote_managed:
            selectors.append(RemoteManagedSelector())
        return cls(
            selectors=sort_selectors(selectors),
            tags=tagging.tags,
            resource_class=tagging.resource_class,
            traits=tagging.traits,
            exclude=excluded,
            remote_managed=tagging.remote_managed,
            source=json.dumps(dict(entry), sort_keys=True, default=str),
        )

    def matches(self, device: Device, host: HostDevices) -> bool:
        # a plain loop: measurably faster than all(<generator>) on this hot path
        for selector in self.selectors:  # noqa: SIM110
            if not selector.matches(device, host):
                return False
        return True

    def first_miss(self, device: Device, host: HostDevices) -> Selector | None:
        """The first selector refusing ``device``, None when the spec matches it."""
        for selector in self.selectors:
            if not selector.matches(device, host):
                return selector
        return None

    def describe(self) -> str:
        """``vendor_id 8086, address *:0a:00.*`` (``any device`` when unconstrained)."""
        text = ", ".join(s.describe() for s in self.selectors) or "any device"
        return f"exclude {text}" if self.exclude else text

    def selector(self, key: str) -> Selector | None:
        return next((s for s in self.selectors if s.key == key), None)

    @property
    def vendor_ids(self) -> frozenset[str] | None:
        """The vendors this spec accepts; None when any vendor."""
        return _ids(self, VendorSelector)

    def pf_named(self, host: HostDevices) -> Device | None:
        """The PF this spec names on ``host`` by a single address or a devname, if any."""
        address = self.selector("address")
        if isinstance(address, AddressSelector):
            pf = address.pf_address(host)
            return None if pf is None else host[pf]
        devname = self.selector("devname")
        if isinstance(devname, DevnameSelector):
            owner = host.by_netdev(devname.name)
            return owner if owner is not None and owner.is_pf else None
        return None

    @property
    def physical_network(self) -> str | None:
        return self.tags.get("physical_network")

    @property
    def managed(self) -> bool:
        """Nova: an absent ``managed`` tag behaves as true."""
        return self.tags.get("managed", "true") == "true"

    @property
    def live_migratable(self) -> bool:
        return self.tags.get("live_migratable") == "true"

    @property
    def one_time_use(self) -> bool:
        return self.tags.get("one_time_use") == "true"

    def resource_class_for(self, device: Device) -> str:
        return self.resource_class or default_resource_class(device.vendor_id, device.product_id)


def _check_exclusion(entry: Mapping[str, object], tagging: _Tagging) -> None:
    extra = sorted(set(tagging.tags) | {k for k in PLACEMENT_KEYS if entry.get(k)})
    if extra:
        raise InvalidSpec(
            f"an exclusion (exclude=true) takes selectors only, not tags: {', '.join(extra)}",
            field=extra[0],
            rule="exclusion_tags",
        )


# -------------------------------------------------------------------- qualification


@dataclass(frozen=True, slots=True)
class Qualification:
    """The spec list's verdict on one device.

    ``spec_index`` is the position (in the list as written) of the spec that matched, or of
    the exclusion that excluded the device; None when nothing matched. :meth:`reasons` says
    why a device is not assignable ("spec 2: vendor_id 15b3 != 8086"); it is computed on
    demand, since most callers only need the verdict.
    """

    device: Device
    assignable: bool
    spec_index: int | None = None
    excluded: bool = False
    spec: DeviceSpec | None = None
    _specs: SpecList | None = field(default=None, repr=False, compare=False)
    _host: HostDevices | None = field(default=None, repr=False, compare=False)

    @property
    def tags(self) -> Tags:
        """The tags that flow to the device (empty unless assignable)."""
        return self.spec.tags if self.assignable and self.spec is not None else EMPTY_TAGS

    @property
    def resource_class(self) -> str | None:
        if not self.assignable or self.spec is None:
            return None
        return self.spec.resource_class_for(self.device)

    @property
    def traits(self) -> tuple[str, ...]:
        return self.spec.traits if self.assignable and self.spec is not None else ()

    def reasons(self) -> tuple[str, ...]:
        if self.assignable:
            return ()
        if self.excluded:
            return (f"excluded by spec {self.spec_index}",)
        if self._specs is None or self._host is None or not self._specs.specs:
            return ("no device spec configured",)
        return self._specs.misses(self.device, self._host)

    def explain(self) -> str:
        if self.assignable:
            return f"assignable by spec {self.spec_index}"
        return "; ".join(self.reasons())


_Indexed = tuple[tuple[int, DeviceSpec], ...]


@dataclass(frozen=True, slots=True)
class _VendorIndex:
    """The specs that can match a device of a given vendor, in list order.

    Most specs name a vendor; looking candidates up by the device's vendor keeps a host of
    hundreds of devices against a dozen specs at a few milliseconds.
    """

    by_vendor: Mapping[str, _Indexed]
    any_vendor: _Indexed

    @classmethod
    def build(cls, pairs: _Indexed) -> _VendorIndex:
        vendors = {v for _, spec in pairs for v in spec.vendor_ids or ()}
        return cls(
            {v: tuple(p for p in pairs if v in (p[1].vendor_ids or {v})) for v in vendors},
            tuple(p for p in pairs if p[1].vendor_ids is None),
        )

    def candidates(self, vendor_id: str) -> _Indexed:
        return self.by_vendor.get(vendor_id, self.any_vendor)


@dataclass(frozen=True, slots=True)
class SpecList:
    """The ordered spec list; exclusions first, then the first matching spec wins."""

    specs: tuple[DeviceSpec, ...] = ()
    _includes: _VendorIndex = field(init=False, repr=False, compare=False)
    _excludes: _VendorIndex = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        indexed = tuple(enumerate(self.specs))
        includes = tuple(p for p in indexed if not p[1].exclude)
        excludes = tuple(p for p in indexed if p[1].exclude)
        object.__setattr__(self, "_includes", _VendorIndex.build(includes))
        object.__setattr__(self, "_excludes", _VendorIndex.build(excludes))

    def __len__(self) -> int:
        return len(self.specs)

    def __iter__(self) -> Iterator[DeviceSpec]:
        return iter(self.specs)

    def qualify(self, device: Device, host: HostDevices) -> Qualification:
        vendor = device.vendor_id
        for index, spec in self._excludes.candidates(vendor):
            if spec.matches(device, host):
                return Qualification(device, False, index, True, spec, self, host)
        for index, spec in self._includes.candidates(vendor):
            if spec.matches(device, host):
                return Qualification(device, True, index, False, spec, self, host)
        return Qualification(device, False, None, False, None, self, host)

    def qualify_all(
        self, devices: Iterable[Device] | HostDevices, *, check: bool = True
    ) -> dict[PciAddress, Qualification]:
        """Qualify every device of one host, in address order.

        With ``check`` (the default) the host-dependent rules are verified first (see
        :meth:`check_host`), as Nova does when the compute service starts.
        """
        host = devices if isinstance(devices, HostDevices) else HostDevices(devices)
        if check:
            self.check_host(host)
        qualify = self.qualify
        return {address: qualify(host[address], host) for address in host.ordered()}

    def misses(self, device: Device, host: HostDevices) -> tuple[str, ...]:
        """For each spec, why it does not take ``device`` (matching specs are skipped)."""
        reasons = []
        for index, spec in enumerate(self.specs):
            miss = spec.first_miss(device, host)
            if miss is None:
                verdict = "excludes it" if spec.exclude else "matches"
                reasons.append(f"spec {index}: {verdict}")
            else:
                reasons.append(f"spec {index}: {miss.why_not(device, host)}")
        return tuple(reasons)

    def check_host(self, host: HostDevices) -> None:
        """Rules Nova checks against the host when it starts: a remote-managed spec must
        resolve (devname present) and must select VFs, not a PF (§1.5)."""
        for spec in self.specs:
            if spec.remote_managed:
                _check_remote_managed(spec, host)


def _check_remote_managed(spec: DeviceSpec, host: HostDevices) -> None:
    devname = spec.selector("devname")
    if isinstance(devname, DevnameSelector) and host.by_netdev(devname.name) is None:
        raise InvalidSpecCombination(
            "Invalid PCI Whitelist: a device specified with devname "
            f"'{devname.name}' and remote_managed=true is not present on the host",
            field="devname",
            rule="remote_managed_not_present",
        )
    pf = spec.pf_named(host)
    if pf is None:
        return
    vendors = _ids(spec, VendorSelector)
    products = _ids(spec, ProductSelector)
    vfs = host.vfs_of(pf.address)
    vf_product = vfs[0].product_id if vfs else None
    vendor_ok = vendors is None or pf.vendor_id in vendors
    if vendor_ok and products is not None and vf_product in products:
        return
    if vendor_ok and (products is None or pf.product_id in products):
        raise InvalidSpecCombination(
            f"Invalid PCI Whitelist: the PCI address {pf.address} is a PF; remote_managed "
            "specs must select VFs (give the VF product_id to select the PF's VFs)",
            field="remote_managed",
            rule="remote_managed_pf",
        )
    raise InvalidSpec(
        f"the specified VF vendor ID {_ids_text(vendors)} and product ID "
        f"{_ids_text(products)} do not match the expected VF IDs based on the corresponding "
        f"PF identified by PCI address {pf.address}",
        field="product_id",
        rule="remote_managed_vf_ids",
    )


def _ids(spec: DeviceSpec, kind: type[VendorSelector]) -> frozenset[str] | None:
    found = spec.selector(kind.key)
    return found.ids if isinstance(found, VendorSelector) else None


def _ids_text(ids: frozenset[str] | None) -> str:
    return ANY if ids is None else ",".join(sorted(ids))


# ----------------------------------------------------------------------- parsing


def _entries(value: str | Mapping[str, object] | Sequence[object]) -> list[object]:
    """Nova's ``Whitelist`` shape: each value is a JSON dict or a JSON list of dicts."""
    if isinstance(value, str):
        try:
            parsed: object = json.loads(value)
        except ValueError:
            raise InvalidSpec(
                f"Invalid entry: '{value}'", field="device_spec", rule="json"
            ) from None
        if not isinstance(parsed, dict | list):
            raise InvalidSpec(
                f"Invalid entry: '{value}'; Expecting list or dict",
                field="device_spec",
                rule="type",
            )
    else:
        parsed = value
    return [parsed] if isinstance(parsed, Mapping) else list(parsed)


def parse_spec_list(
    values: Iterable[str | Mapping[str, object] | Sequence[object]],
    *,
    report_in_placement: bool = False,
) -> SpecList:
    """Parse ``[pci] device_spec`` values: JSON strings (as in nova.conf) or already-parsed
    dicts / lists of dicts (native YAML). Order is kept: the first matching spec wins."""
    specs = []
    for value in values:
        for entry in _entries(value):
            if not isinstance(entry, Mapping):
                raise InvalidSpec(
                    f"Invalid entry: '{entry}'; Expecting dict", field="device_spec", rule="type"
                )
            specs.append(DeviceSpec.parse(entry, report_in_placement=report_in_placement))
    return SpecList(tuple(specs))
