"""The interop matrix: each operation done by one program, its effect seen by the other.

Both programs open the same PostgreSQL schema: ours through the blocking
``Broker``, simplebroker-pg 4.7.2 through its own ``BrokerCore`` (the object
its ``Queue`` and its ``broker`` command use). For every operation, two
directions: ours does it and simplebroker-pg reads the result, and the
other way round. Run with ``-v`` to see the matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from sansio_broker import Config
from sansio_broker.adapters.blocking import Broker
from tests.support import pgserver

try:
    import simplebroker_pg  # noqa: F401
except ImportError:
    if pgserver.in_ci():
        raise
    pytest.skip(f"simplebroker-pg is not installed. {pgserver.HOW_TO_ENABLE}.", allow_module_level=True)

from simplebroker import Queue
from simplebroker_pg import PostgresRunner


@contextmanager
def theirs(dsn: str, schema: str) -> Iterator[Any]:
    """simplebroker-pg's broker core on the schema (its queue, vacuum, alias and broadcast calls)."""
    runner = PostgresRunner(dsn, schema=schema)
    queue = Queue("anchor", runner=runner, persistent=True)
    try:
        with queue.get_connection() as core:
            yield core
    finally:
        queue.close()
        runner.close()


@pytest.fixture
def ours(pg_dsn: str, pg_schema: str) -> Iterator[Broker]:
    with Broker(pg_dsn, config=Config(backend_schema=pg_schema)) as broker:
        yield broker


def pending(core: Any, queue: str) -> list[str]:
    return list(core.peek_many(queue, limit=1000, with_timestamps=False))


Step = Callable[[Broker, Any], None]

# name: (setup, act, check): setup and check get (ours, theirs); act is one program's.
OURS_THEN_THEIRS: dict[str, tuple[Step, Step]] = {
    "write": (lambda o, t: o.write_many("q", ["a", "b"]), lambda o, t: _eq(pending(t, "q"), ["a", "b"])),
    "claim": (
        lambda o, t: (t.write("q", "a"), t.write("q", "b"), _eq(o.read("q"), ["a"])),
        lambda o, t: _eq(pending(t, "q"), ["b"]),
    ),
    "move": (
        lambda o, t: (t.write("q", "a"), _eq(o.move("q", "dst").body, "a")),  # type: ignore[union-attr]
        lambda o, t: (_eq(pending(t, "q"), []), _eq(pending(t, "dst"), ["a"])),
    ),
    "broadcast": (
        lambda o, t: (t.write("x", "1"), t.write("y", "1"), o.broadcast("all")),
        lambda o, t: (_eq(pending(t, "x"), ["1", "all"]), _eq(pending(t, "y"), ["1", "all"])),
    ),
    "delete": (
        lambda o, t: (t.write("q", "a"), t.write("k", "b"), o.delete("q")),
        lambda o, t: (_eq(pending(t, "q"), []), _eq(pending(t, "k"), ["b"])),
    ),
    "alias": (
        lambda o, t: (o.add_alias("al", "real"), o.write("@al", "via alias")),
        lambda o, t: (_eq(t.resolve_alias("al"), "real"), _eq(pending(t, "real"), ["via alias"])),
    ),
    "rename": (
        lambda o, t: (t.write("old", "a"), o.rename_queue("old", "new")),
        lambda o, t: (_eq(pending(t, "old"), []), _eq(pending(t, "new"), ["a"])),
    ),
    "keep_newest": (
        lambda o, t: (o.write_many("q", ["1", "2", "3"]), o.write("q", "4", keep_newest=2)),
        lambda o, t: _eq(pending(t, "q"), ["3", "4"]),
    ),
    "vacuum": (
        lambda o, t: (o.write_many("q", ["a", "b"]), o.read("q"), o.vacuum()),
        lambda o, t: (_eq(t.count_claimed_messages(), 0), _eq(pending(t, "q"), ["b"])),
    ),
    "ids": (
        lambda o, t: o.write("q", "mine"),
        lambda o, t: _gt(t.write("q", "theirs"), o.peek("q").id),  # type: ignore[union-attr]
    ),
}

THEIRS_THEN_OURS: dict[str, tuple[Step, Step]] = {
    "write": (
        lambda o, t: (t.write("q", "a"), t.write("q", "b")),
        lambda o, t: _eq(o.read("q", all_messages=True), ["a", "b"]),
    ),
    "claim": (
        lambda o, t: (o.write_many("q", ["a", "b"]), _eq(t.claim_one("q", with_timestamps=False), "a")),
        lambda o, t: _eq([m.body for m in o.peek_many("q", 10)], ["b"]),
    ),
    "move": (
        lambda o, t: (o.write("q", "a"), t.move_one("q", "dst", with_timestamps=False)),
        lambda o, t: (_eq(o.peek_many("q", 10), []), _eq([m.body for m in o.peek_many("dst", 10)], ["a"])),
    ),
    "broadcast": (
        lambda o, t: (o.write("x", "1"), o.write("y", "1"), t.broadcast("all")),
        lambda o, t: (
            _eq([m.body for m in o.peek_many("x", 10)], ["1", "all"]),
            _eq([m.body for m in o.peek_many("y", 10)], ["1", "all"]),
        ),
    ),
    "delete": (
        lambda o, t: (o.write("q", "a"), o.write("k", "b"), t.delete("q")),
        lambda o, t: (_eq(o.peek_many("q", 10), []), _eq([m.body for m in o.peek_many("k", 10)], ["b"])),
    ),
    "alias": (
        lambda o, t: (t.add_alias("al", "real"), t.write("real", "there")),
        lambda o, t: (_eq(o.resolve_queue("@al"), "real"), _eq(o.read("@al"), ["there"])),
    ),
    "rename": (
        lambda o, t: (o.write("old", "a"), t.rename_queue("old", "new")),
        lambda o, t: (_eq(o.peek_many("old", 10), []), _eq([m.body for m in o.peek_many("new", 10)], ["a"])),
    ),
    "keep_newest": (
        lambda o, t: (o.write_many("q", ["1", "2", "3"]), t.write("q", "4", keep_newest=2)),
        lambda o, t: _eq([m.body for m in o.peek_many("q", 10)], ["3", "4"]),
    ),
    "vacuum": (
        lambda o, t: (o.write_many("q", ["a", "b"]), o.read("q"), t.vacuum()),
        lambda o, t: _eq([m.body for m in o.peek_many("q", 10, include_claimed=True)], ["b"]),
    ),
    "ids": (
        lambda o, t: t.write("q", "theirs"),
        lambda o, t: _gt(o.write("q", "mine"), o.peek("q").id),  # type: ignore[union-attr]
    ),
}


def _eq(got: object, expected: object) -> None:
    assert got == expected


def _gt(got: int, than: int) -> None:
    assert got > than


@pytest.mark.parametrize("operation", list(OURS_THEN_THEIRS))
def test_ours_does_simplebroker_pg_sees(operation: str, ours: Broker, pg_dsn: str, pg_schema: str) -> None:
    act, check = OURS_THEN_THEIRS[operation]
    with theirs(pg_dsn, pg_schema) as core:
        act(ours, core)
    with theirs(pg_dsn, pg_schema) as core:  # a fresh connection of theirs reads the result
        check(ours, core)


@pytest.mark.parametrize("operation", list(THEIRS_THEN_OURS))
def test_simplebroker_pg_does_ours_sees(operation: str, ours: Broker, pg_dsn: str, pg_schema: str) -> None:
    act, check = THEIRS_THEN_OURS[operation]
    with theirs(pg_dsn, pg_schema) as core:
        act(ours, core)
    with Broker(pg_dsn, config=Config(backend_schema=pg_schema)) as fresh:  # a fresh broker of ours reads it
        check(fresh, None)


def test_the_matrix_covers_the_same_operations_both_ways() -> None:
    assert list(OURS_THEN_THEIRS) == list(THEIRS_THEN_OURS)
