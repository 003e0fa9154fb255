"""Connection balance between the workers of one server: the shared table (a real memory-mapped
file, as the worker processes share it) and the decision to send a client elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from pcifleet.control.api.balance import (
    ACTIVE_S,
    ROWS,
    STALE_S,
    ConnectionBalance,
    WorkerTable,
    table_from_env,
)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def table_path(tmp_path: Path) -> Path:
    return WorkerTable.create(tmp_path / "run" / "workers.table")


def _workers(path: Path, clock: _Clock, count: int) -> list[ConnectionBalance]:
    """``count`` workers, each with its own mapping of the table (as separate processes)."""
    return [ConnectionBalance(WorkerTable(path), clock=clock, pid=100 + i) for i in range(count)]


def _connect(worker: ConnectionBalance, *ports: int) -> None:
    for port in ports:
        worker.seen(("127.0.0.1", port))


def test_a_worker_over_its_share_sends_a_client_away_once(table_path: Path) -> None:
    clock = _Clock()
    busy, idle = _workers(table_path, clock, 2)
    _connect(busy, 1, 2, 3, 4, 5)
    _connect(idle, 6)  # 5 + 1: the fair share is 3
    assert busy.send_away(("127.0.0.1", 1))
    assert busy.connections == 4
    assert not busy.send_away(("127.0.0.1", 1))  # forgotten here: nothing more to do for it
    assert not idle.send_away(("127.0.0.1", 6))  # under its share: keeps its client


def test_a_balanced_server_closes_nothing(table_path: Path) -> None:
    clock = _Clock()
    workers = _workers(table_path, clock, 4)
    for i, worker in enumerate(workers):
        _connect(worker, *range(10 * i, 10 * i + 4))
    for i, worker in enumerate(workers):
        assert not any(worker.send_away(("127.0.0.1", p)) for p in range(10 * i, 10 * i + 4))


def test_an_uneven_split_is_evened_out_one_client_at_a_time(table_path: Path) -> None:
    clock = _Clock()
    workers = _workers(table_path, clock, 4)
    layout = (6, 5, 3, 2)  # what the kernel gave 16 clients in benchmarks/http_boot.py
    port = 0
    for worker, count in zip(workers, layout, strict=True):
        _connect(worker, *range(port, port + count))
        port += count
    moved = 0
    while True:  # each client sent away reconnects to the least loaded worker
        away = [w for w in workers if any(w.send_away(("127.0.0.1", p)) for p in range(port))]
        if not away:
            break
        for _ in away:
            target = min(workers, key=lambda w: w.connections)
            _connect(target, 1000 + moved)
            moved += 1
    assert sorted(w.connections for w in workers) == [4, 4, 4, 4]
    assert moved == 3  # two from the 6, one from the 5: no more moves than needed


def test_quiet_clients_and_gone_workers_stop_counting(table_path: Path) -> None:
    clock = _Clock()
    busy, quiet = _workers(table_path, clock, 2)
    _connect(busy, 1, 2, 3)
    _connect(quiet, 4, 5, 6)
    clock.now += ACTIVE_S + 0.1
    quiet.publish()  # its clients went quiet: it holds none now
    _connect(busy, 1, 2, 3)
    assert busy.send_away(("127.0.0.1", 1))
    clock.now += STALE_S + 0.1  # the quiet worker stopped beating: it is gone
    _connect(busy, 1, 2, 3)
    assert not busy.send_away(("127.0.0.1", 2))  # no other worker to send it to


def test_a_client_that_left_stops_counting_in_the_workers_own_decision(
    table_path: Path,
) -> None:
    """A closed connection is invisible to the app: a worker must not keep counting the
    clients that left (the benchmark's warm-up) as its own until its next beat."""
    clock = _Clock()
    busy, idle = _workers(table_path, clock, 2)
    _connect(busy, 1, 2, 3, 4, 5)
    _connect(idle, 6)
    clock.now += ACTIVE_S + 0.1  # clients 2-5 left; client 1 is still sending
    _connect(busy, 1)
    assert not busy.send_away(("127.0.0.1", 1))
    assert busy.connections == 1


def test_a_gone_workers_row_is_taken_again(table_path: Path) -> None:
    clock = _Clock()
    first = WorkerTable(table_path)
    assert first.take(7, clock()) == 0
    assert first.take(7, clock()) == 0  # the same process again: its own row
    assert first.take(8, clock()) == 1
    clock.now += STALE_S + 1
    assert first.take(9, clock()) == 0  # 7 and 8 are gone


def test_a_full_table_is_a_clear_error(table_path: Path) -> None:
    table = WorkerTable(table_path)
    for pid in range(1, ROWS + 1):
        table.take(pid, 1000.0)
    with pytest.raises(RuntimeError, match=f"all {ROWS} worker rows are taken"):
        table.take(ROWS + 1, 1000.0)


def test_the_table_comes_from_the_environment(table_path: Path) -> None:
    assert table_from_env({}) is None
    found = table_from_env({"PCIFLEET_WORKER_TABLE": str(table_path)})
    assert found is not None and found.path == table_path
