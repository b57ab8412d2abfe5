"""A schema v5 file (SimpleBroker 7's) shared with us and then with SimpleBroker 8.

We use v5 as it is, without migrating it; SimpleBroker 8 may
rebuild it to v6 while our connections stay open, and they keep working.
"""

from __future__ import annotations

import time
from pathlib import Path

from sansio_broker import Message
from sansio_broker.adapters.blocking import Broker
from tests.compat.compat_helpers import assert_file_healthy, parse_t, sb, table_info
from tests.support.contract import INSERT_MAGIC, INSERT_SCHEMA_VERSION, MAGIC, V5_DDL, V6_TABLE_INFO
from tests.support.rawdb import connect, meta, query


def make_v5_file(db: Path, bodies: list[str]) -> list[int]:
    """A v5 database as SimpleBroker 7 leaves it, with ``bodies`` pending in ``q``."""
    base = time.time_ns() & ~0xFFF
    ids = [base + i for i in range(len(bodies))]
    with connect(db) as conn:
        conn.execute("PRAGMA auto_vacuum=2")
        assert conn.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
        conn.execute("BEGIN IMMEDIATE")
        for statement in V5_DDL:
            conn.execute(statement)
        conn.execute(INSERT_MAGIC, (MAGIC,))
        conn.execute(INSERT_SCHEMA_VERSION, (5,))
        conn.executemany(
            "INSERT INTO messages (queue, body, ts) VALUES ('q', ?, ?)", list(zip(bodies, ids, strict=True))
        )
        if ids:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'last_ts'", (ids[-1],))
        conn.execute("COMMIT")
    return ids


def test_v5_file_is_used_without_migration_then_sb8_migrates_under_us(db: Path) -> None:
    ids = make_v5_file(db, ["old0", "old1", "old2"])
    v5_columns = [row[1] for row in table_info(db)]
    assert v5_columns[0] == "id"

    with Broker(db, config={}) as ours:
        assert ours.peek_many("q", 10) == [Message(f"old{i}", ids[i]) for i in range(3)]
        assert ours.claim("q") == Message("old0", ids[0])
        new_id = ours.write("q", "ours-v5")
        assert new_id > ids[-1]
        assert meta(db)["schema_version"] == 5, "we must not migrate a v5 file"
        assert [row[1] for row in table_info(db)] == v5_columns

        # SimpleBroker 8 rebuilds the table to v6 while our connection is open.
        listed = parse_t(sb(db, "peek", "q", "--all", "-t").stdout)
        assert listed == [(ids[1], "old1"), (ids[2], "old2"), (new_id, "ours-v5")]
        assert meta(db)["schema_version"] == 6
        assert table_info(db) == V6_TABLE_INFO

        after = ours.write("q", "ours-v6")
        assert after > new_id
        assert ours.claim_many("q", 10) == [
            Message("old1", ids[1]),
            Message("old2", ids[2]),
            Message("ours-v5", new_id),
            Message("ours-v6", after),
        ]
        assert ours.move("q", "d", message_id=ids[0]) == Message("old0", ids[0])
        assert ours.vacuum() == 5

    assert query(db, "SELECT queue, body, ts, claimed FROM messages") == []
    assert meta(db)["last_ts"] == after
    assert_file_healthy(db)
