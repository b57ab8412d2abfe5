"""Helpers shared by the blocking-adapter tests: raw looks at the file on disk."""

from __future__ import annotations

import os
import re
from pathlib import Path

from support.contract import MAGIC, V6_DDL
from support.rawdb import connect


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
    with connect(path) as conn:
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
    with connect(path) as conn:
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
