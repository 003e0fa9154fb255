"""Networking settings: VLAN/VNI ranges, MAC prefix and the mixed vnic type policy from the
environment (or ``pcifleet server`` flags), validated with errors naming the setting, and
wired into the networks service by the container."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pcifleet.cli.controller import network_environ, network_overrides
from pcifleet.cli.main import app
from pcifleet.control.container import build_services
from pcifleet.control.services.networks import network_options
from pcifleet.control.settings import InvalidSetting, Settings, settings_from_env
from pcifleet.network.policy import MixedVnicPolicy
from pcifleet.network.segments import IdRange


def test_defaults_are_neutrons_devstack_like_values() -> None:
    options = network_options(settings_from_env({"HOME": "/h"}))
    assert options.vlan_ranges.of("physnet1") == (IdRange(1000, 1999),)
    assert options.vlan_ranges.of("physnet2") == (IdRange(2000, 2999),)
    assert options.vni_ranges == (IdRange(1, 65535),)
    assert str(options.mac_prefix) == "fa:16:3e"
    assert options.mixed_vnic_policy is MixedVnicPolicy.WARN


def test_environment_values_reach_the_options() -> None:
    settings = settings_from_env(
        {
            "HOME": "/h",
            "PCIFLEET_NETWORK_VLAN_RANGES": "physnet1:100:199,physnet1:300:310,physnet3",
            "PCIFLEET_NETWORK_VNI_RANGES": "5000:5999",
            "PCIFLEET_MAC_PREFIX": "02:AB:CD",
            "PCIFLEET_MIXED_VNIC_POLICY": "Deny",
        }
    )
    options = network_options(settings)
    assert options.vlan_ranges.of("physnet1") == (IdRange(100, 199), IdRange(300, 310))
    assert options.vlan_ranges.of("physnet3") == ()
    assert options.vni_ranges == (IdRange(5000, 5999),)
    assert str(options.mac_prefix) == "02:ab:cd"
    assert options.mixed_vnic_policy is MixedVnicPolicy.DENY


@pytest.mark.parametrize(
    ("variable", "value", "field", "rule", "words"),
    [
        ("PCIFLEET_NETWORK_VLAN_RANGES", "physnet1:10", "network_vlan_ranges", "format", "min:max"),
        ("PCIFLEET_NETWORK_VLAN_RANGES", ":1:2", "network_vlan_ranges", "format", "empty"),
        ("PCIFLEET_NETWORK_VLAN_RANGES", "p:0:5000", "network_vlan_ranges", "range", "4094"),
        ("PCIFLEET_NETWORK_VNI_RANGES", "9:1", "network_vni_ranges", "range", "9:1"),
        ("PCIFLEET_NETWORK_VNI_RANGES", "1:99999999", "network_vni_ranges", "range", "16777215"),
        ("PCIFLEET_MAC_PREFIX", "zz:00", "mac_prefix", "format", "zz:00"),
        ("PCIFLEET_MAC_PREFIX", "01:00:5e", "mac_prefix", "unicast", "multicast"),
        ("PCIFLEET_MIXED_VNIC_POLICY", "sometimes", "mixed_vnic_policy", "enum", "allow, warn"),
    ],
)
def test_invalid_values_name_the_setting_and_the_rule(
    variable: str, value: str, field: str, rule: str, words: str
) -> None:
    with pytest.raises(InvalidSetting) as caught:
        settings_from_env({"HOME": "/h", variable: value})
    error = caught.value
    assert error.fields["field"] == field
    assert error.fields["rule"] == rule
    assert str(error).startswith(f"setting {field}: ")
    assert variable in str(error) and words in str(error)


def test_blank_variables_mean_the_default() -> None:
    settings = settings_from_env({"HOME": "/h", "PCIFLEET_NETWORK_VLAN_RANGES": "  "})
    assert settings.network_vlan_ranges == Settings(Path("/d"), "sqlite://").network_vlan_ranges


def test_the_container_hands_the_options_to_the_networks_service(tmp_path: Path) -> None:
    environ = {"PCIFLEET_NETWORK_VLAN_RANGES": "physnet9:42:43", "PCIFLEET_MAC_PREFIX": "02:00:01"}
    services = build_services(settings_from_env(environ, data_dir=tmp_path), migrate_schema=True)
    try:
        options = services.networks.options
        assert options.vlan_ranges.of("physnet9") == (IdRange(42, 43),)
        assert str(options.mac_prefix) == "02:00:01"
    finally:
        services.close()


def test_server_flags_become_the_environment_variables_they_stand_for() -> None:
    assert network_overrides("physnet1:1:2", None, "02:00:00", "allow") == {
        "PCIFLEET_NETWORK_VLAN_RANGES": "physnet1:1:2",
        "PCIFLEET_MAC_PREFIX": "02:00:00",
        "PCIFLEET_MIXED_VNIC_POLICY": "allow",
    }
    settings = settings_from_env({"HOME": "/h", **network_environ(Settings(Path("/d"), "x"))})
    assert network_environ(settings) == network_environ(Settings(Path("/d"), "x"))


@pytest.mark.parametrize(
    ("flag", "value", "field"),
    [
        ("--network-vlan-ranges", "physnet1:abc", "network_vlan_ranges"),
        ("--network-vni-ranges", "0:10", "network_vni_ranges"),
        ("--mac-prefix", "not-a-mac", "mac_prefix"),
        ("--mixed-vnic-policy", "never", "mixed_vnic_policy"),
    ],
)
def test_a_bad_server_flag_stops_before_serving(
    tmp_path: Path, flag: str, value: str, field: str
) -> None:
    result = CliRunner().invoke(
        app, ["server", "--data-dir", str(tmp_path), flag, value], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 2, result.output
    assert f"setting {field}:" in result.output
    assert "pcifleet.settings.invalid" in result.output
