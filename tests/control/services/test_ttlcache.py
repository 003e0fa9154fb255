"""The catalog cache: entries expire, a write clears it, a read older than a clear is not kept;
flavor and group reads for boots go through it and see this process's own writes at once."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from pcifleet.control.services.flavors import FlavorService, parse_flavor
from pcifleet.control.services.groups import GroupService
from pcifleet.control.services.principal import LOCAL_ADMIN
from pcifleet.control.services.ttlcache import TtlCache
from pcifleet.domain.errors import NotFound
from pcifleet.domain.group import DeviceGroup
from pcifleet.domain.request import DeviceMatch


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("advance", "found"),
    [(0.0, "v"), (0.99, "v"), (1.0, None), (5.0, None)],
)
def test_entries_expire_after_the_ttl(advance: float, found: str | None) -> None:
    clock = Clock()
    cache: TtlCache[str, str] = TtlCache(1.0, clock=clock)
    cache.put("k", "v", cache.epoch)
    clock.now += advance
    assert cache.get("k") == found


def test_a_value_read_before_a_clear_is_returned_but_not_kept() -> None:
    cache: TtlCache[str, str] = TtlCache(10.0)
    epoch = cache.epoch
    cache.clear()  # a write happened while the value was being read
    assert cache.put("k", "old", epoch) == "old"
    assert cache.get("k") is None
    cache.put("k", "new", cache.epoch)
    assert cache.get("k") == "new"


@pytest.mark.parametrize(("ttl", "kept"), [(0.0, 0), (1.0, 2)])
def test_a_zero_ttl_keeps_nothing_and_a_full_cache_starts_over(ttl: float, kept: int) -> None:
    cache: TtlCache[int, int] = TtlCache(ttl, limit=2)
    for key in range(5):
        cache.put(key, key, cache.epoch)
    assert len(cache) == (1 if kept else 0)  # full at 2: cleared, then 4 stored
    assert cache.get(4) == (4 if kept else None)


def test_flavors_see_their_own_writes_at_once(sessions: sessionmaker[Session]) -> None:
    flavors = FlavorService(sessions)
    flavors.create(LOCAL_ADMIN, parse_flavor("f", 1, 512, {}))
    assert flavors.get("f").flavor.vcpus == 1
    flavors.delete(LOCAL_ADMIN, "f")
    with pytest.raises(NotFound):
        flavors.get("f")
    flavors.create(LOCAL_ADMIN, parse_flavor("f", 4, 512, {}))
    assert flavors.get("f").flavor.vcpus == 4


@pytest.mark.parametrize(("ttl", "stale"), [(60.0, True), (0.0, False)])
def test_another_process_sees_a_changed_flavor_after_the_ttl(
    sessions: sessionmaker[Session], ttl: float, stale: bool
) -> None:
    mine, theirs = FlavorService(sessions, cache_ttl_s=ttl), FlavorService(sessions)
    theirs.create(LOCAL_ADMIN, parse_flavor("f", 1, 512, {}))
    assert mine.get("f").flavor.vcpus == 1
    theirs.delete(LOCAL_ADMIN, "f")
    if stale:
        assert mine.get("f").flavor.vcpus == 1  # reused within the TTL
    else:
        with pytest.raises(NotFound):
            mine.get("f")


def test_visible_groups_reread_when_a_needed_group_is_missing(
    sessions: sessionmaker[Session],
) -> None:
    mine, theirs = GroupService(sessions, cache_ttl_s=60.0), GroupService(sessions)
    nic = (DeviceMatch.of(physical_network="physnet1"),)
    theirs.create(LOCAL_ADMIN, DeviceGroup("a", nic))
    assert set(mine.visible_groups("p")) == {"a"}
    theirs.create(LOCAL_ADMIN, DeviceGroup("b", nic))
    assert set(mine.visible_groups("p")) == {"a"}  # cached
    assert set(mine.visible_groups("p", need=["b"])) == {"a", "b"}
    mine.create(LOCAL_ADMIN, DeviceGroup("c", nic, owner="p"))
    assert set(mine.visible_groups("p")) == {"a", "b", "c"}  # own write: at once
