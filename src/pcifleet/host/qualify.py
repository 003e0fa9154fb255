"""Applying device specs (the "whitelist") to a scan: which functions are assignable, their
tags, and, for the others, why each spec passed them by.

The rules are the domain's (:mod:`pcifleet.domain.spec`: exclusions first, then the first
matching spec wins, Nova's semantics); this module only feeds it the scan's devices and keeps
the verdict next to each function. Spec files hold Nova ``[pci] device_spec`` JSON values,
one per line, or one JSON list (or object) for the whole file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device
from pcifleet.domain.errors import InvalidSpec
from pcifleet.domain.selectors import HostDevices
from pcifleet.domain.spec import DeviceSpec, SpecList, parse_spec_list
from pcifleet.domain.tags import EMPTY_TAGS, Tags
from pcifleet.host.model import HostScan, PciFunction


@dataclass(frozen=True, slots=True)
class Verdict:
    """One function's qualification."""

    function: PciFunction
    #: the domain record, carrying the matching spec's tags when assignable
    device: Device
    assignable: bool
    tags: Tags = EMPTY_TAGS
    #: position of the spec that matched (or of the exclusion that excluded it)
    spec_index: int | None = None
    excluded: bool = False
    #: why not assignable: one entry per spec ("spec 0: vendor_id 15b3 != 8086")
    reasons: tuple[str, ...] = ()

    def explain(self) -> str:
        if self.assignable:
            return f"assignable by spec {self.spec_index}"
        return "; ".join(self.reasons)


@dataclass(frozen=True, slots=True)
class QualifiedScan:
    scan: HostScan
    verdicts: tuple[Verdict, ...]
    _index: Mapping[PciAddress, Verdict] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        index = {v.function.address: v for v in self.verdicts}
        object.__setattr__(self, "_index", MappingProxyType(index))

    def get(self, address: PciAddress | str) -> Verdict | None:
        key = PciAddress.parse(address) if isinstance(address, str) else address
        return self._index.get(key)

    def assignable(self) -> tuple[Device, ...]:
        """The devices a host agent reports as assignable, with their tags."""
        return tuple(v.device for v in self.verdicts if v.assignable)


def qualify(scan: HostScan, specs: SpecList, *, check: bool = True) -> QualifiedScan:
    """Qualify every function of ``scan``. ``check`` runs the spec list's host-dependent
    rules first (a remote-managed spec naming an absent devname is an error, as in Nova)."""
    host = HostDevices(scan.to_devices())
    results = specs.qualify_all(host, check=check)
    verdicts = []
    for function in scan:
        result = results[function.address]
        tags = result.tags
        device = host[function.address]
        verdicts.append(
            Verdict(
                function=function,
                device=replace(device, tags=tags) if result.assignable else device,
                assignable=result.assignable,
                tags=tags,
                spec_index=result.spec_index,
                excluded=result.excluded,
                reasons=result.reasons(),
            )
        )
    return QualifiedScan(scan, tuple(verdicts))


def load_spec_file(path: Path) -> SpecList:
    """Device specs from ``path``: a JSON list or object for the whole file, or one JSON
    value per line (blank lines and ``#`` comments skipped), each as in ``nova.conf``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidSpec(
            f"spec file {path}: cannot be read ({exc})", field="spec_file", rule="unreadable"
        ) from None
    try:
        whole: object = json.loads(text)
    except ValueError:
        return _per_line(path, text)
    if not isinstance(whole, dict | list):
        raise InvalidSpec(
            f"spec file {path}: expected a JSON list or object, got {whole!r}",
            field="spec_file",
            rule="type",
        )
    return parse_spec_list([whole])


def _per_line(path: Path, text: str) -> SpecList:
    specs: list[DeviceSpec] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            specs.extend(parse_spec_list([stripped]).specs)
        except InvalidSpec as exc:
            raise type(exc)(
                f"spec file {path} line {number}: {exc.fields['detail']}",
                **{k: v for k, v in exc.fields.items() if k != "detail"},
            ) from None
    return SpecList(tuple(specs))
