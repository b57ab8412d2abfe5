"""Vacuum of claimed rows, both ways, and ``<db>.vacuum.lock``."""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import simplebroker

from sansio_broker.adapters.blocking import Broker
from tests.compat.compat_helpers import assert_file_healthy, sb, sb_json, sb_stats
from tests.support.rawdb import meta, query, rows

OpenOurs = Callable[[], Broker]


@contextmanager
def hold_vacuum_lock(db: Path) -> Iterator[None]:
    """Hold ``<db>.vacuum.lock`` the way another vacuuming process would."""
    fd = os.open(f"{db}.vacuum.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


def test_case7_ours_claims_sb_vacuums(db: Path, open_ours: OpenOurs) -> None:
    ours = open_ours()
    ids = ours.write_many("q", [f"m{i}" for i in range(10)])
    assert [m.id for m in ours.claim_many("q", 5)] == ids[:5]

    listing = sb(db, "list", "--stats").stdout
    assert "q: 5 (10 total, 5 claimed)" in listing.splitlines()
    assert "Total claimed messages: 5/10" in listing
    vacuumed = sb(db, "--vacuum")
    assert re.search(r"Vacuumed 5 claimed messages", vacuumed.stdout + vacuumed.stderr)
    assert sb_json(db, "stats", "q", "--json") == {
        "queue": "q",
        "pending": 5,
        "claimed": 0,
        "total": 5,
        "exists": True,
    }

    assert [r[2] for r in rows(db)] == ids[5:]
    assert ours.claim("q") is not None
    assert_file_healthy(db)


def test_case7_sb_claims_ours_vacuums(db: Path, open_ours: OpenOurs) -> None:
    with simplebroker.Queue("q", db_path=str(db), persistent=True) as q:
        ids = [q.write(f"m{i}") for i in range(10)]
        assert q.read_many(5) == [f"m{i}" for i in range(5)]
    assert sb_stats(db, "q") == (5, 5, 10)
    ours = open_ours()

    assert ours.vacuum() == 5

    assert sb_stats(db, "q") == (5, 0, 5)
    stats = ours.queue_stats("q")
    assert (stats.pending, stats.claimed, stats.total) == (5, 0, 5)
    assert [r[2] for r in rows(db)] == ids[5:]
    assert ours.vacuum() == 0
    assert_file_healthy(db)


def test_case7_our_vacuum_skips_while_lock_is_held(db: Path, open_ours: OpenOurs) -> None:
    ours = open_ours()
    ours.write_many("q", [f"m{i}" for i in range(10)])
    ours.claim_many("q", 5)

    with hold_vacuum_lock(db):
        assert ours.vacuum() == 0
        assert sb_stats(db, "q") == (5, 5, 10)
        # SimpleBroker skips too: the lock is the one both programs take.
        sb(db, "--vacuum")
        assert sb_stats(db, "q") == (5, 5, 10)

    assert ours.vacuum() == 5
    assert sb_stats(db, "q") == (5, 0, 5)
    assert os.path.exists(f"{db}.vacuum.lock"), "the lock file is never unlinked"
    assert_file_healthy(db)


def test_case7_sb_vacuum_while_ours_is_open_then_ours_compacts(db: Path) -> None:
    """Vacuum on one side, compact on the other, while both keep their connections."""
    # Auto-vacuum off, so the explicit vacuum still has claimed rows to remove.
    with (
        Broker(db, config={"BROKER_AUTO_VACUUM": "0"}) as ours,
        simplebroker.Queue("q", db_path=str(db), persistent=True) as theirs,
    ):
        for i in range(300):
            if i % 2:
                ours.write("q", f"m{i}")
            else:
                theirs.write(f"m{i}")
        assert len(ours.claim_many("q", 100)) == 100
        assert len(theirs.read_many(100)) == 100
        with simplebroker.open_broker(str(db)) as broker:
            broker.vacuum()
        assert sb_stats(db, "q") == (100, 0, 100)
        assert len(ours.claim_many("q", 50)) == 50
        assert ours.vacuum(compact=True) == 50
        assert theirs.peek_many(1000) == [f"m{i}" for i in range(250, 300)]
        theirs.write("after")
        assert ours.peek_many("q", 1000)[-1].body == "after"
    assert query(db, "PRAGMA auto_vacuum") == [(2,)]
    assert meta(db)["schema_version"] == 6
    sb(db, "list")  # SimpleBroker re-proves the schema after VACUUM bumped the cookie
    assert_file_healthy(db)


def test_sb_compacts_while_our_broker_stays_open(db: Path, open_ours: OpenOurs) -> None:
    """``broker --vacuum --compact`` rewrites the file (new schema cookie) under our open connections."""
    ours = open_ours()
    ids = ours.write_many("q", [f"m{i}" for i in range(200)])
    ours.claim_many("q", 150)
    assert ours.peek("q") == (f"m{150}", ids[150])

    sb(db, "--vacuum", "--compact")

    assert ours.queue_stats("q") == ("q", 50, 50)
    assert ours.claim("q") == (f"m{150}", ids[150])
    later = ours.write("q", "later")
    assert later > ids[-1]
    assert query(db, "PRAGMA auto_vacuum") == [(2,)]
    assert_file_healthy(db)
