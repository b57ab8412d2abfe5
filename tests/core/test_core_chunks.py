"""Batch writes go out in growing chunks: a driver can stop a cancelled batch
between them, and a big batch is still only a few commands."""

from __future__ import annotations

from sansio_broker.core import INSERT_CHUNK_ROWS, MAX_INSERT_CHUNK_ROWS
from sansio_broker.driver import ExecuteMany
from sansio_broker.testing import run_with
from tests.core.core_testkit import FakeDb, make_session


def test_write_many_inserts_in_chunks_in_order() -> None:
    count = 3 * INSERT_CHUNK_ROWS + 20
    db = FakeDb()
    ids, commands = run_with(make_session(auto_vacuum=False).write_many("q", [f"m{n}" for n in range(count)]), db)
    chunks = [c.rows for c in commands if isinstance(c, ExecuteMany)]
    assert [len(rows) for rows in chunks] == [INSERT_CHUNK_ROWS, 2 * INSERT_CHUNK_ROWS, 20]
    rows = [row for chunk in chunks for row in chunk]
    assert [body for _, body, _ in rows] == [f"m{n}" for n in range(count)]
    assert [id_ for _, _, id_ in rows] == ids == sorted(ids)
    assert len(set(ids)) == count


def test_a_big_batch_is_a_few_commands_of_growing_size() -> None:
    ids, commands = run_with(make_session(auto_vacuum=False).write_many("q", ["x"] * 5000), FakeDb())
    sizes = [len(c.rows) for c in commands if isinstance(c, ExecuteMany)]
    assert sizes[:3] == [INSERT_CHUNK_ROWS, 2 * INSERT_CHUNK_ROWS, 4 * INSERT_CHUNK_ROWS]
    assert max(sizes) == MAX_INSERT_CHUNK_ROWS
    assert sum(sizes) == len(ids) == 5000
    assert len(sizes) == 11  # 25 + 50 + ... + 800, then 800s: not 200 chunks of 25
