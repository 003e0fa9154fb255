"""libvirt's list syntax for CPU and NUMA node sets (``0-3,8,10-11``).

``cpuset``, ``nodeset`` and ``<cell cpus=...>`` all take this syntax; writing ranges keeps the
rendered XML short and equal to what libvirt itself prints back (so round-trip comparisons in
the tests are plain string equality).
"""

from __future__ import annotations

from collections.abc import Iterable


def format_cpuset(values: Iterable[int]) -> str:
    """Sorted, de-duplicated ranges: ``{3, 0, 1, 2, 8}`` -> ``"0-3,8"``; empty -> ``""``."""
    ordered = sorted(set(values))
    parts: list[str] = []
    start = prev = None
    for value in ordered:
        if prev is not None and value == prev + 1:
            prev = value
            continue
        if start is not None:
            parts.append(_span(start, prev))
        start = prev = value
    if start is not None:
        parts.append(_span(start, prev))
    return ",".join(parts)


def _span(start: int, end: int | None) -> str:
    return str(start) if end is None or end == start else f"{start}-{end}"
