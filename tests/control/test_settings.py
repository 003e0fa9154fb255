"""Controller settings: flags first, then the environment, then per-user defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from pcifleet.control.settings import (
    DEFAULT_CLAIM_RETRIES,
    DEFAULT_HEARTBEAT_TIMEOUT_S,
    InvalidSetting,
    Settings,
    settings_from_env,
)


@pytest.mark.parametrize(
    ("environ", "flag", "data_dir"),
    [
        ({"HOME": "/home/ann"}, None, Path("/home/ann/.local/share/pcifleet")),
        ({"HOME": "/home/ann", "XDG_DATA_HOME": "/xdg"}, None, Path("/xdg/pcifleet")),
        ({"HOME": "/h", "PCIFLEET_DATA_DIR": "/srv/pf"}, None, Path("/srv/pf")),
        ({"HOME": "/h", "PCIFLEET_DATA_DIR": "/srv/pf"}, "/flag", Path("/flag")),
    ],
)
def test_data_dir_precedence(environ: dict[str, str], flag: str | None, data_dir: Path) -> None:
    settings = settings_from_env(environ, data_dir=flag)
    assert settings.data_dir == data_dir
    assert settings.database_url == f"sqlite:///{data_dir}/pcifleet.db"
    assert settings.is_sqlite
    assert settings.heartbeat_timeout_s == DEFAULT_HEARTBEAT_TIMEOUT_S
    assert settings.claim_retries == DEFAULT_CLAIM_RETRIES


def test_database_url_and_numbers_from_the_environment() -> None:
    url = "postgresql+psycopg://pcifleet@db/pcifleet"
    settings = settings_from_env(
        {
            "HOME": "/h",
            "PCIFLEET_DATABASE_URL": url,
            "PCIFLEET_HEARTBEAT_TIMEOUT": "12.5",
            "PCIFLEET_CLAIM_RETRIES": "9",
            "PCIFLEET_REQUEST_THREADS": "3",
        }
    )
    numbers = (settings.heartbeat_timeout_s, settings.claim_retries, settings.request_threads)
    assert (settings.database_url, *numbers) == (url, 12.5, 9, 3)
    assert not settings.is_sqlite
    assert settings_from_env({"HOME": "/h"}).request_threads == 1


@pytest.mark.parametrize(
    ("environ", "field"),
    [
        ({"PCIFLEET_HEARTBEAT_TIMEOUT": "soon"}, "PCIFLEET_HEARTBEAT_TIMEOUT"),
        ({"PCIFLEET_CLAIM_RETRIES": "2.5"}, "PCIFLEET_CLAIM_RETRIES"),
        ({"PCIFLEET_HEARTBEAT_TIMEOUT": "0"}, "heartbeat_timeout_s"),
        ({"PCIFLEET_CLAIM_RETRIES": "-1"}, "claim_retries"),
        ({"PCIFLEET_REQUEST_THREADS": "many"}, "PCIFLEET_REQUEST_THREADS"),
        ({"PCIFLEET_REQUEST_THREADS": "0"}, "request_threads"),
    ],
)
def test_bad_values_name_the_setting(environ: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidSetting) as info:
        settings_from_env({"HOME": "/h", **environ})
    assert info.value.fields["field"] == field
    assert info.value.status == 400


def test_settings_are_immutable() -> None:
    settings = Settings(Path("/d"), "sqlite:///d/x.db")
    with pytest.raises(AttributeError):
        settings.claim_retries = 3  # type: ignore[misc]


def test_weigher_and_vf_strategy_default_to_pack_and_come_from_the_environment() -> None:
    assert settings_from_env({"HOME": "/h"}).weigher == "pack"
    settings = settings_from_env(
        {"HOME": "/h", "PCIFLEET_WEIGHER": "Spread", "PCIFLEET_VF_STRATEGY": "spread"}
    )
    assert (settings.weigher, settings.vf_strategy) == ("spread", "spread")


@pytest.mark.parametrize("name", ["PCIFLEET_WEIGHER", "PCIFLEET_VF_STRATEGY"])
def test_an_unknown_strategy_names_the_setting_and_the_choices(name: str) -> None:
    with pytest.raises(InvalidSetting) as caught:
        settings_from_env({"HOME": "/h", name: "random"})
    assert caught.value.fields["rule"] == "enum"
    assert "'random' is not one of pack, spread" in str(caught.value)
