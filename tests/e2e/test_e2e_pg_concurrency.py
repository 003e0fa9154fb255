"""Several controller processes on one PostgreSQL database, under load and under faults.

Each test gets a fresh PostgreSQL database with 200 simulated hosts (seeded in bulk; 70
devices each: PFs whose VFs compete with whole-PF boots, and GPUs) and starts real ``pcifleet
server`` processes on 127.0.0.1. Parallel client threads spread their requests over the
processes as a load balancer would. Afterwards ``pcifleet audit`` (a child process) must exit
0, and plain SQL, independent of the audit's code, must find no device listed by two live
instances and no PF in use together with one of its VFs.

Faults: a controller killed with SIGKILL in the middle of the load and restarted leaves no
half-claimed device; a database that stops accepting connections makes the API answer 503
``pcifleet.unavailable``, and it recovers when the database returns.

Skipped (with the reason) when PostgreSQL is not reachable. Every process is killed and the
database dropped in a finally.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, create_engine, make_url, text

from pcifleet.control.container import Services, build_services
from pcifleet.control.settings import Settings
from pcifleet.sim.http_load import (
    LAUNCH,
    Controller,
    LoadResult,
    boot_plan,
    create_catalog,
    create_database,
    drop_database,
    interleaved_plan,
    run_load,
    seed_fleet,
)

pytestmark = pytest.mark.slow

ADMIN_URL = os.environ.get(
    "PCIFLEET_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
HOSTS = 200
BOOTS = 2000
CONCURRENCY = 24
#: what a boot or delete may answer under contention (409: the claim kept losing its CAS)
CALM = {"boot:active", "boot:error", "boot:http-409", "delete:deleted", "delete:http-409"}


@dataclass
class Stage:
    url: str
    services: Services
    token: str
    data_dir: Path
    controllers: list[Controller] = field(default_factory=list)

    def start(self, count: int) -> list[str]:
        """``count`` more controller processes, healthy; the URLs of all of them."""
        started = [Controller(self.url, self.data_dir).start() for _ in range(count)]
        self.controllers += started
        for controller in started:
            controller.wait_healthy()
        return [c.url for c in self.controllers]

    @property
    def engine(self) -> Engine:
        return self.services.engine


@pytest.fixture
def stage(tmp_path: Path) -> Iterator[Stage]:
    try:
        url = create_database(ADMIN_URL, "pcifleet_e2e")
    except Exception as exc:  # any connection failure means: no server here
        where = make_url(ADMIN_URL)
        pytest.skip(f"PostgreSQL not reachable at {where.host}:{where.port}: {exc}")
    services = None
    built: Stage | None = None
    try:
        services = build_services(Settings(tmp_path, url), migrate_schema=True)
        seed_fleet(services.engine, HOSTS)
        built = Stage(url, services, create_catalog(services), tmp_path)
        yield built
    finally:
        for controller in built.controllers if built else ():
            controller.kill()
        if services is not None:
            services.close()
        drop_database(ADMIN_URL, url)


# --- checks ---------------------------------------------------------------------------------


def run_audit(url: str) -> subprocess.CompletedProcess[str]:
    """``pcifleet audit --json`` as an operator runs it, in its own process."""
    return subprocess.run(
        [sys.executable, "-c", LAUNCH, "audit", "--json", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


DOUBLE_CONSUMERS = """
SELECT count(*) FROM (
  SELECT i.host_id, d.address
  FROM instances i, json_array_elements(i.placement->'devices') AS g(grp),
       json_array_elements_text(g.grp) AS d(address)
  WHERE i.state IN ('building', 'active')
  GROUP BY i.host_id, d.address HAVING count(*) > 1
) AS doubles
"""
PF_AND_VF_IN_USE = """
SELECT count(*) FROM devices pf JOIN devices vf
  ON vf.host_id = pf.host_id AND vf.parent_address = pf.address
WHERE pf.state IN ('claimed', 'allocated') AND vf.state IN ('claimed', 'allocated')
"""
HELD_FOR_NOTHING = """
SELECT count(*) FROM devices d LEFT JOIN instances i ON i.id = d.instance_id
WHERE d.state IN ('claimed', 'allocated')
  AND (i.id IS NULL OR i.state NOT IN ('building', 'active') OR i.host_id <> d.host_id)
"""


def scalar(engine: Engine, sql: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text(sql)).scalar_one())


def active_ids(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT id FROM instances WHERE state = 'active'"))
        return {str(row[0]) for row in rows}


def assert_consistent(stage: Stage) -> None:
    audit = run_audit(stage.url)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    report = json.loads(audit.stdout)
    assert report["clean"] and report["hosts"] == HOSTS and report["violations"] == []
    assert scalar(stage.engine, DOUBLE_CONSUMERS) == 0
    assert scalar(stage.engine, PF_AND_VF_IN_USE) == 0
    assert scalar(stage.engine, HELD_FOR_NOTHING) == 0


def assert_calm(result: LoadResult) -> None:
    assert set(result.outcomes) <= CALM, (result.outcomes, result.errors)


# --- load ---------------------------------------------------------------------------------------


def test_four_controllers_2000_boots_then_deletes_interleaved(stage: Stage) -> None:
    urls = stage.start(4)
    result = run_load(urls, stage.token, boot_plan(BOOTS), concurrency=CONCURRENCY)
    assert_calm(result)
    assert sum(result.outcomes.values()) == BOOTS
    assert result.outcomes["boot:active"] >= BOOTS // 2, result.outcomes
    assert active_ids(stage.engine) == result.active
    assert_consistent(stage)

    result = run_load(
        urls, stage.token, interleaved_plan(BOOTS), concurrency=CONCURRENCY, result=result
    )
    assert_calm(result)
    assert result.outcomes["delete:deleted"] >= BOOTS // 4, result.outcomes
    assert active_ids(stage.engine) == result.active
    assert_consistent(stage)


# --- faults -------------------------------------------------------------------------------------


def test_a_controller_killed_mid_load_leaves_no_half_claim(stage: Stage) -> None:
    urls = stage.start(2)
    victim = stage.controllers[0]
    plan = interleaved_plan(800, delete_share=0.25)

    def kill_and_restart() -> None:
        time.sleep(2.0)
        victim.kill()
        time.sleep(1.0)
        victim.start().wait_healthy()

    chaos = threading.Thread(target=kill_and_restart)
    chaos.start()
    result = run_load(urls, stage.token, plan, concurrency=8, timeout_s=10)
    chaos.join()
    assert victim.alive
    # requests to the dead process failed; those in flight may or may not have committed
    assert result.outcomes["boot:transport"] + result.outcomes["delete:transport"] > 0
    assert result.outcomes["boot:active"] > 0
    assert set(result.outcomes) <= CALM | {"boot:transport", "delete:transport"}
    assert_consistent(stage)
    # the restarted process serves again, on the same database
    with httpx.Client(base_url=victim.url, timeout=10) as client:
        headers = {"Authorization": f"Bearer {stage.token}"}
        booted = client.post(
            "/v1/instances", json={"name": "after", "flavor": "gpu"}, headers=headers
        )
        assert booted.status_code == 201 and booted.json()["state"] == "active", booted.text
    assert_consistent(stage)


def set_connections(url: str, allow: bool) -> None:
    """Let the controllers' database accept connections again, or refuse them and cut the
    open ones (the server stays up: only this database becomes unreachable)."""
    name = make_url(url).database
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            flag = "true" if allow else "false"
            connection.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {flag}'))
            if not allow:
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )
    finally:
        admin.dispose()


def test_an_unreachable_database_is_a_503_and_the_api_recovers(stage: Stage) -> None:
    (url,) = stage.start(1)
    headers = {"Authorization": f"Bearer {stage.token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        assert client.post("/v1/instances", json={"name": "a", "flavor": "vf"}).status_code == 201
        stage.services.engine.dispose()
        set_connections(stage.url, allow=False)
        try:
            for method, path, body in (
                ("POST", "/v1/instances", {"name": "b", "flavor": "vf"}),
                ("GET", "/v1/instances", None),
                ("GET", "/v1/health", None),
            ):
                down = client.request(method, path, json=body)
                assert down.status_code == 503, (path, down.text)
                assert down.json()["errors"][0]["code"] == "pcifleet.unavailable"
                assert down.headers["Retry-After"] == "1"
        finally:
            set_connections(stage.url, allow=True)
        booted = client.post("/v1/instances", json={"name": "c", "flavor": "vf"})
        assert booted.status_code == 201 and booted.json()["state"] == "active", booted.text
        assert client.get("/v1/health").status_code == 200
    assert stage.controllers[0].alive
    assert_consistent(stage)
