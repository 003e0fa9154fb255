"""Human vendor and device names from the pci.ids database (Debian ``hwdata``/``pciutils``).

The file is ~1.3 MB; it is read on the first lookup and indexed once. A host without it gets
``None`` names, never an error: names are for people, ids are what pcifleet matches on.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Final

#: where Debian/Ubuntu (hwdata, pciutils) and most distributions install the database
DEFAULT_LOCATIONS: Final = (
    Path("/usr/share/hwdata/pci.ids"),
    Path("/usr/share/misc/pci.ids"),
    Path("/usr/share/pci.ids"),
)


class PciIds:
    """Vendor and device names keyed by 4-digit lower-case hex ids; loads lazily."""

    __slots__ = ("_devices", "_loaded", "_vendors", "path")

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._loaded = False
        self._vendors: dict[str, str] = {}
        self._devices: dict[str, dict[str, str]] = {}

    @classmethod
    def find(cls, locations: Iterable[Path] = DEFAULT_LOCATIONS) -> PciIds:
        """The first database that exists among ``locations`` (an empty one if none does)."""
        for location in locations:
            if location.is_file():
                return cls(location)
        return cls(None)

    @property
    def available(self) -> bool:
        self._load()
        return bool(self._vendors)

    def vendor(self, vendor_id: str) -> str | None:
        self._load()
        return self._vendors.get(vendor_id.lower().removeprefix("0x"))

    def device(self, vendor_id: str, device_id: str) -> str | None:
        self._load()
        devices = self._devices.get(vendor_id.lower().removeprefix("0x"))
        return None if devices is None else devices.get(device_id.lower().removeprefix("0x"))

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self.path is None:
            return
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return
        self._vendors, self._devices = _parse(text)


def _parse(text: str) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Vendor lines ``vvvv  Name`` and device lines ``\\tdddd  Name``; subsystem lines
    (two tabs) and comments are skipped; the class section (``C xx``) ends the id list."""
    vendors: dict[str, str] = {}
    devices: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        if line[0] == "\t":
            if current is not None and line[1] != "\t" and line[5:7] == "  ":
                current[line[1:5].lower()] = line[7:]
            continue
        if line.startswith("C "):
            break
        if line[4:6] == "  ":
            vendor = line[:4].lower()
            vendors[vendor] = line[6:]
            current = devices.setdefault(vendor, {})
        else:
            current = None
    return vendors, devices


@functools.cache
def system_pci_ids() -> PciIds:
    """The host's database, found once per process (still loaded only on first lookup)."""
    return PciIds.find()
