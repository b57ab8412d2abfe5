"""Helpers shared by the blocking-adapter tests: raw looks at the file on disk."""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# The storage contract's DDL, verbatim (§1.3: schema v6 as SimpleBroker 8 creates it).
V6_DDL = (
    """CREATE TABLE IF NOT EXISTS messages (
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    ts INTEGER NOT NULL PRIMARY KEY,
    claimed INTEGER DEFAULT 0
)""",
    """CREATE INDEX IF NOT EXISTS idx_messages_queue_ts
ON messages(queue, ts)""",
    """CREATE INDEX IF NOT EXISTS idx_messages_pending_queue_ts
ON messages(queue, ts)
WHERE claimed = 0""",
    """CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
)""",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('last_ts', 0)",
    """CREATE TABLE IF NOT EXISTS queue_aliases (
    alias TEXT PRIMARY KEY,
    target TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS idx_queue_aliases_target ON queue_aliases(target)",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('alias_version', 0)",
)

# §1.4: schema v5 as SimpleBroker 7 creates it.
V5_DDL = (
    """CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    ts INTEGER NOT NULL UNIQUE,
    claimed INTEGER DEFAULT 0
)""",
    """CREATE INDEX IF NOT EXISTS idx_messages_queue_ts_id
ON messages(queue, ts, id)""",
    """CREATE INDEX IF NOT EXISTS idx_messages_unclaimed
ON messages(queue, claimed, id)
WHERE claimed = 0""",
    """CREATE INDEX IF NOT EXISTS idx_messages_pending_queue_ts
ON messages(queue, ts)
WHERE claimed = 0""",
    """CREATE UNIQUE INDEX idx_messages_ts_unique
ON messages(ts)""",
    """CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
)""",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('last_ts', 0)",
    """CREATE TABLE IF NOT EXISTS queue_aliases (
    alias TEXT PRIMARY KEY,
    target TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS idx_queue_aliases_target ON queue_aliases(target)",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('alias_version', 0)",
)

MAGIC = "simplebroker-v1"


@contextmanager
def raw(path: str | os.PathLike[str]) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection (autocommit) to look at or prepare a file."""
    conn = sqlite3.connect(os.fspath(path), isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def rows(path: str | os.PathLike[str], queue: str | None = None) -> list[tuple[str, str, int, int]]:
    """Every stored row ``(queue, body, ts, claimed)`` in ID order, read from the file."""
    with raw(path) as conn:
        if queue is None:
            return conn.execute("SELECT queue, body, ts, claimed FROM messages ORDER BY ts").fetchall()
        return conn.execute(
            "SELECT queue, body, ts, claimed FROM messages WHERE queue = ? ORDER BY ts", (queue,)
        ).fetchall()


def meta(path: str | os.PathLike[str]) -> dict[str, object]:
    with raw(path) as conn:
        return dict(conn.execute("SELECT key, value FROM meta").fetchall())


def snapshot(path: str | os.PathLike[str]) -> dict[str, bytes | None]:
    """Bytes of the database file and its WAL (``None`` when the WAL does not exist)."""
    path = Path(path)
    wal = Path(f"{path}-wal")
    return {
        "db": path.read_bytes() if path.exists() else None,
        "wal": wal.read_bytes() if wal.exists() else None,
    }


def listing(directory: str | os.PathLike[str]) -> list[str]:
    return sorted(os.listdir(directory))


def normalized_schema(path: str | os.PathLike[str]) -> dict[tuple[str, str], str | None]:
    """``(type, name) -> sql`` from sqlite_master, whitespace collapsed."""
    with raw(path) as conn:
        found = conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
    return {(t, n): (None if s is None else re.sub(r"\s+", " ", s).strip()) for t, n, s in found}


def build_db(
    path: str | os.PathLike[str],
    ddl: tuple[str, ...] = V6_DDL,
    *,
    magic: str | None = MAGIC,
    schema_version: object = 6,
    last_ts: int | None = None,
    messages: tuple[tuple[str, str, int, int], ...] = (),
    journal_mode: str | None = None,
) -> None:
    """Create a database file as another program would, with the sqlite3 module."""
    with raw(path) as conn:
        if journal_mode is not None:
            conn.execute(f"PRAGMA journal_mode={journal_mode}")
        for statement in ddl:
            conn.execute(statement)
        if magic is not None:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('magic', ?)", (magic,))
        if schema_version is not None:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (schema_version,))
        if last_ts is not None:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'last_ts'", (last_ts,))
        for queue, body, ts, claimed in messages:
            conn.execute(
                "INSERT INTO messages (queue, body, ts, claimed) VALUES (?, ?, ?, ?)", (queue, body, ts, claimed)
            )


# Settings that keep tests independent of automatic vacuum unless they test it.
QUIET = {"BROKER_AUTO_VACUUM": "0"}
