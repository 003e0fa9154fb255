"""Which hypervisor URI ``pcifleet agent`` registers for live migrations to its host."""

from __future__ import annotations

import pytest

from pcifleet.cli.agent import _reachable


@pytest.mark.parametrize(
    ("uri", "registered"),
    [
        ("qemu+tls://h2/system", "qemu+tls://h2/system"),
        ("qemu+ssh://root@h2/system", "qemu+ssh://root@h2/system"),
        ("fake:///var/lib/h2.json", "fake:///var/lib/h2.json"),
        ("qemu:///system", None),  # local only: other hosts cannot reach it
        ("fake://", None),  # in memory, in this process only
        ("fake://host/path", None),  # malformed: --hypervisor-uri reports it
    ],
)
def test_only_uris_other_hosts_can_reach_are_registered(uri: str, registered: str | None) -> None:
    assert _reachable(uri) == registered
