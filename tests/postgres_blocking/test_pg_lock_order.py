"""Our writes and simplebroker-pg's table-wide changes, run at the same time, never deadlock.

simplebroker-pg takes its locks in one order: the aliases advisory lock,
then the meta row, then ``LOCK TABLE messages IN SHARE ROW EXCLUSIVE MODE``
(broadcast, rename, ``write(keep_newest=)``). Each test runs one of our
operations and a conflicting one of simplebroker-pg's on two threads, every
round started at once, then checks what the schema holds and that the server
detected no deadlock (a deadlock is retried by both programs, so callers
would only see a one-second stall: the server's count is what tells).
"""

from __future__ import annotations

import time

import pytest

from tests.postgres_blocking.pg_helpers import deadlocks, ours, rows, theirs, together
from tests.support import pgserver

try:
    import psycopg  # noqa: F401
except ImportError:
    if pgserver.in_ci():
        raise
    pytest.skip(f"psycopg is not installed. {pgserver.HOW_TO_ENABLE}.", allow_module_level=True)

ROUNDS = 40
BLOCK = 1 << 16  # IDs of one round apart: simplebroker-pg's IDs in between stay below the next


def test_insert_messages_against_their_broadcast_and_keep_newest(pg_dsn: str, pg_schema: str) -> None:
    """Exact-ID inserts (dump loading) raise meta.last_ts before touching messages."""
    before = deadlocks(pg_dsn)
    # Ahead of the clock, so every insert must raise last_ts (the meta row lock).
    base = (time.time_ns() + 60 * 10**9) & ~0xFFF
    with ours(pg_dsn, pg_schema) as broker, theirs(pg_dsn, pg_schema) as sb, theirs(pg_dsn, pg_schema) as sb2:
        broker.write_many("a", ["seed"])
        sb.write("b", "seed")

        def load(n: int) -> None:
            assert broker.insert_messages("loaded", [(f"x{n}", base + n * BLOCK)]) == 1

        together(
            load,
            lambda n: sb.broadcast(f"b{n}", pattern="[ab]"),
            lambda n: sb2.write("ring", f"r{n}", keep_newest=2),
            rounds=ROUNDS,
        )
        assert [(m.body, m.id) for m in broker.peek_many("loaded", 1000) if m.body.startswith("x")] == [
            (f"x{n}", base + n * BLOCK) for n in range(ROUNDS)
        ]
        assert [m.body for m in broker.peek_many("ring", 10)] == [f"r{ROUNDS - 2}", f"r{ROUNDS - 1}"]
        broadcasts = rows(pg_dsn, pg_schema, "SELECT count(*) FROM {s}.messages WHERE body LIKE 'b%%'")[0][0]
        assert broadcasts == 2 * ROUNDS  # a and b, each round
        assert broker.status().last_timestamp > base + (ROUNDS - 1) * BLOCK
    assert deadlocks(pg_dsn) == before


def test_our_broadcast_and_keep_newest_against_their_broadcast(pg_dsn: str, pg_schema: str) -> None:
    before = deadlocks(pg_dsn)
    with ours(pg_dsn, pg_schema) as broker, theirs(pg_dsn, pg_schema) as sb:
        broker.write("a", "seed")
        sb.write("b", "seed")
        together(
            lambda n: broker.broadcast(f"ours{n}", pattern="[ab]"),
            lambda n: broker.write("ring", f"r{n}", keep_newest=3),
            lambda n: sb.broadcast(f"theirs{n}", pattern="[ab]"),
            lambda n: sb.write("ring", f"s{n}", keep_newest=3),
            rounds=ROUNDS,
        )
        assert len(broker.peek_many("ring", 10)) == 3
        for queue in ("a", "b"):
            bodies = [m.body for m in broker.peek_many(queue, 1000)]
            assert [b for b in bodies if b.startswith("ours")] == [f"ours{n}" for n in range(ROUNDS)]
            assert [b for b in bodies if b.startswith("theirs")] == [f"theirs{n}" for n in range(ROUNDS)]
    assert deadlocks(pg_dsn) == before


def test_our_rename_against_their_broadcast_and_alias_changes(pg_dsn: str, pg_schema: str) -> None:
    """Rename locks aliases, the meta row and the table before it reads anything."""
    before = deadlocks(pg_dsn)
    names = ("left", "right")
    with ours(pg_dsn, pg_schema) as broker, theirs(pg_dsn, pg_schema) as sb, theirs(pg_dsn, pg_schema) as sb2:
        broker.write_many("left", ["m0", "m1"])
        broker.add_alias("al", "left")

        def rename(n: int) -> None:
            result = broker.rename_queue(names[n % 2], names[(n + 1) % 2])
            assert result.renamed and result.aliases_retargeted == 1

        def alias_churn(n: int) -> None:
            sb2.add_alias(f"x{n}", "other")
            sb2.remove_alias(f"x{n}")

        together(rename, lambda n: sb.broadcast(f"b{n}", pattern="ri*"), alias_churn, rounds=ROUNDS)
        final = names[ROUNDS % 2]
        assert broker.list_queues() == [final]
        assert broker.list_aliases() == [("al", final)]
        bodies = [m.body for m in broker.peek_many(final, 1000)]
        assert bodies[:2] == ["m0", "m1"]
        assert len(bodies) == len(set(bodies))
    assert deadlocks(pg_dsn) == before


def test_our_alias_changes_against_their_rename(pg_dsn: str, pg_schema: str) -> None:
    """add/remove_alias take the aliases advisory lock first, as simplebroker-pg's rename does."""
    before = deadlocks(pg_dsn)
    names = ("left", "right")
    with ours(pg_dsn, pg_schema) as broker, theirs(pg_dsn, pg_schema) as sb:
        broker.write("left", "m")

        def churn(n: int) -> None:
            broker.add_alias("al", names[n % 2])  # the queue being renamed, sometimes
            assert broker.remove_alias("al")

        together(churn, lambda n: sb.rename_queue(names[n % 2], names[(n + 1) % 2]), rounds=ROUNDS)
        assert broker.list_queues() == [names[ROUNDS % 2]]
        assert broker.list_aliases() == []
    assert deadlocks(pg_dsn) == before
