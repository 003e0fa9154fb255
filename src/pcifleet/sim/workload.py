"""Scheduling workloads (``shared/workloads/<name>/``) read into pcifleet's domain.

A workload folder holds ``fleet.json`` (one host template, the list of hosts, Nova's
``[pci] device_spec`` and ``[pci] alias``), ``requests.json`` (boot requests replayed in
``index`` order, each with Nova's own ``pci_requests``) and, for some, ``nova-decisions.json``
(what Nova decided for each request). See ``shared/workloads/README.md``.

Reading goes through the same domain code an operator coming from Nova uses, so a replay
exercises the real paths:

- the template's ``pci_devices`` (Nova's device dicts) become :class:`Device` records, which
  Nova's ``device_spec`` qualifies exactly as on a real host: only assignable devices are
  kept (the agents report those) and spec tags such as ``physical_network`` flow to them;
- ``alias`` values become device groups through :func:`groups_from_nova_alias`;
- each request's flavor becomes a :class:`Flavor` (from its extra specs), its alias requests
  come from :func:`device_requests_for_flavor` and its ports' requests from
  :func:`port_device_request`. Both are then checked against Nova's ``pci_requests`` (same
  order, count, requester, effective NUMA policy and spec alternatives), so a replay can never
  silently ask for something else than Nova was asked for. The requests reuse Nova's
  ``request_id`` values.

Requests may reuse one flavor name with different extra specs (``pci.medium`` with and without
an alias); each distinct flavor gets its own registered name (see :func:`flavor_names`).

Malformed files raise :class:`InvalidWorkload` naming the file and the field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceType
from pcifleet.domain.errors import InvalidWorkload, PcifleetError
from pcifleet.domain.flavor import Flavor, PageSizeKind, device_requests_for_flavor
from pcifleet.domain.group import DeviceGroup
from pcifleet.domain.nova import device_spec_from_nova, groups_from_nova_alias
from pcifleet.domain.numa import HugePages, NumaCell
from pcifleet.domain.placement import CpuPolicy, InstanceRequest
from pcifleet.domain.request import (
    DeviceMatch,
    DeviceRequest,
    NumaPolicy,
    RequesterKind,
    RequestIdFactory,
)
from pcifleet.domain.selectors import HostDevices
from pcifleet.domain.spec import SpecList
from pcifleet.domain.vnic import VnicType, parse_vnic_type, port_device_request

FLEET_FILE: Final = "fleet.json"
REQUESTS_FILE: Final = "requests.json"
DECISIONS_FILE: Final = "nova-decisions.json"
#: the base page size; discovery reports only huge page pools
_SMALL_PAGE_KB: Final = 4

# ----------------------------------------------------------------------------- JSON access


class _Node:
    """One JSON value and where it sits (file and field path), for errors that name them."""

    __slots__ = ("file", "path", "value")

    def __init__(self, file: str, path: str, value: object) -> None:
        self.file = file
        self.path = path
        self.value = value

    def fail(self, detail: str, rule: str) -> InvalidWorkload:
        return InvalidWorkload(detail, file=self.file, field=self.path or "(top)", rule=rule)

    def _child_path(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def _object(self) -> Mapping[str, object]:
        if not isinstance(self.value, dict):
            raise self.fail("expected an object", "type")
        return self.value

    def __getitem__(self, key: str) -> _Node:
        mapping = self._object()
        if mapping.get(key) is None:
            raise _Node(self.file, self._child_path(key), None).fail("is required", "required")
        return _Node(self.file, self._child_path(key), mapping[key])

    def get(self, key: str) -> _Node | None:
        """The member ``key``, or None when it is absent or JSON null."""
        value = self._object().get(key)
        return None if value is None else _Node(self.file, self._child_path(key), value)

    def items(self) -> Iterator[_Node]:
        if not isinstance(self.value, list):
            raise self.fail("expected a list", "type")
        return (_Node(self.file, self._child_path(i), v) for i, v in enumerate(self.value))

    def text(self) -> str:
        if not isinstance(self.value, str):
            raise self.fail("expected a string", "type")
        return self.value

    def integer(self) -> int:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise self.fail("expected an integer", "type")
        return self.value

    def number(self) -> float:
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            raise self.fail("expected a number", "type")
        return float(self.value)

    def str_map(self) -> dict[str, str]:
        mapping = self._object()
        for key, value in mapping.items():
            if not isinstance(value, str):
                raise _Node(self.file, self._child_path(key), value).fail(
                    "expected a string", "type"
                )
        return {str(k): str(v) for k, v in mapping.items()}

    def opt_text(self, key: str) -> str | None:
        node = self.get(key)
        return None if node is None else node.text()

    def opt_int(self, key: str) -> int | None:
        node = self.get(key)
        return None if node is None else node.integer()


def _read(path: Path) -> _Node:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidWorkload(exc.strerror or str(exc), file=str(path), field="(file)") from None
    try:
        return _Node(path.name, "", json.loads(text))
    except ValueError as exc:
        raise InvalidWorkload(f"not JSON: {exc}", file=path.name, field="(file)") from None


def _domain(node: _Node, parse: type[DeviceType] | type[NumaPolicy]) -> DeviceType | NumaPolicy:
    try:
        return parse(node.text())
    except ValueError:
        allowed = ", ".join(v.value for v in parse)
        raise node.fail(f"{node.value!r} is not one of: {allowed}", "enum") from None


def _numa_policy(node: _Node) -> NumaPolicy:
    value = _domain(node, NumaPolicy)
    assert isinstance(value, NumaPolicy)
    return value


def _address(node: _Node) -> PciAddress:
    try:
        return PciAddress.parse(node.text())
    except PcifleetError as exc:
        raise node.fail(exc.message, "address") from None


# ------------------------------------------------------------------------------ the fleet


@dataclass(frozen=True, slots=True)
class HostTemplate:
    """The identical hardware of every host of the fleet."""

    cells: tuple[NumaCell, ...]
    #: everything the host reports, in report order, untagged
    reported: tuple[Device, ...]
    #: the assignable devices (qualified by the device spec, tags applied): what agents report
    devices: tuple[Device, ...]
    cpu_allocation_ratio: float
    ram_allocation_ratio: float


@dataclass(frozen=True, slots=True)
class WorkloadHost:
    index: int
    name: str
    uuid: str


@dataclass(frozen=True, slots=True)
class Fleet:
    template: HostTemplate
    hosts: tuple[WorkloadHost, ...]
    specs: SpecList
    groups: tuple[DeviceGroup, ...]
    #: ``[filter_scheduler]`` and ``host_selection`` as written, for display
    host_selection: str


def _cell(node: _Node) -> NumaCell:
    cpus = frozenset(cpu.integer() for cpu in node["cpuset"].items())
    pages = tuple(
        HugePages(size, total, total)
        for page in node["mempages"].items()
        if (size := page["size_kb"].integer()) != _SMALL_PAGE_KB
        for total in (page["total"].integer(),)
    )
    socket = node.opt_int("socket")
    return NumaCell(node["id"].integer(), socket, cpus, node["memory_mb"].integer(), pages)


def _nova_device(node: _Node, ifnames: Mapping[PciAddress, str]) -> Device:
    """A device from Nova's ``PciDevice`` dict (as the compute reports it)."""
    address = _address(node["address"])
    dev_type = _domain(node["dev_type"], DeviceType)
    assert isinstance(dev_type, DeviceType)
    parent_node = node.get("parent_addr")
    sriov = node.get("capabilities")
    vf_num = None
    if sriov is not None and (sriov_caps := sriov.get("sriov")) is not None:
        vf_num = sriov_caps.opt_int("vf_num")
    ifname = ifnames.get(address)
    return Device(
        address=address,
        vendor_id=node["vendor_id"].text().lower(),
        product_id=node["product_id"].text().lower(),
        dev_type=dev_type,
        numa_node=node.opt_int("numa_node"),
        parent=None if parent_node is None else _address(parent_node),
        vf_index=vf_num,
        netdevs=() if ifname is None else (ifname,),
    )


def _pf_ifnames(devices: _Node) -> dict[PciAddress, str]:
    """PF address -> its netdev name, as its VFs report it (``parent_ifname``)."""
    names: dict[PciAddress, str] = {}
    for node in devices.items():
        parent = node.get("parent_addr")
        ifname = node.opt_text("parent_ifname")
        if parent is not None and ifname is not None:
            names[_address(parent)] = ifname
    return names


def qualify(reported: Sequence[Device], specs: SpecList) -> tuple[Device, ...]:
    """The devices the spec list makes assignable, with the matching spec's tags."""
    verdicts = specs.qualify_all(HostDevices(reported))
    return tuple(
        replace(device, tags=verdicts[device.address].tags)
        for device in reported
        if verdicts[device.address].assignable
    )


def _json_values(node: _Node) -> list[str]:
    """Nova config values as nova.conf holds them (one JSON text per value)."""
    return [json.dumps(item.value) for item in node.items()]


def _nova_config(node: _Node) -> tuple[SpecList, tuple[DeviceGroup, ...]]:
    pci = node["pci"]
    try:
        specs = device_spec_from_nova(_json_values(pci["device_spec"]))
    except PcifleetError as exc:
        raise pci.fail(exc.message, "device_spec") from None
    alias = pci.get("alias")
    try:
        groups = () if alias is None else groups_from_nova_alias(_json_values(alias))
    except PcifleetError as exc:
        raise pci.fail(exc.message, "alias") from None
    return specs, groups


def load_fleet(path: Path) -> Fleet:
    """``fleet.json``: the template's devices qualified by the fleet's own device spec."""
    root = _read(path)
    template = root["host_template"]
    specs, groups = _nova_config(root["nova_config"])
    pci = template["pci_devices"]
    ifnames = _pf_ifnames(pci)
    reported = tuple(_nova_device(node, ifnames) for node in pci.items())
    cells = tuple(_cell(node) for node in template["numa_cells"].items())
    ram_ratio = template.get("ram_allocation_ratio")
    host_template = HostTemplate(
        cells=cells,
        reported=reported,
        devices=qualify(reported, specs),
        cpu_allocation_ratio=template["cpu_allocation_ratio"].number(),
        ram_allocation_ratio=1.0 if ram_ratio is None else ram_ratio.number(),
    )
    hosts = tuple(
        WorkloadHost(node["index"].integer(), node["name"].text(), node["uuid"].text())
        for node in root["hosts"].items()
    )
    selection = root.get("host_selection")
    return Fleet(host_template, hosts, specs, groups, "" if selection is None else selection.text())


# ------------------------------------------------------------------------------ requests


@dataclass(frozen=True, slots=True)
class Port:
    id: str
    vnic_type: VnicType
    physical_network: str | None


@dataclass(frozen=True, slots=True)
class NovaPciRequest:
    """One of Nova's ``InstancePCIRequest`` as the workload wrote it."""

    alias_name: str | None
    count: int
    numa_policy: NumaPolicy | None
    request_id: str
    requester_id: str | None
    spec: tuple[DeviceMatch, ...]


@dataclass(frozen=True, slots=True)
class BootRequest:
    """One boot of the workload, in the terms pcifleet's services take."""

    index: int
    kind: str
    instance_id: str
    #: the flavor under its registered (unique) name; ``nova_flavor_name`` is the original
    flavor: Flavor
    nova_flavor_name: str
    numa_policy: NumaPolicy
    ports: tuple[Port, ...]
    #: from the flavor's ``pci_passthrough:alias`` (the groups), in alias order
    group_requests: tuple[DeviceRequest, ...]
    #: one per port needing a device, in port order
    port_requests: tuple[DeviceRequest, ...]
    nova_requests: tuple[NovaPciRequest, ...]

    @property
    def device_requests(self) -> tuple[DeviceRequest, ...]:
        """Group requests first, then ports: Nova's order."""
        return self.group_requests + self.port_requests

    def instance_request(self) -> InstanceRequest:
        """What the host fit takes for this boot (used by the domain-level replay)."""
        return instance_request(self.flavor, self.device_requests, self.instance_id)


def instance_request(
    flavor: Flavor, device_requests: tuple[DeviceRequest, ...], instance_id: str
) -> InstanceRequest:
    """The fit's request for a flavor plus device requests (only explicit page sizes)."""
    page = flavor.page_size
    if page is not None and not isinstance(page, int) and page is not PageSizeKind.SMALL:
        raise InvalidWorkload(
            f"page size {page} is not supported by the replay",
            file=REQUESTS_FILE,
            field="flavor.extra_specs.hw:mem_page_size",
            rule="supported",
        )
    return InstanceRequest(
        vcpus=flavor.vcpus,
        memory_mb=flavor.memory_mb,
        numa_nodes=flavor.numa_nodes,
        cpu_policy=CpuPolicy(flavor.cpu_policy.value),
        hugepage_size_kb=page if isinstance(page, int) else None,
        device_requests=device_requests,
        numa_policy=flavor.pci_numa_policy,
        instance_id=instance_id,
    )


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    fleet: Fleet
    requests: tuple[BootRequest, ...]

    @property
    def flavors(self) -> tuple[Flavor, ...]:
        """Every distinct flavor, in first-use order."""
        seen: dict[str, Flavor] = {}
        for request in self.requests:
            seen.setdefault(request.flavor.name, request.flavor)
        return tuple(seen.values())


def _raw_flavor(node: _Node) -> tuple[str, int, int, dict[str, str]]:
    specs = node.get("extra_specs")
    return (
        node["name"].text(),
        node["vcpus"].integer(),
        node["memory_mb"].integer(),
        {} if specs is None else specs.str_map(),
    )


def _flavor_key(raw: tuple[str, int, int, dict[str, str]]) -> str:
    name, vcpus, memory, specs = raw
    return json.dumps([name, vcpus, memory, sorted(specs.items())])


def flavor_names(raws: Sequence[tuple[str, int, int, dict[str, str]]]) -> dict[str, str]:
    """Flavor key -> registered name: the Nova name when it is unambiguous, else the name with
    a short digest of its contents (``pci.medium-3f2a9c1b``), stable across workloads."""
    variants: dict[str, set[str]] = {}
    for raw in raws:
        variants.setdefault(raw[0], set()).add(_flavor_key(raw))
    names: dict[str, str] = {}
    for raw in raws:
        key = _flavor_key(raw)
        if len(variants[raw[0]]) == 1:
            names[key] = raw[0]
        else:
            names[key] = f"{raw[0]}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"
    return names


def _match(node: _Node) -> DeviceMatch:
    spec = node.str_map()
    dev_type = spec.pop("dev_type", None)
    try:
        kind = None if dev_type is None else DeviceType(dev_type)
    except ValueError:
        raise node.fail(f"dev_type {dev_type!r} is not a device type", "enum") from None
    vendor = spec.pop("vendor_id", None)
    product = spec.pop("product_id", None)
    return DeviceMatch.of(
        None if vendor is None else vendor.lower(),
        None if product is None else product.lower(),
        kind,
        **spec,
    )


def _nova_request(node: _Node) -> NovaPciRequest:
    policy = node.get("numa_policy")
    return NovaPciRequest(
        alias_name=node.opt_text("alias_name"),
        count=node["count"].integer(),
        numa_policy=None if policy is None else _numa_policy(policy),
        request_id=node["request_id"].text(),
        requester_id=node.opt_text("requester_id"),
        spec=tuple(_match(item) for item in node["spec"].items()),
    )


def _port(node: _Node) -> Port:
    try:
        vnic = parse_vnic_type(node["vnic_type"].text())
    except PcifleetError as exc:
        raise node["vnic_type"].fail(exc.message, "enum") from None
    return Port(node["id"].text(), vnic, node.opt_text("physical_network"))


def _folded(match: DeviceMatch) -> tuple[object, ...]:
    props = tuple((k, None if v is None else v.lower()) for k, v in match.props)
    return (match.vendor_id, match.product_id, match.dev_type, props)


def _check_equivalent(
    node: _Node, ours: Sequence[DeviceRequest], nova: Sequence[NovaPciRequest], flavor: Flavor
) -> None:
    """Our requests ask for exactly what Nova's ``pci_requests`` ask for, in the same order."""
    if len(ours) != len(nova):
        raise node.fail(f"pcifleet builds {len(ours)} device requests, Nova {len(nova)}", "same")
    default = flavor.pci_numa_policy or NumaPolicy.LEGACY
    for i, (mine, theirs) in enumerate(zip(ours, nova, strict=True)):
        where = _Node(node.file, f"{node.path}.pci_requests[{i}]", None)
        requester = theirs.alias_name if mine.requester.kind is RequesterKind.GROUP else None
        requester = requester or theirs.requester_id
        checks = (
            ("count", mine.count, theirs.count),
            ("requester", mine.requester.name, requester),
            ("numa_policy", mine.numa_policy or default, theirs.numa_policy or NumaPolicy.LEGACY),
            (
                "spec",
                sorted(map(repr, map(_folded, mine.alternatives))),
                sorted(map(repr, map(_folded, theirs.spec))),
            ),
        )
        for what, got, want in checks:
            if got != want:
                raise where.fail(f"{what}: pcifleet has {got!r}, Nova {want!r}", "same")


def _constant(value: str) -> RequestIdFactory:
    return lambda: value


def _port_requests(ports: Sequence[Port], ids: Mapping[str | None, str]) -> Iterator[DeviceRequest]:
    """The device requests of the ports that need a device, with Nova's request ids."""
    for port in ports:
        request = port_device_request(
            port.vnic_type,
            port.physical_network,
            None,
            port.id,
            id_factory=_constant(ids.get(port.id, "")),
        )
        if request is not None:
            yield request


def _boot_request(
    node: _Node, names: Mapping[str, str], groups: Mapping[str, DeviceGroup]
) -> BootRequest:
    raw = _raw_flavor(node["flavor"])
    try:
        flavor = Flavor.from_extra_specs(names[_flavor_key(raw)], raw[1], raw[2], raw[3])
    except PcifleetError as exc:
        raise node["flavor"].fail(exc.message, "flavor") from None
    nova = tuple(_nova_request(item) for item in node["pci_requests"].items())
    group_ids = iter([r.request_id for r in nova if r.alias_name is not None])
    try:
        group_requests = device_requests_for_flavor(
            flavor, groups, None, id_factory=lambda: next(group_ids, "")
        )
    except PcifleetError as exc:
        raise node["flavor"].fail(exc.message, "flavor") from None
    ports = tuple(_port(item) for item in node["ports"].items())
    port_ids = {r.requester_id: r.request_id for r in nova if r.alias_name is None}
    port_requests = tuple(_port_requests(ports, port_ids))
    _check_equivalent(node, group_requests + port_requests, nova, flavor)
    return BootRequest(
        index=node["index"].integer(),
        kind=node.opt_text("kind") or "",
        instance_id=node["instance_uuid"].text(),
        flavor=flavor,
        nova_flavor_name=raw[0],
        numa_policy=_numa_policy(node["numa_policy"]),
        ports=ports,
        group_requests=group_requests,
        port_requests=port_requests,
        nova_requests=nova,
    )


def load_requests(path: Path, groups: Sequence[DeviceGroup]) -> tuple[BootRequest, ...]:
    """``requests.json``, in ``index`` order, each checked against Nova's ``pci_requests``."""
    nodes = list(_read(path)["requests"].items())
    names = flavor_names([_raw_flavor(node["flavor"]) for node in nodes])
    by_name = {group.name: group for group in groups}
    requests = [_boot_request(node, names, by_name) for node in nodes]
    return tuple(sorted(requests, key=lambda r: r.index))


def load_workload(directory: Path) -> Workload:
    """A whole workload folder (``fleet.json`` and ``requests.json``)."""
    fleet = load_fleet(directory / FLEET_FILE)
    requests = load_requests(directory / REQUESTS_FILE, fleet.groups)
    return Workload(directory.name, fleet, requests)


# ----------------------------------------------------------------------- Nova's decisions


@dataclass(frozen=True, slots=True)
class NovaDecision:
    index: int
    placed: bool
    #: how many hosts passed Nova's filters
    candidates: int
    #: host index (None when rejected)
    host: int | None
    numa_cell: int | None
    devices: tuple[PciAddress, ...]


def _decision(node: _Node) -> NovaDecision:
    status = node["status"].text()
    if status not in ("placed", "rejected"):
        raise node["status"].fail(f"{status!r} is not one of: placed, rejected", "enum")
    devices = node.get("devices")
    return NovaDecision(
        index=node["index"].integer(),
        placed=status == "placed",
        candidates=node.opt_int("candidates") or 0,
        host=node.opt_int("host"),
        numa_cell=node.opt_int("numa_cell"),
        devices=() if devices is None else tuple(_address(d) for d in devices.items()),
    )


def load_decisions(path: Path) -> tuple[NovaDecision, ...]:
    """``nova-decisions.json``, in ``index`` order."""
    decisions = [_decision(node) for node in _read(path)["decisions"].items()]
    return tuple(sorted(decisions, key=lambda d: d.index))
