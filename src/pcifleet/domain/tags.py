"""An immutable, hashable mapping of string tags (spec tags that flow to devices and pools)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final


class Tags(Mapping[str, str]):
    """Frozen ``str -> str`` mapping, ordered by key, hashable, cheap to compare.

    Keys are lower-case tag names; values keep their case as written (Nova compares most of
    them case-insensitively at match time, see :meth:`get_folded`).
    """

    __slots__ = ("_dict", "_hash", "_items")

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        pairs = tuple(sorted((items or {}).items()))
        self._items: tuple[tuple[str, str], ...] = pairs
        self._dict: dict[str, str] = dict(pairs)
        self._hash = hash(pairs)

    def __getitem__(self, key: str) -> str:
        return self._dict[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Tags):
            return self._items == other._items
        if isinstance(other, Mapping):
            return self._dict == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"Tags({self._dict!r})"

    def get_folded(self, key: str) -> str | None:
        """The value lower-cased, or None when absent (Nova's case-insensitive compare)."""
        value = self._dict.get(key)
        return None if value is None else value.lower()

    def with_(self, **changes: str) -> Tags:
        return Tags({**self._dict, **changes})

    def items_tuple(self) -> tuple[tuple[str, str], ...]:
        return self._items


EMPTY_TAGS: Final = Tags()
