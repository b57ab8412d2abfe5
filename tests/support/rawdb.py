"""Plain sqlite3 looks at a database file, independent of the broker under test."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from typing import Any


@contextmanager
def connect(path: str | os.PathLike[str]) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection (autocommit) to look at or prepare a file; closed on exit."""
    with closing(sqlite3.connect(os.fspath(path), isolation_level=None, timeout=30)) as conn:
        yield conn


def query(path: str | os.PathLike[str], sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Every row of one statement, on a connection of its own."""
    with connect(path) as conn:
        return conn.execute(sql, tuple(params)).fetchall()


def meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``meta`` table as a dict."""
    return dict(query(path, "SELECT key, value FROM meta"))


def rows(path: str | os.PathLike[str], queue: str | None = None) -> list[tuple[str, str, int, int]]:
    """Every stored row ``(queue, body, ts, claimed)`` in ID order, of one queue or all."""
    if queue is None:
        return query(path, "SELECT queue, body, ts, claimed FROM messages ORDER BY ts")  # type: ignore[return-value]
    return query(  # type: ignore[return-value]
        path, "SELECT queue, body, ts, claimed FROM messages WHERE queue = ? ORDER BY ts", (queue,)
    )
