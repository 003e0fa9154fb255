"""Placements and device requests as the JSON kept on instance rows, and back.

The instance row is the truth about what a guest holds: ``instances.placement`` (cells,
pinned CPUs, the devices of each request) rebuilds the host's CPU and memory usage, and
``instances.requests`` keeps the device requests the guest was placed with (group or port,
count, alternatives, NUMA policy, request id), so quotas, bindings and moves can read them.
Both formats are plain JSON objects with short, stable keys.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import DeviceType
from pcifleet.domain.placement import CellPlacement, Placement
from pcifleet.domain.request import (
    DeviceMatch,
    DeviceRequest,
    NumaPolicy,
    Requester,
    RequesterKind,
)


class InstanceState(enum.StrEnum):
    """An instance's life: building while it is placed, then active, or error; deleted."""

    BUILDING = "building"
    ACTIVE = "active"
    ERROR = "error"
    DELETING = "deleting"
    DELETED = "deleted"


#: instances whose placement consumes host resources
LIVE_STATES: Final = (InstanceState.BUILDING.value, InstanceState.ACTIVE.value)


# --- placements ------------------------------------------------------------------------------


def placement_to_json(placement: Placement) -> dict[str, Any]:
    return {
        "cells": [_cell_to_json(cell) for cell in placement.cells],
        "devices": [[str(a) for a in group] for group in placement.devices],
        "floating_vcpus": placement.floating_vcpus,
        "floating_memory_mb": placement.floating_memory_mb,
    }


def _cell_to_json(cell: CellPlacement) -> dict[str, Any]:
    return {
        "guest_node": cell.guest_node,
        "host_cell": cell.host_cell,
        "vcpus": cell.vcpus,
        "memory_mb": cell.memory_mb,
        "pinned_cpus": sorted(cell.pinned_cpus),
        "hugepage_size_kb": cell.hugepage_size_kb,
        "hugepages": cell.hugepages,
    }


def placement_from_json(instance_id: str, raw: Mapping[str, Any]) -> Placement:
    return Placement(
        instance_id,
        tuple(_cell_from_json(cell) for cell in raw.get("cells", ())),
        tuple(tuple(PciAddress.parse(a) for a in group) for group in raw.get("devices", ())),
        int(raw.get("floating_vcpus", 0)),
        int(raw.get("floating_memory_mb", 0)),
    )


def _cell_from_json(raw: Mapping[str, Any]) -> CellPlacement:
    size = raw.get("hugepage_size_kb")
    return CellPlacement(
        guest_node=int(raw["guest_node"]),
        host_cell=int(raw["host_cell"]),
        vcpus=int(raw["vcpus"]),
        memory_mb=int(raw["memory_mb"]),
        pinned_cpus=frozenset(int(c) for c in raw.get("pinned_cpus", ())),
        hugepage_size_kb=None if size is None else int(size),
        hugepages=int(raw.get("hugepages", 0)),
    )


# --- device requests ---------------------------------------------------------------------------


def requests_to_json(requests: Sequence[DeviceRequest]) -> list[dict[str, Any]]:
    return [
        {
            "request_id": r.request_id,
            "count": r.count,
            "requester": {"kind": r.requester.kind.value, "name": r.requester.name},
            "numa_policy": None if r.numa_policy is None else r.numa_policy.value,
            "alternatives": [_match_to_json(m) for m in r.alternatives],
        }
        for r in requests
    ]


def _match_to_json(match: DeviceMatch) -> dict[str, Any]:
    return {
        "vendor_id": match.vendor_id,
        "product_id": match.product_id,
        "dev_type": None if match.dev_type is None else match.dev_type.value,
        # pairs, not an object: a None value ("no physical network") must survive
        "props": [[key, value] for key, value in match.props],
    }


def requests_from_json(raw: Sequence[Mapping[str, Any]]) -> tuple[DeviceRequest, ...]:
    return tuple(
        DeviceRequest(
            count=int(item["count"]),
            alternatives=tuple(_match_from_json(m) for m in item.get("alternatives", ())),
            requester=Requester(
                RequesterKind(item["requester"]["kind"]), str(item["requester"]["name"])
            ),
            numa_policy=None
            if item.get("numa_policy") is None
            else NumaPolicy(item["numa_policy"]),
            request_id=str(item.get("request_id", "")),
        )
        for item in raw
    )


def _match_from_json(raw: Mapping[str, Any]) -> DeviceMatch:
    dev_type = raw.get("dev_type")
    return DeviceMatch(
        raw.get("vendor_id"),
        raw.get("product_id"),
        None if dev_type is None else DeviceType(dev_type),
        tuple(sorted((str(k), None if v is None else str(v)) for k, v in raw.get("props", ()))),
    )
