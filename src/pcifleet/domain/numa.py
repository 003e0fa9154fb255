"""NUMA cells of a host, as discovery reports them and the fit reasons about them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HugePages:
    size_kb: int
    total: int
    free: int


@dataclass(frozen=True, slots=True)
class NumaCell:
    id: int
    #: the CPU socket (physical package) of the cell; None when unknown
    socket: int | None
    cpus: frozenset[int]
    memory_mb: int
    hugepages: tuple[HugePages, ...] = ()
