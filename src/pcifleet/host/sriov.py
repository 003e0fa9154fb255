"""Setting the number of VFs of an SR-IOV physical function.

The kernel refuses a change from one non-zero count to another (``EBUSY``): the count goes to
0 first, destroying every VF of the PF, then to N. Both writes go through an injected
:class:`~pcifleet.host.sysfs.SysfsWriter` and are bounded in time: some drivers block the write
forever (i40e, "other operation is pending"). VF creation is asynchronous (the write returns
before the ``virtfnN`` links exist), so the configurator then polls, within a bound, until
every link resolves.

Refusals come before any write, each a :class:`SriovConfigError` naming the PF, the field
and the rule: not a PF, N above ``sriov_totalvfs``, and any change while one of the PF's VFs
is allocated (the 0 write would pull it from under its guest; the caller passes the set of
allocated VF addresses it knows of).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import is_physical_function
from pcifleet.domain.errors import InvalidAddress, SriovConfigError, SysfsError
from pcifleet.host.sysfs import SysfsReader, SysfsWriter, write_with_timeout


@dataclass(frozen=True, slots=True)
class VfConfiguration:
    """What the PF looks like after the change."""

    pf: PciAddress
    numvfs: int
    #: (VF index, VF address), ordered by index
    vfs: tuple[tuple[int, PciAddress], ...]
    #: whether anything was written (False when the PF already had N VFs)
    changed: bool


class SriovConfigurator:
    """Sets VF counts of the PFs under ``reader``'s root, writing through ``writer``."""

    def __init__(
        self,
        reader: SysfsReader,
        writer: SysfsWriter,
        *,
        write_timeout: float = 120.0,
        settle_timeout: float = 120.0,
        poll_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.write_timeout = write_timeout
        self.settle_timeout = settle_timeout
        self.poll_interval = poll_interval
        self._clock = clock
        self._sleep = sleep

    def set_num_vfs(
        self,
        pf: PciAddress | str,
        count: int,
        *,
        allocated: Collection[PciAddress] = (),
    ) -> VfConfiguration:
        """Give ``pf`` exactly ``count`` VFs (0 first, then ``count``) and wait for them."""
        address = _address(pf)
        directory = self.reader.path("sys", "bus", "pci", "devices", str(address))
        total = self._totalvfs(address, directory)
        if not 0 <= count <= total:
            raise _refuse(
                address,
                "sriov_numvfs",
                "range",
                f"cannot enable {count} VFs: must be between 0 and sriov_totalvfs ({total})",
            )
        current = self._vfs(directory, self._numvfs(address, directory))
        if count == len(current) and self._numvfs(address, directory) == count:
            return VfConfiguration(address, count, current, changed=False)
        self._check_allocated(address, current, allocated, count)
        if current or self._numvfs(address, directory):
            self._write(directory, "0")
            self._wait(address, directory, 0)
        if count:
            self._write(directory, str(count))
            self._wait(address, directory, count)
        return VfConfiguration(address, count, self._vfs(directory, count), changed=True)

    # ------------------------------------------------------------------ checks

    def _totalvfs(self, pf: PciAddress, directory: str) -> int:
        if self.reader.identity(directory) is None:
            raise _refuse(pf, "address", "not_found", "no such PCI function")
        total = self._read_int(pf, f"{directory}/sriov_totalvfs")
        if total is None or not is_physical_function(total):
            raise _refuse(pf, "sriov_totalvfs", "not_a_pf", "not an SR-IOV physical function")
        return total

    def _numvfs(self, pf: PciAddress, directory: str) -> int:
        return self._read_int(pf, f"{directory}/sriov_numvfs") or 0

    def _read_int(self, pf: PciAddress, path: str) -> int | None:
        try:
            return self.reader.read_int(path)
        except SysfsError as exc:
            raise _refuse(pf, path.rsplit("/", 1)[-1], "unreadable", str(exc)) from None

    @staticmethod
    def _check_allocated(
        pf: PciAddress,
        current: tuple[tuple[int, PciAddress], ...],
        allocated: Collection[PciAddress],
        count: int,
    ) -> None:
        busy = [vf for _, vf in current if vf in allocated]
        if busy:
            names = ", ".join(str(vf) for vf in busy)
            verb = "decrease" if count < len(current) else "change"
            raise _refuse(
                pf,
                "sriov_numvfs",
                "vfs_allocated",
                f"cannot {verb} the VF count from {len(current)} to {count} while VFs "
                f"{names} are allocated (the kernel needs 0 first, which destroys every VF)",
            )

    # ------------------------------------------------------------------ writing and waiting

    def _write(self, directory: str, value: str) -> None:
        write_with_timeout(self.writer, Path(directory) / "sriov_numvfs", value, self.write_timeout)

    def _vfs(self, directory: str, count: int) -> tuple[tuple[int, PciAddress], ...]:
        """The VFs whose ``virtfnN`` link resolves to a device directory."""
        found = []
        for index in range(count):
            link = f"{directory}/virtfn{index}"
            name = self.reader.link_name(link)
            if name is None or self.reader.identity(link) is None:
                continue
            try:
                found.append((index, PciAddress.parse(name)))
            except InvalidAddress:
                continue
        return tuple(found)

    def _links_left(self, directory: str) -> int:
        names = self.reader.list_dir(directory) or []
        return sum(1 for name in names if name.startswith("virtfn"))

    def _wait(self, pf: PciAddress, directory: str, count: int) -> None:
        """Poll until exactly ``count`` VFs exist, for at most ``settle_timeout`` seconds."""
        deadline = self._clock() + self.settle_timeout
        while True:
            present = len(self._vfs(directory, count)) if count else 0
            leftover = 0 if count else self._links_left(directory)
            if present == count and leftover == 0:
                return
            if self._clock() >= deadline:
                have = present if count else leftover
                raise _refuse(
                    pf,
                    "virtfn",
                    "vfs_timeout",
                    f"{have} of {count} virtfn links after {self.settle_timeout:g} s"
                    if count
                    else f"{have} virtfn links still present {self.settle_timeout:g} s "
                    "after writing 0",
                )
            self._sleep(self.poll_interval)


def _address(pf: PciAddress | str) -> PciAddress:
    if isinstance(pf, PciAddress):
        return pf
    try:
        return PciAddress.parse(pf)
    except InvalidAddress as exc:
        raise SriovConfigError(f"PF {pf!r}: {exc}", pf=pf, field="address", rule="format") from None


def _refuse(pf: PciAddress, field: str, rule: str, detail: str) -> SriovConfigError:
    return SriovConfigError(f"PF {pf}: {field}: {detail}", pf=str(pf), field=field, rule=rule)
