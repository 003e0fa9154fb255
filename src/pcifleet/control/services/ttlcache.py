"""A small per-process cache whose entries expire after a few seconds.

Every boot reads its flavor and the device groups its project can see: two more database
round trips (and a connection checkout each) than the claim itself, for rows that change
rarely. The catalog services keep what they read here for a short time: the service that
writes clears its own cache at once, so one process always reads its own writes; another
controller process sees a changed flavor or group after at most ``ttl_s`` seconds (what a
boot placed with the old one holds is recorded on the instance, as with any flavor change).
Misses are never cached, so a flavor or group created anywhere is visible at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Final, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: how long a catalog read is reused (seconds)
DEFAULT_TTL_S: Final = 1.0
#: entries kept at most (the cache is cleared when full: catalogs are small)
DEFAULT_LIMIT: Final = 1024


class TtlCache(Generic[K, V]):
    """Values by key for ``ttl_s`` seconds; safe to share between threads."""

    def __init__(
        self,
        ttl_s: float = DEFAULT_TTL_S,
        *,
        limit: int = DEFAULT_LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self._limit = limit
        self._clock = clock
        self._entries: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()
        #: bumped by every :meth:`clear`: a value read before a clear is not stored after it
        self.epoch = 0

    def get(self, key: K) -> V | None:
        """The value stored for ``key`` if it has not expired, else None."""
        found = self._entries.get(key)
        if found is None or found[0] <= self._clock():
            return None
        return found[1]

    def put(self, key: K, value: V, epoch: int) -> V:
        """Store ``value``, read from the database when :attr:`epoch` was ``epoch``; a write
        cleared the cache since then: the value may be old, so it is returned, not kept."""
        if self.ttl_s > 0:
            with self._lock:
                if epoch != self.epoch:
                    return value
                if len(self._entries) >= self._limit:
                    self._entries.clear()
                self._entries[key] = (self._clock() + self.ttl_s, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self.epoch += 1
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
