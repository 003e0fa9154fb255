"""The fake VF configurator with its VF tables in a JSON file, so they outlive the agent.

On a real host the PF driver keeps the VF table while the agent is killed and restarted;
:class:`~pcifleet.host.vf.fake.FakeVfConfigurator` forgets it with its process. This subclass
loads the tables from ``path`` (when it exists) and writes them back atomically after every
change, including a failed ``apply`` that wrote some fields. A test may edit the file while the
agent is down (a guest changing its MAC). Each row is stored in the VF snapshot format
(:mod:`pcifleet.host.vf.snapshot`) plus its index. ``pcifleet agent --vf-configurator
fake:///PATH`` selects it; ``fake`` stays in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from pcifleet.domain.errors import InvalidInput
from pcifleet.host.hypervisor.fake_file import read_json, write_atomically
from pcifleet.host.vf.fake import FakeVfConfigurator
from pcifleet.host.vf.model import VfSettings, VfState
from pcifleet.host.vf.snapshot import snapshot_attributes, snapshot_from_attributes

_INDEX: Final = "index"


def _row(item: object, path: Path, pf: str) -> VfState:
    if not isinstance(item, dict) or not str(item.get(_INDEX, "")).isdigit():
        raise InvalidInput(
            f"{path}: PF {pf}: a VF row needs an integer index", field=_INDEX, rule="format"
        )
    attributes = {str(k): str(v) for k, v in item.items() if k != _INDEX}
    return snapshot_from_attributes(attributes, int(item[_INDEX]))


class FileBackedFakeVfConfigurator(FakeVfConfigurator):
    """A :class:`FakeVfConfigurator` whose VF tables live in ``path``."""

    def __init__(self, path: Path, *, delay: float = 0.0) -> None:
        super().__init__(delay=delay)
        self.path = path
        #: True when the tables came from an existing file (nothing to seed)
        self.loaded = path.exists()
        if self.loaded:
            self._load()

    def _load(self) -> None:
        pfs = read_json(self.path).get("pfs", {})
        if not isinstance(pfs, dict):
            raise InvalidInput(f"{self.path}: expected a PF object", field="pfs", rule="format")
        for pf, rows in pfs.items():
            if not isinstance(rows, list):
                raise InvalidInput(f"{self.path}: PF {pf}: expected rows", field="pfs")
            self._vfs[str(pf)] = [_row(item, self.path, str(pf)) for item in rows]

    def save(self) -> None:
        """Write every PF's VF table to the state file now."""
        with self._lock:
            pfs = {
                pf: [{_INDEX: row.index, **snapshot_attributes(row)} for row in rows]
                for pf, rows in sorted(self._vfs.items())
            }
        write_atomically(self.path, {"pfs": pfs})

    @contextmanager
    def _saving(self) -> Iterator[None]:
        try:
            yield
        finally:
            self.save()

    def add_pf(
        self,
        ifname: str,
        num_vfs: int,
        *,
        reports_spoofchk: bool = True,
        reports_trust: bool = True,
    ) -> None:
        with self._saving():
            super().add_pf(
                ifname, num_vfs, reports_spoofchk=reports_spoofchk, reports_trust=reports_trust
            )

    def remove_pf(self, ifname: str) -> None:
        with self._saving():
            super().remove_pf(ifname)

    def guest_sets_mac(self, pf: str, vf: int, mac: str) -> None:
        with self._saving():
            super().guest_sets_mac(pf, vf, mac)

    def apply(self, pf_ifname: str, vf_index: int, desired: VfSettings) -> VfState:
        with self._saving():
            return super().apply(pf_ifname, vf_index, desired)


__all__ = ["FileBackedFakeVfConfigurator"]
