"""The agent's VF manager: configure a VF for a port, and give it back as it was found.

Rules, over any ``VfConfigurator``:

- **Snapshot.** The first ``configure`` of a VF records its state as read before any write;
  later ``configure`` calls keep that first snapshot. ``release`` restores every field of the
  snapshot that differs now — including the MAC a trusted guest changed meanwhile — and forgets
  it. Fields the driver hides (spoof check/trust reported as -1) are never written back.
- **No-op.** Both compare with the VF's current state first and write only the fields that
  differ: applying the same desired state twice writes nothing the second time.
- **All or nothing.** When a write fails part-way through ``configure``, the fields already
  written are written back to their previous values in reverse order, and the original error
  is raised; the VF is as it was (``VfRollbackFailed`` if even that fails). A failed first
  ``configure`` leaves no snapshot behind.
- **Best effort on release.** ``release`` tries every differing field separately (a driver
  refusing one setting must not keep the MAC from being restored) and, if any fail, raises and
  keeps the snapshot so that a later ``release`` retries.
- **Restart-safe.** ``adopt`` takes up a snapshot an earlier agent process recorded (the
  applier keeps them in the domain's metadata), so a restarted agent restores the VF too.
- **One operation per VF at a time.** A lock per (PF, VF) serializes operations on a VF;
  different VFs proceed in parallel.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from pcifleet.domain.errors import VfError, VfRollbackFailed
from pcifleet.host.vf.configurator import VfConfigurator
from pcifleet.host.vf.model import (
    VfField,
    VfSettings,
    VfState,
    changed_fields,
    settings_from_state,
    target_state,
)

_Key = tuple[str, int]


@dataclass(frozen=True, slots=True)
class VfChange:
    """The VF after an operation, and which fields were written (empty: nothing to do)."""

    state: VfState
    written: tuple[VfField, ...]


class VfManager:
    """Snapshots, idempotent writes, rollback and per-VF locking over a configurator."""

    def __init__(self, configurator: VfConfigurator) -> None:
        self._configurator = configurator
        self._snapshots: dict[_Key, VfState] = {}
        self._locks: dict[_Key, threading.Lock] = {}
        self._guard = threading.Lock()

    def configure(self, pf_ifname: str, vf_index: int, desired: VfSettings) -> VfChange:
        """Bring the VF to ``desired`` (None fields untouched); see the module rules."""
        key = (pf_ifname, vf_index)
        with self._lock(key):
            current = self._configurator.read(pf_ifname, vf_index)
            target = target_state(current, desired)
            fresh = key not in self._snapshots
            if fresh:
                self._snapshots[key] = current
            fields = changed_fields(current, target)
            try:
                state = self._write_all_or_nothing(key, current, target, fields)
            except Exception:
                if fresh:
                    del self._snapshots[key]
                raise
            return VfChange(state, fields)

    def release(self, pf_ifname: str, vf_index: int) -> VfChange:
        """Restore the snapshot taken by the first ``configure``; without one, write nothing."""
        key = (pf_ifname, vf_index)
        with self._lock(key):
            snapshot = self._snapshots.get(key)
            current = self._configurator.read(pf_ifname, vf_index)
            if snapshot is None:
                return VfChange(current, ())
            fields = changed_fields(current, snapshot)
            written, errors = self._write_each(key, snapshot, fields)
            if errors:
                raise _combined(key, errors)
            del self._snapshots[key]
            return VfChange(self._configurator.read(pf_ifname, vf_index), written)

    def adopt(self, pf_ifname: str, vf_index: int, snapshot: VfState) -> bool:
        """Hold the VF with a snapshot taken by an earlier process (read back from where the
        applier stored it), so ``release`` restores it as if this manager had configured it.

        A snapshot already held wins (it is this process's own, or was adopted before):
        returns False then, True when ``snapshot`` was taken up. Nothing is written.
        """
        if snapshot.index != vf_index:
            raise VfError(
                f"the snapshot is of VF {snapshot.index}, not of VF {vf_index}",
                pf=pf_ifname,
                vf=vf_index,
                field="vf",
                rule="snapshot_index",
            )
        key = (pf_ifname, vf_index)
        with self._lock(key):
            if key in self._snapshots:
                return False
            self._snapshots[key] = snapshot
            return True

    def snapshot(self, pf_ifname: str, vf_index: int) -> VfState | None:
        """The state ``release`` will restore, or None when the VF is not held."""
        with self._guard:
            return self._snapshots.get((pf_ifname, vf_index))

    def held(self) -> tuple[_Key, ...]:
        """(PF, VF index) of every VF configured and not yet released, sorted."""
        with self._guard:
            return tuple(sorted(self._snapshots))

    # -- internals ------------------------------------------------------------------------------

    def _lock(self, key: _Key) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _write_all_or_nothing(
        self, key: _Key, current: VfState, target: VfState, fields: tuple[VfField, ...]
    ) -> VfState:
        if not fields:
            return current
        try:
            return self._configurator.apply(*key, settings_from_state(target, fields))
        except VfError as error:
            failed = str(error.fields.get("field", ""))
            written = _written_before(fields, failed)
            self._roll_back(key, current, written, error)
            raise

    def _roll_back(
        self, key: _Key, before: VfState, written: tuple[VfField, ...], cause: VfError
    ) -> None:
        for field in reversed(written):
            try:
                self._configurator.apply(*key, settings_from_state(before, (field,)))
            except VfError as error:
                raise VfRollbackFailed(
                    f"writing {cause.fields.get('field')} failed ({cause}), and undoing "
                    f"{field.value} failed too ({error}); the VF is left partly changed",
                    pf=key[0],
                    vf=key[1],
                    field=field.value,
                    rule="rollback",
                    cause=cause,
                ) from cause

    def _write_each(
        self, key: _Key, source: VfState, fields: tuple[VfField, ...]
    ) -> tuple[tuple[VfField, ...], list[VfError]]:
        written: list[VfField] = []
        errors: list[VfError] = []
        for field in fields:
            try:
                self._configurator.apply(*key, settings_from_state(source, (field,)))
                written.append(field)
            except VfError as error:
                errors.append(error)
        return tuple(written), errors


def _written_before(fields: tuple[VfField, ...], failed: str) -> tuple[VfField, ...]:
    """Fields a configurator wrote before failing on ``failed``: ``fields`` is in write order
    (``changed_fields``); none when it failed before writing (e.g. looking up the PF)."""
    names = [field.value for field in fields]
    if failed not in names:
        return ()
    return fields[: names.index(failed)]


def _combined(key: _Key, errors: list[VfError]) -> VfError:
    if len(errors) == 1:
        return errors[0]
    return VfError(
        "; ".join(str(error) for error in errors),
        pf=key[0],
        vf=key[1],
        field=", ".join(str(error.fields.get("field")) for error in errors),
        rule="restore",
    )
