"""Batch writes go out in chunks, so a driver can stop a cancelled batch between them."""

from __future__ import annotations

from core_testkit import FakeDb, make_session

from sansio_broker import ExecuteMany
from sansio_broker.core import INSERT_CHUNK_ROWS
from sansio_broker.testing import run_with


def test_write_many_inserts_in_chunks_in_order() -> None:
    count = 2 * INSERT_CHUNK_ROWS + 20
    db = FakeDb()
    ids, commands = run_with(make_session(auto_vacuum=False).write_many("q", [f"m{n}" for n in range(count)]), db)
    chunks = [c.rows for c in commands if isinstance(c, ExecuteMany)]
    assert [len(rows) for rows in chunks] == [INSERT_CHUNK_ROWS, INSERT_CHUNK_ROWS, 20]
    rows = [row for chunk in chunks for row in chunk]
    assert [body for _, body, _ in rows] == [f"m{n}" for n in range(count)]
    assert [id_ for _, _, id_ in rows] == ids == sorted(ids)
    assert len(set(ids)) == count
