"""``pcifleet groups ...`` and ``pcifleet flavors ...``: tables, --json, errors with codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_kit import Cli

NOVA_ALIASES = (
    '[{"name": "gpu", "vendor_id": "10de", "product_id": "2330", "numa_policy": "required"},'
    ' {"name": "qat", "vendor_id": "8086", "product_id": "4941"}]'
)


def test_group_create_list_show_update_delete(run: Cli) -> None:
    created = run(
        "groups", "create", "vf-net",
        "--match", "8086:154c,physical_network=physnet1",
        "--match", "15b3:101e",
        "--device-type", "type-VF", "--numa-policy", "socket", "--trait", "CUSTOM_FAST",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    assert "group vf-net created (public)" in created.stdout
    table = run("groups", "list")
    assert table.exit_code == 0
    assert "vf-net" in table.stdout and "8086:154c,physical_network=physnet1" in table.stdout
    listed = json.loads(run("groups", "list", "--json").stdout)
    assert [(g["name"], g["device_type"], len(g["match"])) for g in listed] == [
        ("vf-net", "type-VF", 2)
    ]
    updated = run("groups", "update", "vf-net", "--numa-policy", "required", "--json")
    assert json.loads(updated.stdout)["numa_policy"] == "required"
    shown = run("groups", "show", "vf-net")
    assert "required" in shown.stdout and "CUSTOM_FAST" in shown.stdout
    assert run("groups", "delete", "vf-net").exit_code == 0
    assert json.loads(run("groups", "list", "--json").stdout) == []


def test_group_quota_set_and_remove(run: Cli) -> None:
    run("groups", "create", "gpu", "--match", "10de:2330")
    quota = run("groups", "quota", "gpu", "--project", "alice", "--limit", "2", "--json")
    assert json.loads(quota.stdout)["quotas"] == [{"project": "alice", "limit": 2}]
    removed = run("groups", "quota", "gpu", "--project", "alice", "--remove", "--json")
    assert json.loads(removed.stdout)["quotas"] == []
    both = run("groups", "quota", "gpu", "--project", "alice", "--remove", "--limit", "1")
    assert both.exit_code == 2 and "exactly one" in both.stderr


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (["groups", "show", "missing"], 5, "pcifleet.not_found"),
        (["groups", "create", "g", "--match", "8086"], 2, "--match"),
        (["groups", "create", "g", "--match", "8086:zz"], 2, "--match"),
        (["groups", "create", "g", "--match", "8086:154c,nokey"], 2, "key=value"),
        (["groups", "create", "g"], 2, "--match"),
        (["groups", "create", "g", "--match", "8086:154c", "--numa-policy", "x"], 2, "numa-policy"),
        (["flavors", "create", "f", "--vcpus", "0", "--memory-mb", "1"], 2, "--vcpus"),
        (
            ["flavors", "create", "f", "--vcpus", "1", "--memory-mb", "1", "--extra-spec", "x"],
            2,
            "KEY=VALUE",
        ),
        (
            ["flavors", "create", "f", "--vcpus", "1", "--memory-mb", "1",
             "--extra-spec", "hw:cpu_policy=odd"],
            2,
            "pcifleet.flavor.invalid",
        ),
        (["flavors", "delete", "missing"], 5, "not found"),
    ],
)  # fmt: skip
def test_errors_print_the_code_and_exit_by_kind(
    run: Cli, args: list[str], exit_code: int, message: str
) -> None:
    result = run(*args)
    assert result.exit_code == exit_code, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("filename", "text"), [("alias.json", NOVA_ALIASES)])
def test_groups_load_creates_then_updates(
    run: Cli, tmp_path: Path, filename: str, text: str
) -> None:
    path = tmp_path / filename
    path.write_text(text)
    first = run("groups", "load", str(path), "--json")
    assert json.loads(first.stdout) == {"gpu": "created", "qat": "created"}
    second = run("groups", "load", str(path))
    assert "group gpu updated" in second.stdout
    shown = json.loads(run("groups", "show", "gpu", "--json").stdout)
    assert shown["numa_policy"] == "required"


def test_flavor_create_list_show_delete(run: Cli) -> None:
    created = run(
        "flavors", "create", "nfv", "--vcpus", "4", "--memory-mb", "8192",
        "--numa-nodes", "2", "--cpu-policy", "dedicated", "--hugepage-size", "1GB",
        "--extra-spec", "pci_passthrough:alias=gpu:1,qat:2",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    table = run("flavors", "list").stdout
    assert "nfv" in table and "gpu:1, qat:2" in table and "dedicated" in table
    shown = json.loads(run("flavors", "show", "nfv", "--json").stdout)
    assert shown["extra_specs"]["pci_passthrough:alias"] == "gpu:1,qat:2"
    assert shown["page_size"] == "1048576"
    assert run("flavors", "delete", "nfv").exit_code == 0
    assert json.loads(run("flavors", "list", "--json").stdout) == []
