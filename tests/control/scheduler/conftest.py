"""Fixtures of the scheduler tests (helpers in ``sched_kit``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sched_kit import DEFAULT_OPTIONS, Kit, KitFactory, standard_catalogue
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from pcifleet.control.scheduler.scheduler import Scheduler, SchedulerOptions
from pcifleet.control.services.flavors import FlavorService
from pcifleet.control.services.groups import GroupService
from pcifleet.control.services.instances import InstanceService
from pcifleet.control.services.inventory import InventoryService
from pcifleet.control.settings import Settings


@pytest.fixture
def make_kit(sessions: sessionmaker[Session], engine: Engine, tmp_path: Path) -> KitFactory:
    def make(options: SchedulerOptions = DEFAULT_OPTIONS, catalogue: bool = True) -> Kit:
        settings = Settings(tmp_path, str(engine.url))
        groups = GroupService(sessions)
        flavors = FlavorService(sessions)
        scheduler = Scheduler(sessions, options)
        kit = Kit(
            sessions,
            InventoryService(sessions, settings),
            groups,
            flavors,
            scheduler,
            InstanceService(sessions, flavors, groups, scheduler),
        )
        if catalogue:
            standard_catalogue(kit)
        return kit

    return make


@pytest.fixture
def kit(make_kit: KitFactory) -> Kit:
    return make_kit()
