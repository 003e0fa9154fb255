"""The controller's services, built once per process and handed to the API (no globals).

:func:`build_services` wires one engine, one session factory and every use case; the API app
(:func:`pcifleet.control.api.app.create_app`), the CLI's direct database commands and the
demo all start from it. A new area adds its service as a field here and one line in
:func:`build_services`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from pcifleet.control.db.engine import create_db_engine, make_sessionmaker, migrate
from pcifleet.control.services.flavors import FlavorService
from pcifleet.control.services.groups import GroupService
from pcifleet.control.services.instances import InstanceService, instance_service
from pcifleet.control.services.inventory import InventoryService
from pcifleet.control.services.migrations import MigrationService
from pcifleet.control.services.networks import NetworkService, network_options
from pcifleet.control.services.ports_attach import PortAttachService
from pcifleet.control.services.tokens import TokenService
from pcifleet.control.settings import Settings


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    tokens: TokenService
    inventory: InventoryService
    groups: GroupService
    flavors: FlavorService
    instances: InstanceService
    networks: NetworkService
    ports_attach: PortAttachService
    migrations: MigrationService

    def ping(self) -> None:
        """Raise the driver's error when the database cannot answer (health, readiness)."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()


def build_services(
    settings: Settings, *, engine: Engine | None = None, migrate_schema: bool = False
) -> Services:
    """Every service over one engine (``settings.database_url`` unless ``engine`` is given).

    ``migrate_schema`` brings the database to the latest revision first (the server does it
    once at start, before it forks workers).
    """
    engine = engine or create_db_engine(settings.database_url)
    if migrate_schema:
        migrate(engine)
    sessions = make_sessionmaker(engine)
    groups = GroupService(sessions)
    flavors = FlavorService(sessions)
    instances = instance_service(sessions, settings, flavors, groups)
    networks = NetworkService(sessions, network_options(settings))
    instances.binder = networks
    migrations = MigrationService(sessions, instances.scheduler, networks)
    instances.migration_aborter = migrations
    return Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        tokens=TokenService(sessions),
        inventory=InventoryService(sessions, settings),
        groups=groups,
        flavors=flavors,
        instances=instances,
        networks=networks,
        ports_attach=PortAttachService(instances, networks),
        migrations=migrations,
    )
