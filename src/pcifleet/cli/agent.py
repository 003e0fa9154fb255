"""``pcifleet agent``: the host agent as a long-running process (one per hypervisor).

::

    pcifleet agent --controller http://ctl:8774 --token $AGENT_TOKEN \\
        --spec /etc/pcifleet/device_spec.json --interval 10

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
from pcifleet.host.qualify import load_spec_file
from pcifleet.host.rescan import Rescanner
from pcifleet.host.sysfs import SysfsReader

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
) -> None:
    """Run the host agent: register, scan, report, heartbeat, apply the desired state."""
    logging.basicConfig(stream=sys.stderr, level=log_level.upper(), format=LOG_FORMAT)
    config = AgentConfig(
        host=host_name or socket.gethostname(), specs=_specs(spec), interval=interval
    )
    stop = threading.Event()
    _stop_on_signals(stop)
    rescanner = Rescanner(SysfsReader.for_directory(sysfs_root))
    with PcifleetClient(controller, token, timeout=10) as client:
        code = Agent(client, rescanner, config).run(stop, once=once)
    raise typer.Exit(code)
