"""libvirt's CPU/node list syntax: ranges, sorted, de-duplicated."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcifleet.host.libvirt.cpuset import format_cpuset


@pytest.mark.parametrize(
    ("values", "text"),
    [
        ([], ""),
        ([0], "0"),
        ([3, 0, 1, 2, 8], "0-3,8"),
        ([1, 1, 2], "1-2"),
        ([5, 7, 9], "5,7,9"),
        ([10, 11, 20, 21, 2, 3], "2-3,10-11,20-21"),
        (range(64), "0-63"),
    ],
)
def test_format(values: list[int], text: str) -> None:
    assert format_cpuset(values) == text


def _expand(text: str) -> set[int]:
    result: set[int] = set()
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        result.update(range(int(low), int(high or low) + 1))
    return result


@given(st.sets(st.integers(min_value=0, max_value=512)))
def test_ranges_hold_exactly_the_values(values: set[int]) -> None:
    text = format_cpuset(values)
    assert _expand(text) == values
    # maximal ranges: no two parts touch, so the text is as short as libvirt's own
    parts = [_expand(p) for p in filter(None, text.split(","))]
    for left, right in itertools.pairwise(parts):
        assert min(right) > max(left) + 1
