"""The VF configurator interface, and the error rules every implementation shares.

A configurator reads and writes one VF's row in its PF's table. It is deliberately dumb: it
writes what it is told, one netlink write per field, and leaves deciding *whether* to write
(comparing with the current state, snapshots, rollback, locking) to ``VfManager``. Two
implementations exist and behave alike: ``NetlinkVfConfigurator`` (pyroute2, on the PF) and
``FakeVfConfigurator`` (in memory, for tests on machines without SR-IOV hardware).

Contract of ``apply(pf_ifname, vf_index, desired)``:

1. Look up the PF (missing: ``VfNotFound``, field ``link``, errno ENODEV) and check
   ``vf_index < num_vfs`` (else ``VfNotFound``, rule ``index``). Nothing is written yet.
2. Compute the target state (``target_state``): a rate given alone keeps the VF's current other
   rate; an impossible pair (min above a non-zero max) raises ``InvalidVfRate`` before writing.
3. Write every field of ``desired`` that is not None, in ``WRITE_ORDER`` (mac, vlan, rate,
   spoofchk, trust, link_state), one write each, even when the VF already has that value.
4. Stop at the first failing write and raise a ``VfError`` whose ``field`` names it; the fields
   before it in ``WRITE_ORDER`` stay written (the caller rolls them back), the ones after are
   not attempted.
5. On success return the state read back after the writes.

``read`` returns the VF's row (``VfNotFound`` as in step 1). ``num_vfs`` returns how many VFs
the PF has enabled, ``0`` for a link without SR-IOV (a veth, a bridge, a VF itself): asking
such a link for VF 0 with ``read`` or ``apply`` raises ``VfNotFound`` naming the PF and the rule
``index`` ("PF has 0 VFs").
"""

from __future__ import annotations

import errno
import os
from typing import Final, Protocol, TypeVar, runtime_checkable

from pcifleet.domain.errors import VfError, VfNotFound, VfUnsupported
from pcifleet.host.vf.model import VfSettings, VfState

#: field name used for errors while looking up the PF itself
LINK_FIELD: Final = "link"

_NOT_FOUND: Final = frozenset({errno.ENODEV, errno.ENOENT, errno.ENXIO})
_UNSUPPORTED: Final = frozenset({errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPROTONOSUPPORT})

_E = TypeVar("_E", bound=VfError)


@runtime_checkable
class VfConfigurator(Protocol):
    """Read and write VF rows on a PF; see the module docstring for the exact contract."""

    def num_vfs(self, pf_ifname: str) -> int: ...

    def read(self, pf_ifname: str, vf_index: int) -> VfState: ...

    def apply(self, pf_ifname: str, vf_index: int, desired: VfSettings) -> VfState: ...


def errno_error(pf: str, vf: int, field: str, code: int) -> VfError:
    """The pcifleet error for a kernel errno on ``field`` of ``pf``/``vf``.

    ENODEV/ENOENT/ENXIO: ``VfNotFound``; EOPNOTSUPP/EPROTONOSUPPORT: ``VfUnsupported`` (the
    driver lacks the operation — e.g. ``min_tx_rate`` on many Intel NICs, LP#1918464); anything
    else (EINVAL, EPERM, EBUSY, ...): ``VfError``. The message carries ``os.strerror``.
    """
    kind: type[VfError] = VfError
    if code in _NOT_FOUND:
        kind = VfNotFound
    elif code in _UNSUPPORTED:
        kind = VfUnsupported
    return _kernel_error(kind, pf, vf, field, code)


def missing_pf(pf: str, vf: int) -> VfNotFound:
    """The error for a PF netdev that does not exist (what the kernel says: ENODEV)."""
    return _kernel_error(VfNotFound, pf, vf, LINK_FIELD, errno.ENODEV)


def _kernel_error(kind: type[_E], pf: str, vf: int, field: str, code: int) -> _E:
    text = os.strerror(code)
    name = errno.errorcode.get(code, str(code))
    return kind(
        f"{text} ({name})", pf=pf, vf=vf, field=field, errno=code, errno_text=text, rule="kernel"
    )


def check_index(pf: str, vf: int, count: int) -> None:
    """Refuse a VF index the PF does not have (``0 <= vf < count``)."""
    if not 0 <= vf < count:
        raise VfNotFound(
            f"VF index {vf} is not below the PF's VF count ({count})"
            + (
                "; the link has no VFs (not an SR-IOV PF, or sriov_numvfs is 0)"
                if not count
                else ""
            ),
            pf=pf,
            vf=vf,
            field="vf",
            rule="index",
        )
