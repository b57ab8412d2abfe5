"""Files that need set-up work: we and SimpleBroker 8 must agree on the result
(missing indexes or alias table, an old schema SimpleBroker migrates)."""

from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path

import pytest
import simplebroker

from sansio_broker import IncompatibleDatabaseError, Message
from sansio_broker.adapters.blocking import Broker
from tests.compat.compat_helpers import assert_file_healthy, master, parse_t, sb
from tests.support.rawdb import connect, meta, query


def test_missing_canonical_indexes_are_repaired_like_sb(tmp_path: Path) -> None:
    original = tmp_path / "original.db"
    ident = int(sb(original, "write", "q", "x", "-t").stdout)
    with connect(original) as conn:
        conn.execute("DROP INDEX idx_messages_queue_ts")
        conn.execute("DROP INDEX idx_messages_pending_queue_ts")
    ours_copy, sb_copy = tmp_path / "ours.db", tmp_path / "sb.db"
    shutil.copy(original, ours_copy)
    shutil.copy(original, sb_copy)

    with Broker(ours_copy, config={}) as ours:
        assert ours.peek("q") == Message("x", ident)
    sb(sb_copy, "peek", "q")

    assert master(ours_copy) == master(sb_copy)
    assert parse_t(sb(ours_copy, "read", "q", "-t").stdout) == [(ident, "x")]
    assert_file_healthy(ours_copy)
    assert_file_healthy(sb_copy)


def test_missing_queue_aliases_is_created_and_sb_aliases_work(db: Path) -> None:
    sb(db, "write", "q", "x")
    with connect(db) as conn:
        conn.execute("DROP TABLE queue_aliases")
        conn.execute("DELETE FROM meta WHERE key = 'alias_version'")
    assert sb(db, "alias", "list", expect=1).returncode == 1  # SimpleBroker does not repair it

    with Broker(db, config={}) as ours:
        assert ours.peek("q") is not None

    sb(db, "alias", "add", "al", "q")
    sb(db, "write", "@al", "y")
    assert [m for _, m in parse_t(sb(db, "peek", "q", "--all", "-t").stdout)] == ["x", "y"]
    assert meta(db)["alias_version"] > 0
    assert [name for _, name, _ in master(db)][-3:] == [
        "queue_aliases",
        "sqlite_autoindex_queue_aliases_1",
        "idx_queue_aliases_target",
    ]
    assert_file_healthy(db)


V1_DDL = [
    "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, "
    "body TEXT NOT NULL, ts INTEGER NOT NULL)",
    "CREATE INDEX idx_queue_id ON messages(queue, id)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT INTO meta (key, value) VALUES ('last_ts', 0)",
]


def test_v1_file_is_refused_untouched_then_used_after_sb_migrates_it(db: Path) -> None:
    """Our refusal writes nothing; after SimpleBroker's ladder (last_ts left at 0) we repair last_ts."""
    old = [((time.time_ns() - 10_000_000_000) & ~0xFFF) + i for i in range(3)]
    with connect(db) as conn:
        for statement in V1_DDL:
            conn.execute(statement)
        conn.executemany(
            "INSERT INTO messages (queue, body, ts) VALUES ('q', ?, ?)", [(f"old{i}", ts) for i, ts in enumerate(old)]
        )
    before = db.read_bytes()

    with pytest.raises(IncompatibleDatabaseError):
        Broker(db, config={})
    assert db.read_bytes() == before, "a refused file must not be written"

    sb(db, "list")
    assert meta(db)["schema_version"] == 6
    assert meta(db)["last_ts"] == 0

    with Broker(db, config={}) as ours:
        assert meta(db)["last_ts"] >= old[-1]
        mine = ours.write("q", "ours")
        assert mine > old[-1]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a timestamp resync would warn
            with simplebroker.Queue("q", db_path=str(db), persistent=True) as theirs:
                other = theirs.write("sb")
        assert ours.claim_all("q") == [
            *(Message(f"old{i}", ts) for i, ts in enumerate(old)),
            Message("ours", mine),
            Message("sb", other),
        ]
    assert query(db, "SELECT COUNT(*) FROM messages WHERE claimed = 1") == [(5,)]
    assert_file_healthy(db)
