"""Fixtures for the libvirt renderer tests: libvirt's schema validator and libvirt's own parser.

- ``validate_xml``: runs Debian's ``virt-xml-validate FILE domain`` (a shell script around
  ``xmllint --relaxng`` and the schemas in ``/usr/share/libvirt/schemas``). Skips when the
  script or ``xmllint`` (package ``libxml2-utils``, which ``libvirt-clients`` only recommends)
  is missing.
- ``define_readback``: ``libvirt.open("test:///default").defineXML(xml)`` then ``XMLDesc()``
  and ``undefine()``: libvirt's real domain parser and post-parse checks, without a
  hypervisor. Skips when ``libvirt-python`` cannot be imported.

What libvirt 9.0's test driver does with these domains (found by running it, recorded here):

- it accepts ``type='kvm'``/``'qemu'`` domains, managed and unmanaged PCI ``<hostdev>``s and
  every ``<interface>`` type used here without looking at the host (no node device, VF netdev,
  ``/dev/vhost-vdpa-N``, bridge or libvirt network has to exist);
- it rejects what its parser rejects: a ``/`` in the name, a VLAN tag above 4095, a multicast
  MAC, the same PCI function twice, more vCPUs in ``<numa>`` than in ``<vcpu>``, a
  ``<memnode>`` or huge page ``nodeset`` naming a missing guest node, ``<memnode>`` without
  guest NUMA cells, ``<memory mode='strict'>`` without a nodeset, interrupt remapping
  without ``<ioapic driver='qemu'/>``;
- it silently drops a ``<vcpupin>`` for a vCPU the guest does not have (only a log warning);
- it has no device hot plug (``attachDeviceFlags`` fails with "this function is not supported
  by the connection driver"), so device fragments are checked wrapped in a minimal domain;
- it adds a generated MAC to interfaces without one and a ``<target dev='testnetN'/>``;
- its ``XMLDesc()`` writes an 802.1Qbh ``profileid`` unescaped (``p&<1>`` comes back raw, which
  is not well-formed XML); pcifleet therefore refuses ``< > & ' "`` in profile ids.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from libvirt_xml_facts import DefineReadback, ValidateXml


@pytest.fixture(scope="session")
def validate_xml(tmp_path_factory: pytest.TempPathFactory) -> ValidateXml:
    """``validate_xml(text)`` fails the test unless ``virt-xml-validate`` accepts the domain."""
    binary = shutil.which("virt-xml-validate")
    if binary is None:
        pytest.skip("virt-xml-validate is not installed (Debian package libvirt-clients)")
    if shutil.which("xmllint") is None:
        pytest.skip("xmllint, which virt-xml-validate runs, is missing (package libxml2-utils)")
    directory = tmp_path_factory.mktemp("domains")
    counter = iter(range(1_000_000))

    def validate(text: str) -> None:
        path = directory / f"domain-{next(counter)}.xml"
        path.write_text(text, encoding="utf-8")
        result = subprocess.run(
            [binary, str(path), "domain"], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"virt-xml-validate refused:\n{result.stderr}\n{text}"

    return validate


def _import_libvirt() -> Any:
    try:
        import libvirt
    except ImportError as exc:
        pytest.skip(f"libvirt-python cannot be imported ({exc}); scripts/setup.sh installs it")
    # without libvirt-python, ``import libvirt`` may find this test directory as a namespace
    # package instead of failing
    if not hasattr(libvirt, "open"):
        pytest.skip("libvirt-python is not installed; scripts/setup.sh installs it")
    return libvirt


@pytest.fixture(scope="session")
def libvirt_module() -> Any:
    return _import_libvirt()


@pytest.fixture(scope="session")
def libvirt_conn(libvirt_module: Any) -> Iterator[Any]:
    """A connection to libvirt's test driver; libvirt's stderr error printer is silenced."""
    libvirt_module.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt_module.open("test:///default")
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def define_readback(libvirt_conn: Any) -> DefineReadback:
    """``define_readback(xml)``: libvirt parses and defines the domain; its XML comes back."""

    def define(text: str) -> str:
        domain = libvirt_conn.defineXML(text)
        try:
            return str(domain.XMLDesc())
        finally:
            domain.undefine()

    return define


@pytest.fixture
def libvirt_error(libvirt_module: Any) -> type[Exception]:
    error: type[Exception] = libvirt_module.libvirtError
    return error
