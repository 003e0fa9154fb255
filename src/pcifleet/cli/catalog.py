"""``pcifleet groups ...`` and ``pcifleet flavors ...``: what tenants may ask for.

``--match`` takes ``VENDOR:PRODUCT`` with optional tags, e.g. ``8086:154c,physical_network=
physnet1`` (``*`` for any vendor or product); repeat it for alternatives. ``groups load FILE``
reads pcifleet's TOML/YAML group files or Nova ``[pci] alias`` JSON and creates or updates
each group through the API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pcifleet.cli.connect import DEFAULT_URL, AsJson, Token, Url, session
from pcifleet.cli.output import Column
from pcifleet.client import PcifleetClient
from pcifleet.control.api.schemas.flavors import FlavorCreate
from pcifleet.control.api.schemas.groups import GroupCreate, GroupOut, GroupUpdate, MatchIn
from pcifleet.control.services.groups import read_groups_file
from pcifleet.domain.errors import AlreadyExists, InvalidInput
from pcifleet.domain.group import DeviceGroup

groups_app = typer.Typer(
    name="groups", help="Device groups (Nova's PCI aliases).", no_args_is_help=True
)
flavors_app = typer.Typer(
    name="flavors", help="Guest shapes and their device requests.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(groups_app)
    app.add_typer(flavors_app)


def _match_text(group: GroupOut) -> list[str]:
    texts = []
    for m in group.match:
        ids = f"{m.vendor_id or '*'}:{m.product_id or '*'}"
        tags = ",".join(f"{k}={v}" for k, v in m.tags.items())
        texts.append(f"{ids},{tags}" if tags else ids)
    return texts


GROUP_COLUMNS = (
    Column("Name", lambda g: g.name, no_wrap=True),
    Column("Project", lambda g: g.project or "(public)"),
    Column("Match", _match_text),
    Column("Type", lambda g: g.device_type),
    Column("NUMA policy", lambda g: g.numa_policy),
    Column("Quotas", lambda g: {q.project: q.limit for q in g.quotas}),
)
GROUP_FIELDS = (
    Column("name", lambda g: g.name),
    Column("id", lambda g: g.id),
    Column("project", lambda g: g.project or "(public)"),
    Column("match", _match_text),
    Column("device type", lambda g: g.device_type),
    Column("numa policy", lambda g: g.numa_policy),
    Column("live migratable", lambda g: g.live_migratable),
    Column("resource class", lambda g: g.resource_class),
    Column("traits", lambda g: g.traits),
    Column("quotas", lambda g: {q.project: q.limit for q in g.quotas}),
    Column("description", lambda g: g.description),
    Column("source", lambda g: g.source),
)
FLAVOR_COLUMNS = (
    Column("Name", lambda f: f.name, no_wrap=True),
    Column("vCPUs", lambda f: f.vcpus, "right"),
    Column("Memory MiB", lambda f: f.memory_mb, "right"),
    Column("NUMA nodes", lambda f: f.numa_nodes, "right"),
    Column("CPU policy", lambda f: f.cpu_policy),
    Column("Pages", lambda f: f.page_size),
    Column("Devices", lambda f: [f"{g.group}:{g.count}" for g in f.device_groups]),
    Column("PCI NUMA policy", lambda f: f.pci_numa_policy),
)
FLAVOR_FIELDS = (
    Column("name", lambda f: f.name),
    Column("id", lambda f: f.id),
    Column("vcpus", lambda f: f.vcpus),
    Column("memory MiB", lambda f: f.memory_mb),
    Column("numa nodes", lambda f: f.numa_nodes),
    Column("cpu policy", lambda f: f.cpu_policy),
    Column("page size", lambda f: f.page_size),
    Column("devices", lambda f: [f"{g.group}:{g.count}" for g in f.device_groups]),
    Column("pci numa policy", lambda f: f.pci_numa_policy),
    Column("extra specs", lambda f: f.extra_specs),
    Column("description", lambda f: f.description),
)

Matches = Annotated[
    list[str] | None,
    typer.Option("--match", help="VENDOR:PRODUCT[,tag=value...]; repeat for alternatives."),
]
Traits = Annotated[list[str] | None, typer.Option("--trait", help="Required trait; repeatable.")]


def parse_match(text: str) -> MatchIn:
    """``8086:154c,physical_network=physnet1`` -> a match (``*`` = any); errors name --match."""
    ids, _, rest = text.partition(",")
    vendor, colon, product = ids.partition(":")
    if not colon:
        raise InvalidInput(
            f"--match {text!r}: expected VENDOR:PRODUCT[,tag=value...]",
            field="--match",
            rule="format",
        )
    tags: dict[str, str] = {}
    for item in filter(None, rest.split(",")):
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise InvalidInput(
                f"--match {text!r}: tag {item!r} is not key=value", field="--match", rule="format"
            )
        tags[key.strip()] = value.strip()
    fields: dict[str, Any] = {"tags": tags}
    for name, value in (("vendor_id", vendor.strip()), ("product_id", product.strip())):
        if value not in ("", "*"):
            fields[name] = value
    try:
        return MatchIn.model_validate(fields)
    except ValueError as exc:
        raise InvalidInput(f"--match {text!r}: {exc}", field="--match", rule="format") from None


def _group_body(group: DeviceGroup) -> GroupCreate:
    native = group.to_dict()
    native["project"] = native.pop("owner")
    native = {k: v for k, v in native.items() if v is not None}
    return GroupCreate.model_validate(native)


def _upsert(client: PcifleetClient, group: DeviceGroup) -> str:
    body = _group_body(group)
    try:
        client.create_group(body)
        return "created"
    except AlreadyExists:
        changes = GroupUpdate.model_validate(body.model_dump(exclude={"name"}))
        client.update_group(group.name, changes)
        return "updated"


@groups_app.command("list")
def list_groups(
    project: Annotated[
        str | None, typer.Option(help="Public groups and this project's (admin).")
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """The groups you may see."""
    with session(url, token, as_json) as (client, out):
        out.table(client.list_groups(project), GROUP_COLUMNS)


@groups_app.command("show")
def show_group(
    name: str, url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False
) -> None:
    """One group with its quotas."""
    with session(url, token, as_json) as (client, out):
        out.detail(client.show_group(name), GROUP_FIELDS, title=f"Group {name}")


@groups_app.command("create")
def create_group(
    name: str,
    match: Matches = None,
    device_type: Annotated[str | None, typer.Option(help="type-PCI, type-PF or type-VF")] = None,
    numa_policy: Annotated[
        str, typer.Option(help="required, socket, preferred or legacy")
    ] = "legacy",
    live_migratable: Annotated[
        bool | None, typer.Option("--live-migratable/--not-live-migratable")
    ] = None,
    resource_class: Annotated[str | None, typer.Option(help="Placement resource class.")] = None,
    trait: Traits = None,
    project: Annotated[str | None, typer.Option(help="Owning project (default: public).")] = None,
    description: Annotated[str | None, typer.Option(help="Free text.")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Create a device group."""
    with session(url, token, as_json) as (client, out):
        body = GroupCreate.model_validate(
            {
                "name": name,
                "match": [parse_match(m) for m in match or []],
                "device_type": device_type,
                "numa_policy": numa_policy,
                "live_migratable": live_migratable,
                "resource_class": resource_class,
                "traits": trait or [],
                "project": project,
                "description": description,
            }
        )
        created = client.create_group(body)
        out.done(f"group {created.name} created ({created.project or 'public'})", created)


@groups_app.command("update")
def update_group(
    name: str,
    match: Matches = None,
    numa_policy: Annotated[
        str | None, typer.Option(help="required, socket, preferred or legacy")
    ] = None,
    live_migratable: Annotated[
        bool | None, typer.Option("--live-migratable/--not-live-migratable")
    ] = None,
    trait: Traits = None,
    description: Annotated[str | None, typer.Option(help="Free text.")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Change the given fields of a group."""
    given = {
        "match": None if match is None else [parse_match(m) for m in match],
        "numa_policy": numa_policy,
        "live_migratable": live_migratable,
        "traits": trait,
        "description": description,
    }
    with session(url, token, as_json) as (client, out):
        changes = GroupUpdate.model_validate({k: v for k, v in given.items() if v is not None})
        updated = client.update_group(name, changes)
        out.done(f"group {updated.name} updated", updated)


@groups_app.command("delete")
def delete_group(
    name: str, url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False
) -> None:
    """Delete a group and its quotas."""
    with session(url, token, as_json) as (client, out):
        client.delete_group(name)
        out.done(f"group {name} deleted", {"deleted": name})


@groups_app.command("quota")
def set_quota(
    name: str,
    project: Annotated[str, typer.Option(help="The project limited.")],
    limit: Annotated[int | None, typer.Option(help="Most devices in use at once.")] = None,
    remove: Annotated[bool, typer.Option("--remove", help="Remove the project's limit.")] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Set (``--limit N``) or remove (``--remove``) a project's quota on a group."""
    with session(url, token, as_json) as (client, out):
        if remove == (limit is not None):
            raise InvalidInput(
                "give exactly one of --limit N and --remove", field="--limit", rule="one_of"
            )
        if remove:
            group = client.delete_group_quota(name, project)
        else:
            assert limit is not None
            group = client.set_group_quota(name, project, limit)
        out.done(
            f"group {name}: quota of {project} {'removed' if remove else f'set to {limit}'}", group
        )


@groups_app.command("load")
def load_groups(
    path: Annotated[
        Path, typer.Argument(help="A .toml/.yaml group file or a .json Nova alias file.")
    ],
    fmt: Annotated[
        str | None, typer.Option("--format", help="toml, yaml or nova (default: from the suffix)")
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Create or update every group of a configuration file."""
    with session(url, token, as_json) as (client, out):
        groups = read_groups_file(path, fmt)
        results = {g.name: _upsert(client, g) for g in out.progress(groups, "Loading groups")}
        if out.as_json:
            out.json(results)
            return
        for name, what in results.items():
            out.done(f"group {name} {what}")


@flavors_app.command("list")
def list_flavors(url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False) -> None:
    """Every flavor."""
    with session(url, token, as_json) as (client, out):
        out.table(client.list_flavors(), FLAVOR_COLUMNS)


@flavors_app.command("show")
def show_flavor(
    name: str, url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False
) -> None:
    """One flavor with its extra specs."""
    with session(url, token, as_json) as (client, out):
        out.detail(client.show_flavor(name), FLAVOR_FIELDS, title=f"Flavor {name}")


def _extra_specs(items: list[str]) -> dict[str, str]:
    specs = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise InvalidInput(
                f"--extra-spec {item!r}: expected KEY=VALUE", field="--extra-spec", rule="format"
            )
        specs[key.strip()] = value.strip()
    return specs


@flavors_app.command("create")
def create_flavor(
    name: str,
    vcpus: Annotated[int, typer.Option(help="Guest CPUs.")],
    memory_mb: Annotated[int, typer.Option(help="Guest memory in MiB.")],
    numa_nodes: Annotated[
        int | None, typer.Option(help="Guest NUMA nodes (hw:numa_nodes).")
    ] = None,
    cpu_policy: Annotated[
        str | None, typer.Option(help="shared or dedicated (hw:cpu_policy).")
    ] = None,
    hugepage_size: Annotated[
        str | None, typer.Option(help="small, large, any, 2MB, 1GB (hw:mem_page_size).")
    ] = None,
    extra_spec: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE Nova extra spec; repeatable.")
    ] = None,
    description: Annotated[str | None, typer.Option(help="Free text.")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Create a flavor (e.g. --extra-spec pci_passthrough:alias=gpu:1)."""
    with session(url, token, as_json) as (client, out):
        body = FlavorCreate.model_validate(
            {
                "name": name,
                "vcpus": vcpus,
                "memory_mb": memory_mb,
                "numa_nodes": numa_nodes,
                "cpu_policy": cpu_policy,
                "hugepage_size": hugepage_size,
                "extra_specs": _extra_specs(extra_spec or []),
                "description": description,
            }
        )
        created = client.create_flavor(body)
        out.done(f"flavor {created.name} created", created)


@flavors_app.command("delete")
def delete_flavor(
    name: str, url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False
) -> None:
    """Delete a flavor (instances keep their copy)."""
    with session(url, token, as_json) as (client, out):
        client.delete_flavor(name)
        out.done(f"flavor {name} deleted", {"deleted": name})
