"""An in-memory VF configurator with the netlink one's behaviour, for machines without SR-IOV.

It follows the ``VfConfigurator`` contract step by step (PF lookup with ENODEV, index check,
rate pair check, one write per field in ``WRITE_ORDER``, stop at the first failure) and adds
what tests need to look inside:

- ``writes``: every successful write, in order (``FakeWrite``), to assert "zero writes";
- ``fail(...)``: inject a kernel errno on one field of one VF, for the next N writes or always;
- ``guest_sets_mac(...)``: the guest (a trusted VF) changing the admin MAC behind the agent;
- ``delay``: seconds each write takes, and ``max_in_flight``: the most writes that overlapped
  on one VF (``peak_in_flight`` across all), to show that ``VfManager`` serializes operations
  on a VF and only on that VF.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, replace

from pcifleet.host.vf.configurator import check_index, errno_error, missing_pf
from pcifleet.host.vf.model import (
    VfField,
    VfSettings,
    VfState,
    normalize_mac,
    settings_from_state,
    target_state,
)

_Key = tuple[str, int]


@dataclass(frozen=True, slots=True)
class FakeWrite:
    pf: str
    vf: int
    field: VfField
    value: object


@dataclass(slots=True)
class _Failure:
    errno: int
    #: how many more writes fail; None = every write
    remaining: int | None
    #: writes that still succeed before the failures start
    skip: int = 0


class FakeVfConfigurator:
    """PFs and their VF tables in memory; thread-safe."""

    def __init__(self, *, delay: float = 0.0) -> None:
        self.delay = delay
        self.writes: list[FakeWrite] = []
        self._vfs: dict[str, list[VfState]] = {}
        self._failures: dict[tuple[str, int, VfField], _Failure] = {}
        self._lock = threading.Lock()
        self._in_flight: Counter[_Key] = Counter()
        self._max_in_flight: Counter[_Key] = Counter()
        self._total_in_flight = 0
        #: the most writes that overlapped across all VFs
        self.peak_in_flight = 0

    # -- building the fake host -------------------------------------------------------------

    def add_pf(
        self,
        ifname: str,
        num_vfs: int,
        *,
        reports_spoofchk: bool = True,
        reports_trust: bool = True,
    ) -> None:
        """A PF with ``num_vfs`` VFs in the kernel's defaults (no MAC, no VLAN, no limits,
        spoof check on, trust off, link auto); ``reports_*=False`` mimics drivers that hide
        spoof check or trust (the kernel shows -1)."""
        with self._lock:
            self._vfs[ifname] = [
                VfState(
                    index=i,
                    spoofchk=True if reports_spoofchk else None,
                    trust=False if reports_trust else None,
                )
                for i in range(num_vfs)
            ]

    def remove_pf(self, ifname: str) -> None:
        """The PF vanishes (given away as ``direct-physical``, or unplugged)."""
        with self._lock:
            self._vfs.pop(ifname, None)

    def fail(
        self,
        pf: str,
        vf: int,
        field: VfField,
        errno: int,
        *,
        times: int | None = 1,
        after: int = 0,
    ) -> None:
        """Make ``times`` writes of ``field`` on ``pf``/``vf`` fail with ``errno`` (None: all),
        once ``after`` writes of it have succeeded (e.g. ``after=1``: the undo fails)."""
        with self._lock:
            self._failures[(pf, vf, field)] = _Failure(errno, times, after)

    def guest_sets_mac(self, pf: str, vf: int, mac: str) -> None:
        """A trusted guest changes its MAC and the driver mirrors it in the PF's table."""
        with self._lock:
            table = self._table(pf, vf)
            table[vf] = replace(table[vf], mac=normalize_mac(mac))

    def max_in_flight(self, pf: str, vf: int) -> int:
        """The largest number of writes that ran at once on this VF."""
        with self._lock:
            return self._max_in_flight[(pf, vf)]

    def writes_for(self, pf: str, vf: int) -> list[FakeWrite]:
        with self._lock:
            return [w for w in self.writes if (w.pf, w.vf) == (pf, vf)]

    # -- the VfConfigurator protocol ----------------------------------------------------------

    def num_vfs(self, pf_ifname: str) -> int:
        with self._lock:
            if pf_ifname not in self._vfs:
                raise missing_pf(pf_ifname, 0)
            return len(self._vfs[pf_ifname])

    def read(self, pf_ifname: str, vf_index: int) -> VfState:
        with self._lock:
            return self._table(pf_ifname, vf_index)[vf_index]

    def apply(self, pf_ifname: str, vf_index: int, desired: VfSettings) -> VfState:
        current = self.read(pf_ifname, vf_index)
        target = target_state(current, desired)
        for field in desired.fields:
            self._write(pf_ifname, vf_index, field, target)
        return self.read(pf_ifname, vf_index)

    # -- internals ------------------------------------------------------------------------------

    def _table(self, pf: str, vf: int) -> list[VfState]:
        table = self._vfs.get(pf)
        if table is None:
            raise missing_pf(pf, vf)
        check_index(pf, vf, len(table))
        return table

    def _write(self, pf: str, vf: int, field: VfField, target: VfState) -> None:
        key = (pf, vf)
        with self._lock:
            self._in_flight[key] += 1
            self._max_in_flight[key] = max(self._max_in_flight[key], self._in_flight[key])
            self._total_in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._total_in_flight)
        try:
            if self.delay:
                time.sleep(self.delay)
            with self._lock:
                self._fail_if_injected(pf, vf, field)
                table = self._table(pf, vf)
                table[vf] = _with_field(table[vf], field, target)
                self.writes.append(FakeWrite(pf, vf, field, target.value(field)))
        finally:
            with self._lock:
                self._in_flight[key] -= 1
                self._total_in_flight -= 1

    def _fail_if_injected(self, pf: str, vf: int, field: VfField) -> None:
        failure = self._failures.get((pf, vf, field))
        if failure is None:
            return
        if failure.skip:
            failure.skip -= 1
            return
        if failure.remaining is not None:
            failure.remaining -= 1
            if failure.remaining <= 0:
                del self._failures[(pf, vf, field)]
        raise errno_error(pf, vf, field.value, failure.errno)


def _with_field(state: VfState, field: VfField, target: VfState) -> VfState:
    """``state`` with ``field`` taken from ``target``; a hidden (None) flag stays hidden."""
    if state.value(field) is None:
        return state
    return target_state(state, settings_from_state(target, (field,)))
