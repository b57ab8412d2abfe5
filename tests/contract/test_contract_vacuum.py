"""Automatic vacuum thresholds and the ``<db>.vacuum.lock`` file lock, for every adapter."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.contract.contract_support import Facade, MakeBroker, Target, rows

AUTO = {"BROKER_AUTO_VACUUM_INTERVAL": "10", "BROKER_VACUUM_THRESHOLD": "50"}


def counts(where: Target | Path) -> tuple[int, int]:
    """(total rows, claimed rows) as stored."""
    stored = rows(where)
    return len(stored), sum(claimed for *_, claimed in stored)


def lock_path(db_path: Path) -> str:
    return f"{db_path}.vacuum.lock"


@contextmanager
def flock_held(path: str) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


def test_auto_vacuum_runs_once_interval_passes_and_not_before(make_broker: MakeBroker, target: Target) -> None:
    broker = make_broker(config=AUTO)
    broker.write_many("q", [f"m{i}" for i in range(10)])  # 10 mutations: check, nothing claimed
    assert counts(target) == (10, 0)
    for n in range(1, 10):  # claimed share passes 50 % at n=5, but only 9 mutations so far
        broker.claim("q")
        assert counts(target) == (10, n)
    last = broker.write("q", "tenth mutation")  # interval reached: 9 of 11 claimed
    assert counts(target) == (2, 0)
    assert [b for _, b, _, _ in rows(target)] == ["m9", "tenth mutation"]
    assert rows(target)[1][2] == last
    assert [m.body for m in broker.claim_all("q")] == ["m9", "tenth mutation"]


def test_auto_vacuum_waits_for_threshold(make_broker: MakeBroker, target: Target) -> None:
    broker = make_broker(config=AUTO)
    broker.write_many("q", [f"m{i}" for i in range(20)])  # counter back to 0
    for _ in range(9):
        broker.claim("q")
    broker.write("q", "x")  # 10th mutation: 9 claimed of 21 (43 %) < 50 %
    assert counts(target) == (21, 9)
    for _ in range(9):  # 19th mutation: 18 of 21 claimed, but the interval restarted
        broker.claim("q")
    assert counts(target) == (21, 18)
    broker.claim("q")  # 20th mutation
    assert counts(target) == (2, 0)


def test_auto_vacuum_exactly_at_threshold(make_broker: MakeBroker, target: Target) -> None:
    broker = make_broker(config=AUTO)
    broker.write_many("q", [f"m{i}" for i in range(20)])
    claimed = broker.claim_many("q", 9)
    assert counts(target) == (20, 9)
    broker.claim("q")  # 10 of 20 claimed = 50 %
    assert counts(target) == (10, 0)
    assert [b for _, b, _, _ in rows(target)] == [f"m{i}" for i in range(10, 20)]
    assert len(claimed) == 9


def test_auto_vacuum_counts_claims_from_streams_and_transactions(make_broker: MakeBroker, target: Target) -> None:
    broker = make_broker(config=AUTO)
    broker.write_many("q", [f"m{i}" for i in range(10)])
    with broker.transaction():
        broker.claim_many("q", 4)
        assert counts(target) == (10, 0)
    assert counts(target) == (10, 4)
    stream = broker.stream("q", commit_interval=3)
    taken = [next(stream) for _ in range(6)]  # second batch asked for: first committed (7 mutations)
    assert counts(target) == (10, 7)
    stream.close()
    assert len(taken) == 6
    assert counts(target) == (10, 7)
    for _ in range(3):
        broker.claim("q")
    assert counts(target) == (0, 0)


def test_auto_vacuum_disabled(make_broker: MakeBroker, target: Target) -> None:
    broker = make_broker(config={**AUTO, "BROKER_AUTO_VACUUM": "0"})
    broker.write_many("q", [f"m{i}" for i in range(10)])
    for _ in range(30):
        broker.write("q", "more")
        broker.claim("q")
    assert counts(target) == (40, 30)
    assert broker.vacuum() == 30  # explicit vacuum still works
    assert counts(target) == (10, 0)


@pytest.mark.sqlite_only("the <db>.vacuum.lock file lock")
def test_vacuum_skips_while_another_descriptor_holds_the_lock(broker: Facade, db_path: Path) -> None:
    broker.write_many("q", ["a", "b", "c"])
    broker.claim_many("q", 2)
    with flock_held(lock_path(db_path)):
        assert broker.vacuum() == 0
        assert counts(db_path) == (3, 2)
        assert broker.vacuum(compact=True) == 0
        assert counts(db_path) == (3, 2)
    assert broker.vacuum() == 2
    assert counts(db_path) == (1, 0)
    # The lock file stays, and the broker released its lock.
    assert os.path.exists(lock_path(db_path))
    with flock_held(lock_path(db_path)):
        pass


@pytest.mark.sqlite_only("the <db>.vacuum.lock file lock")
def test_vacuum_skips_while_another_process_holds_the_lock(broker: Facade, db_path: Path) -> None:
    broker.write_many("q", ["a", "b", "c"])
    broker.claim_many("q", 2)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys\n"
            "f = open(sys.argv[1], 'a+')\n"
            "fcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
            lock_path(db_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        assert broker.vacuum() == 0
        assert counts(db_path) == (3, 2)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        assert holder.wait(timeout=10) == 0
    assert broker.vacuum() == 2
    assert counts(db_path) == (1, 0)


@pytest.mark.sqlite_only("the <db>.vacuum.lock file lock")
def test_auto_vacuum_skips_while_lock_held(make_broker: MakeBroker, db_path: Path) -> None:
    broker = make_broker(config=AUTO)
    broker.write_many("q", [f"m{i}" for i in range(10)])
    with flock_held(lock_path(db_path)):
        broker.claim_many("q", 10)  # due: all claimed, but another holder has the lock
        assert counts(db_path) == (10, 10)
    broker.claim_many("q", 1)  # nothing pending: no mutation counted
    broker.write_many("q", [f"n{i}" for i in range(10)])  # due again: 10 of 20 claimed
    assert counts(db_path) == (10, 0)


@pytest.mark.parametrize(
    ("threshold", "due"),
    [("5", True), ("5.5", False), ("0.5", True), ("0", True), ("100", False), ("5.0", True)],
)
def test_threshold_is_a_percentage(make_broker: MakeBroker, target: Target, threshold: str, due: bool) -> None:
    config = {"BROKER_AUTO_VACUUM_INTERVAL": "5", "BROKER_VACUUM_THRESHOLD": threshold}
    broker = make_broker(config=config)
    broker.write_many("q", [f"m{i}" for i in range(19)])  # counter 19 % 5 = 4, nothing claimed
    assert counts(target) == (19, 0)
    broker.claim("q")  # 5th mutation: 1 of 19 claimed = 5.26 %
    assert counts(target) == ((18, 0) if due else (19, 1))


EVERY_COMMIT = {"BROKER_AUTO_VACUUM_INTERVAL": "1", "BROKER_VACUUM_THRESHOLD": "0"}


@pytest.mark.sqlite_only("a <db>.vacuum.lock that cannot be opened (a directory)")
def test_a_failing_auto_vacuum_never_fails_the_operation_that_committed(
    make_broker: MakeBroker, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Housekeeping runs outside the caller's operation: when ``<db>.vacuum.lock``
    cannot be opened (here it is a directory), every write and claim still
    returns its committed result, and the failure goes to the
    ``sansio_broker`` logger."""
    os.mkdir(lock_path(db_path))
    broker = make_broker(config=EVERY_COMMIT)
    with caplog.at_level("WARNING", logger="sansio_broker"):
        ids = [broker.write("q", f"m{i}") for i in range(5)]
        claimed = [broker.claim("q") for _ in range(5)]
    assert [m.id if m else None for m in claimed] == ids
    assert [m.body if m else None for m in claimed] == [f"m{i}" for i in range(5)]
    assert counts(db_path) == (5, 5)  # nothing vacuumed: the lock could not be taken
    failures = [r for r in caplog.records if r.name == "sansio_broker" and r.levelname in ("WARNING", "ERROR")]
    assert failures, "the vacuum failure was not logged"
    assert any(isinstance(r.exc_info and r.exc_info[1], OSError) for r in failures), [r.getMessage() for r in failures]
