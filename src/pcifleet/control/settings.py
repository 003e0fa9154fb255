"""Controller settings: one typed object, built explicitly from the environment and flags.

Nothing reads the environment at import time or inside constructors: the CLI (or a test)
calls :func:`settings_from_env` once and passes the result down.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pcifleet.domain.errors import InvalidInput
from pcifleet.network.mac import MacPrefix
from pcifleet.network.policy import parse_policy
from pcifleet.network.segments import VlanRanges, parse_vni_ranges

ENV_DATA_DIR: Final = "PCIFLEET_DATA_DIR"
ENV_DATABASE_URL: Final = "PCIFLEET_DATABASE_URL"
ENV_HEARTBEAT_TIMEOUT: Final = "PCIFLEET_HEARTBEAT_TIMEOUT"
ENV_CLAIM_RETRIES: Final = "PCIFLEET_CLAIM_RETRIES"
ENV_WEIGHER: Final = "PCIFLEET_WEIGHER"
ENV_HOST_SUBSET_SIZE: Final = "PCIFLEET_HOST_SUBSET_SIZE"
ENV_VF_STRATEGY: Final = "PCIFLEET_VF_STRATEGY"
ENV_NETWORK_VLAN_RANGES: Final = "PCIFLEET_NETWORK_VLAN_RANGES"
ENV_NETWORK_VNI_RANGES: Final = "PCIFLEET_NETWORK_VNI_RANGES"
ENV_MAC_PREFIX: Final = "PCIFLEET_MAC_PREFIX"
ENV_MIXED_VNIC_POLICY: Final = "PCIFLEET_MIXED_VNIC_POLICY"
ENV_REQUEST_THREADS: Final = "PCIFLEET_REQUEST_THREADS"

DEFAULT_HEARTBEAT_TIMEOUT_S: Final = 60.0
DEFAULT_CLAIM_RETRIES: Final = 5
#: a claim picks at random among this many of the best hosts (Nova's host_subset_size; 1:
#: the best, as Nova's default — a bigger subset spreads even uncontended boots, which costs
#: packing on small fleets). Concurrent claims spread anyway: they skip hosts another claim
#: holds or another process changed (pcifleet.control.scheduler.scheduler)
DEFAULT_HOST_SUBSET_SIZE: Final = 1
#: HTTP requests a serving process runs at once, each from its arrival to its response (the
#: others wait in line, first come first served: pcifleet.control.api.slots). Claims are
#: CPU-bound Python: threads of one process only share its interpreter lock, and
#: interleaving them stretches every request (on the 2-core machine of
#: benchmarks/http_boot.py, 1 gave ~30% more boots/s than 40 and a shorter tail); scale with
#: ``--workers`` instead
DEFAULT_REQUEST_THREADS: Final = 1
DATABASE_FILE: Final = "pcifleet.db"
#: host order: fill hosts first (pack) or use the emptiest first (spread)
WEIGHERS: Final = ("pack", "spread")
#: VF choice inside a host: fill PFs already in use first (pack) or the freest PF (spread)
VF_STRATEGIES: Final = ("pack", "spread")
#: Neutron's ``network_vlan_ranges`` / ``vni_ranges`` / base MAC defaults
DEFAULT_NETWORK_VLAN_RANGES: Final = "physnet1:1000:1999,physnet2:2000:2999"
DEFAULT_NETWORK_VNI_RANGES: Final = "1:65535"
DEFAULT_MAC_PREFIX: Final = "fa:16:3e"
DEFAULT_MIXED_VNIC_POLICY: Final = "warn"
#: setting -> (its environment variable, the parser that validates it)
_NETWORK_SETTINGS: Final = {
    "network_vlan_ranges": (ENV_NETWORK_VLAN_RANGES, VlanRanges.parse),
    "network_vni_ranges": (ENV_NETWORK_VNI_RANGES, parse_vni_ranges),
    "mac_prefix": (ENV_MAC_PREFIX, MacPrefix.parse),
    "mixed_vnic_policy": (ENV_MIXED_VNIC_POLICY, parse_policy),
}


class InvalidSetting(InvalidInput):
    code = "pcifleet.settings.invalid"
    template = "setting {field}: {detail}"


@dataclass(frozen=True, slots=True)
class Settings:
    """What the controller needs to run; immutable once built."""

    data_dir: Path
    database_url: str
    #: a host whose last heartbeat is older than this (seconds) is marked down
    heartbeat_timeout_s: float = DEFAULT_HEARTBEAT_TIMEOUT_S
    #: how often a claim that lost a compare-and-swap re-reads and tries again
    claim_retries: int = DEFAULT_CLAIM_RETRIES
    #: one of :data:`WEIGHERS`
    weigher: str = "pack"
    #: how many of the best hosts a claim picks among at random (1: deterministic)
    host_subset_size: int = DEFAULT_HOST_SUBSET_SIZE
    #: one of :data:`VF_STRATEGIES`
    vf_strategy: str = "pack"
    #: ``physnet:min:max`` entries VLAN ids are allocated from (a bare physnet: no range)
    network_vlan_ranges: str = DEFAULT_NETWORK_VLAN_RANGES
    #: ``min:max`` entries VXLAN VNIs are allocated from
    network_vni_ranges: str = DEFAULT_NETWORK_VNI_RANGES
    #: the first octets of allocated port MACs (``fa:16:3e``)
    mac_prefix: str = DEFAULT_MAC_PREFIX
    #: allow | warn | deny an instance mixing vnic types that migrate differently
    mixed_vnic_policy: str = DEFAULT_MIXED_VNIC_POLICY
    #: requests one serving process runs at once (see :data:`DEFAULT_REQUEST_THREADS`)
    request_threads: int = DEFAULT_REQUEST_THREADS

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("weigher", self.weigher, WEIGHERS),
            ("vf_strategy", self.vf_strategy, VF_STRATEGIES),
        ):
            if value not in allowed:
                raise InvalidSetting(
                    f"{value!r} is not one of {', '.join(allowed)}", field=name, rule="enum"
                )
        if self.heartbeat_timeout_s <= 0:
            raise InvalidSetting(
                "must be a positive number of seconds", field="heartbeat_timeout_s", rule="range"
            )
        if self.claim_retries < 0:
            raise InvalidSetting(
                "must be zero or a positive integer", field="claim_retries", rule="range"
            )
        for name, count in (
            ("host_subset_size", self.host_subset_size),
            ("request_threads", self.request_threads),
        ):
            if count < 1:
                raise InvalidSetting("must be a positive integer", field=name, rule="range")
        self._check_network()

    def _check_network(self) -> None:
        """Parse each networking setting now, so a bad value stops the server at start."""
        for name, (env, parse) in _NETWORK_SETTINGS.items():
            value = getattr(self, name)
            try:
                parse(value)
            except InvalidInput as exc:
                raise InvalidSetting(
                    f"{exc} (set by {env} or --{name.replace('_', '-')})",
                    field=name,
                    rule=exc.fields.get("rule", "format"),
                ) from None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_DATA_HOME/pcifleet``, else ``~/.local/share/pcifleet`` (per user)."""
    xdg = environ.get("XDG_DATA_HOME")
    if xdg:
        return Path(xdg) / "pcifleet"
    home = environ.get("HOME")
    base = Path(home) if home else Path(os.path.expanduser("~"))
    return base / ".local" / "share" / "pcifleet"


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / DATABASE_FILE}"


def settings_from_env(
    environ: Mapping[str, str],
    data_dir: Path | str | None = None,
    database_url: str | None = None,
) -> Settings:
    """Settings from explicit arguments (flags) first, then ``environ``, then defaults."""
    chosen_dir = _data_dir(environ, data_dir)
    url = database_url or environ.get(ENV_DATABASE_URL) or sqlite_url(chosen_dir)
    return Settings(
        data_dir=chosen_dir,
        database_url=url,
        heartbeat_timeout_s=_number(environ, ENV_HEARTBEAT_TIMEOUT, DEFAULT_HEARTBEAT_TIMEOUT_S),
        claim_retries=int(_number(environ, ENV_CLAIM_RETRIES, DEFAULT_CLAIM_RETRIES, True)),
        weigher=environ.get(ENV_WEIGHER, "pack").strip().lower() or "pack",
        host_subset_size=int(
            _number(environ, ENV_HOST_SUBSET_SIZE, DEFAULT_HOST_SUBSET_SIZE, True)
        ),
        vf_strategy=environ.get(ENV_VF_STRATEGY, "pack").strip().lower() or "pack",
        network_vlan_ranges=_text(environ, ENV_NETWORK_VLAN_RANGES, DEFAULT_NETWORK_VLAN_RANGES),
        network_vni_ranges=_text(environ, ENV_NETWORK_VNI_RANGES, DEFAULT_NETWORK_VNI_RANGES),
        mac_prefix=_text(environ, ENV_MAC_PREFIX, DEFAULT_MAC_PREFIX).lower(),
        mixed_vnic_policy=_text(environ, ENV_MIXED_VNIC_POLICY, DEFAULT_MIXED_VNIC_POLICY).lower(),
        request_threads=int(_number(environ, ENV_REQUEST_THREADS, DEFAULT_REQUEST_THREADS, True)),
    )


def _text(environ: Mapping[str, str], name: str, default: str) -> str:
    """A string setting; unset or blank means the default (an empty VLAN range list is not
    useful enough to be spelled by an empty variable)."""
    raw = environ.get(name)
    return default if raw is None or not raw.strip() else raw.strip()


def _data_dir(environ: Mapping[str, str], given: Path | str | None) -> Path:
    if given is not None and str(given) != "":
        return Path(given).expanduser()
    from_env = environ.get(ENV_DATA_DIR)
    if from_env:
        return Path(from_env).expanduser()
    return default_data_dir(environ)


def _number(environ: Mapping[str, str], name: str, default: float, integer: bool = False) -> float:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise InvalidSetting(f"{raw!r} is not {kind}", field=name, rule="type") from None
