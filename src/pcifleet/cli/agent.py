"""``pcifleet agent``: the host agent as a long-running process (one per hypervisor).

::

    pcifleet agent --controller http://ctl:8774 --token $AGENT_TOKEN \\
        --spec /etc/pcifleet/device_spec.json --interval 10 \\
        --physical-device-mappings physnet1:ens1f0,physnet2:ens2f0 \\
        --exclude-devices 'ens1f0:0000:18:02.3;0000:18:02.4'

It plugs instances through libvirt (``--hypervisor-uri``, default ``qemu:///system``;
``fake://`` keeps domains in memory, ``fake:///PATH`` in a JSON file that outlives the agent)
after configuring their VFs through netlink (``--vf-configurator netlink``; ``fake`` keeps VF
tables in memory, seeded from the scan; ``fake:///PATH`` keeps them in a JSON file, seeded
from the scan only when the file does not exist yet).

It logs one line per event to stderr, stops cleanly on SIGTERM or SIGINT, and exits with
:data:`~pcifleet.host.agent.EXIT_REFUSED` (4) when the controller rejects its token.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from pcifleet.client import PcifleetClient
from pcifleet.domain.errors import PcifleetError
from pcifleet.domain.spec import SpecList, parse_spec_list
from pcifleet.host.agent import Agent, AgentConfig
from pcifleet.host.hypervisor import DEFAULT_URI, HypervisorDriver, LibvirtDriver
from pcifleet.host.hypervisor.fake_file import fake_hypervisor, fake_state_path
from pcifleet.host.migrator import Migrator
from pcifleet.host.plugger import HostApplier
from pcifleet.host.qualify import load_spec_file
from pcifleet.host.rescan import Rescanner
from pcifleet.host.sysfs import SysfsReader
from pcifleet.host.vf.configurator import VfConfigurator
from pcifleet.host.vf.fake import FakeVfConfigurator
from pcifleet.host.vf.fake_file import FileBackedFakeVfConfigurator
from pcifleet.host.vf.mapping import AgentMappings
from pcifleet.host.vf.netlink import NetlinkVfConfigurator
from pcifleet.host.vf.service import VfManager

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def register(app: typer.Typer) -> None:
    app.command("agent")(agent)


def _specs(path: Path | None) -> SpecList:
    if path is None:
        return parse_spec_list(())
    try:
        return load_spec_file(path)
    except PcifleetError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _mappings(physical_device_mappings: str, exclude_devices: str) -> AgentMappings | None:
    if not physical_device_mappings.strip():
        if exclude_devices.strip():
            typer.echo("error: --exclude-devices needs --physical-device-mappings", err=True)
            raise typer.Exit(2)
        return None
    try:
        return AgentMappings.parse(physical_device_mappings, exclude_devices)
    except PcifleetError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _reachable(uri: str) -> str | None:
    """The hypervisor URI as other hosts can use it: a remote (``qemu+ssh://...``) or
    file-backed fake URI as is; a local one (``qemu:///system``, in-memory ``fake://``) is not
    reachable from elsewhere, so nothing is registered (migrations here are then refused)."""
    scheme = uri.split(":", 1)[0]
    if "+" in scheme:
        return uri
    try:
        return uri if scheme == "fake" and fake_state_path(uri) is not None else None
    except PcifleetError:
        return None  # a malformed fake URI: --hypervisor-uri reports it


def _hypervisor(uri: str) -> HypervisorDriver:
    """``fake://`` is the in-memory hypervisor (demo, tests), ``fake:///PATH`` the one kept
    in a file (restart tests); anything else is a libvirt URI."""
    if not uri.startswith("fake:"):
        return LibvirtDriver(uri)
    try:
        return fake_hypervisor(uri)
    except PcifleetError as exc:
        typer.echo(f"error: --hypervisor-uri: {exc}", err=True)
        raise typer.Exit(2) from None


def _fake_configurator(kind: str) -> FakeVfConfigurator:
    if kind == "fake":
        return FakeVfConfigurator()
    try:
        path = fake_state_path(kind)
        return FakeVfConfigurator() if path is None else FileBackedFakeVfConfigurator(path)
    except PcifleetError as exc:
        typer.echo(f"error: --vf-configurator: {exc}", err=True)
        raise typer.Exit(2) from None


def _configurator(kind: str, rescanner: Rescanner) -> VfConfigurator:
    """``netlink`` (pyroute2 on the PFs) or ``fake``: in memory, seeded with the PFs the
    scan finds (netdev name and VF count), for hosts without SR-IOV NICs; ``fake:///PATH``
    as ``fake`` but kept in ``PATH`` (seeded once, then read back after a restart)."""
    if kind == "netlink":
        return NetlinkVfConfigurator()
    if kind != "fake" and not kind.startswith("fake:"):
        typer.echo(
            f"error: --vf-configurator {kind!r}: expected netlink, fake or fake:///PATH", err=True
        )
        raise typer.Exit(2)
    fake = _fake_configurator(kind)
    if isinstance(fake, FileBackedFakeVfConfigurator) and fake.loaded:
        return fake
    for pf in rescanner.scan().physical_functions():
        if pf.netdev_names and pf.sriov is not None:
            fake.add_pf(pf.netdev_names[0], pf.sriov.numvfs)
    return fake


def _stop_on_signals(stop: threading.Event) -> None:
    def handle(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("pcifleet.agent").info(
            "received %s, stopping", signal.Signals(signum).name
        )
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def agent(
    controller: Annotated[str, typer.Option(help="The controller's base URL.")],
    token: Annotated[
        str, typer.Option(envvar="PCIFLEET_TOKEN", help="An agent token for this host.")
    ],
    host_name: Annotated[
        str | None, typer.Option(help="This host's name (default: the system's host name).")
    ] = None,
    sysfs_root: Annotated[
        Path, typer.Option(help="Directory holding sys/ (a fake tree in tests).")
    ] = Path("/"),
    spec: Annotated[
        Path | None, typer.Option(help="Device spec file (Nova [pci] device_spec values).")
    ] = None,
    interval: Annotated[
        float, typer.Option(help="Seconds between rescans and heartbeats.", min=0.05)
    ] = 10.0,
    once: Annotated[bool, typer.Option("--once", help="Run one cycle and exit.")] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
    hypervisor_uri: Annotated[
        str,
        typer.Option(
            help="libvirt URI; fake:// is an in-memory hypervisor, fake:///PATH one kept in PATH."
        ),
    ] = DEFAULT_URI,
    vf_configurator: Annotated[
        str,
        typer.Option(
            help="netlink (pyroute2 on the PF), fake (in memory) or fake:///PATH (kept in PATH)."
        ),
    ] = "netlink",
    physical_device_mappings: Annotated[
        str,
        typer.Option(help="Neutron's physnet:ifname list, e.g. physnet1:ens1f0,physnet2:ens2f0."),
    ] = "",
    exclude_devices: Annotated[
        str, typer.Option(help="Neutron's ifname:addr;addr list of VFs held out of use.")
    ] = "",
    migration_uri: Annotated[
        str | None,
        typer.Option(
            help="URI other hosts migrate guests to, e.g. qemu+tls://HOST/system (default: "
            "--hypervisor-uri when it is a fake:///PATH or remote URI)."
        ),
    ] = None,
) -> None:
    """Run the host agent: register, scan, report, heartbeat, apply the desired state."""
    logging.basicConfig(stream=sys.stderr, level=log_level.upper(), format=LOG_FORMAT)
    config = AgentConfig(
        host=host_name or socket.gethostname(),
        specs=_specs(spec),
        interval=interval,
        mappings=_mappings(physical_device_mappings, exclude_devices),
        hypervisor_uri=migration_uri or _reachable(hypervisor_uri),
    )
    stop = threading.Event()
    _stop_on_signals(stop)
    rescanner = Rescanner(SysfsReader.for_directory(sysfs_root))
    vfs = VfManager(_configurator(vf_configurator, rescanner))
    applier = HostApplier(vfs, _hypervisor(hypervisor_uri))
    with PcifleetClient(controller, token, timeout=10) as client:
        agent = Agent(client, rescanner, config, applier, Migrator(applier))
        code = agent.run(stop, once=once)
    raise typer.Exit(code)
