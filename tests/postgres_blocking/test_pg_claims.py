"""Many concurrent consumers on one queue: each message delivered once, in order per consumer, no false "empty".

At READ COMMITTED a claim's ``SELECT ... FOR UPDATE`` that waits for a row
another claim takes re-checks it once that claim commits, finds it claimed
and goes on to the next row (the lock step sits below LIMIT since PostgreSQL
9.0): so a claim comes back empty, or short of its limit, only when fewer
messages were pending. These tests hold that on the server: 2,000 messages,
8 consumers (claim, claim_many, move; simplebroker-pg's claims among them),
nothing written meanwhile, so any empty answer while ``has_pending`` still
says yes would be a false "empty" (none seen: the core needs no retry).
``Config.relaxed_order`` (SKIP LOCKED) keeps exactly once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from sansio_broker import Message
from sansio_broker.adapters.blocking import Broker
from tests.postgres_blocking.pg_helpers import ours, theirs
from tests.support import pgserver

try:
    import psycopg
except ImportError:
    if pgserver.in_ci():
        raise
    pytest.skip(f"psycopg is not installed. {pgserver.HOW_TO_ENABLE}.", allow_module_level=True)

MESSAGES = 2000
BATCH = 7


class Consumers:
    """Consumers of ``work``, each with what it got, in order, and its false
    empties (answers short of the limit while messages were pending)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.got: dict[str, list[int]] = {}
        self.false_empty: dict[str, int] = {}
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []
        self.start = threading.Barrier(1)

    def add(self, name: str, take: Callable[[], list[int]], limit: int = 1) -> None:
        self.got[name], self.false_empty[name] = [], 0

        def run() -> None:
            try:
                self.start.wait(30)
                while True:
                    ids = take()
                    self.got[name].extend(ids)
                    if len(ids) < limit and self.broker.has_pending("work"):
                        # nothing is written meanwhile: rows were pending when it claimed
                        self.false_empty[name] += 1
                    elif not ids:
                        return
            except BaseException as exc:
                self.errors.append(exc)

        self.threads.append(threading.Thread(target=run, name=name))

    def run(self) -> None:
        self.start = threading.Barrier(len(self.threads))
        for t in self.threads:
            t.start()
        for t in self.threads:
            t.join(180)
        assert not any(t.is_alive() for t in self.threads), "a consumer hangs"
        assert not self.errors, self.errors


def _ids(messages: list[Message]) -> list[int]:
    return [m.id for m in messages]


def _one(message: Message | None) -> list[int]:
    return [] if message is None else [message.id]


def _consume(broker: Broker, consumers: Consumers, sb: list[Any]) -> None:
    for n in range(3):
        consumers.add(f"claim{n}", lambda: _one(broker.claim("work")))
    for n in range(2):
        consumers.add(f"many{n}", lambda: _ids(broker.claim_many("work", BATCH)), BATCH)
    for n in range(2 - len(sb)):
        consumers.add(f"move{n}", lambda: _one(broker.move("work", "done")))
    consumers.add("move_many", lambda: _ids(broker.move_many("work", "done", BATCH)), BATCH)
    for n, handle in enumerate(sb):

        def claim(handle: Any = handle) -> list[int]:
            found = handle.claim_one("work")
            return [] if found is None else [found[1]]

        consumers.add(f"simplebroker-pg{n}", claim)


def _check(broker: Broker, consumers: Consumers, written: list[int], *, strict: bool) -> None:
    delivered = [i for ids in consumers.got.values() for i in ids]
    assert sorted(delivered) == written  # every message exactly once
    for name, ids in consumers.got.items():
        assert ids == sorted(ids), f"{name} got messages out of order"
    moved = [i for name, ids in consumers.got.items() if name.startswith("move") for i in ids]
    assert _ids(broker.peek_many("done", MESSAGES)) == sorted(moved)
    assert broker.has_pending("work") is False
    if strict:
        assert consumers.false_empty == dict.fromkeys(consumers.got, 0)


@pytest.mark.parametrize("with_simplebroker_pg", [False, True], ids=["ours", "with-simplebroker-pg"])
def test_eight_consumers_get_each_message_once_in_order(
    pg_dsn: str, pg_schema: str, with_simplebroker_pg: bool
) -> None:
    with ours(pg_dsn, pg_schema) as broker:
        written = broker.write_many("work", [f"m{n}" for n in range(MESSAGES)])
        consumers = Consumers(broker)
        if with_simplebroker_pg:
            # simplebroker-pg's own auto-vacuum deletes claimed rows in an
            # order of its own while its claims wait for rows: that can
            # deadlock its claims (not retried there), whoever else shares
            # the schema. Ours passes over locked rows, so it stays on.
            no_vacuum = {"BROKER_AUTO_VACUUM": 0}
            with theirs(pg_dsn, pg_schema, **no_vacuum) as sb0, theirs(pg_dsn, pg_schema, **no_vacuum) as sb1:
                _consume(broker, consumers, [sb0, sb1])
                consumers.run()
        else:
            _consume(broker, consumers, [])
            consumers.run()
        _check(broker, consumers, written, strict=True)


def test_relaxed_order_still_delivers_each_message_once(pg_dsn: str, pg_schema: str) -> None:
    """SKIP LOCKED: a claim passes over rows others hold; an empty answer
    may come while those are in flight, so only exactly-once and each
    consumer's own order are checked (no claim rolls back here)."""
    with ours(pg_dsn, pg_schema, relaxed_order=True) as broker:
        written = broker.write_many("work", [f"m{n}" for n in range(MESSAGES)])
        consumers = Consumers(broker)
        _consume(broker, consumers, [])
        consumers.run()
        _check(broker, consumers, written, strict=False)


def test_relaxed_order_claims_skip_a_row_another_transaction_holds(pg_dsn: str, pg_schema: str) -> None:
    """The difference itself: with a row locked by an open transaction, the
    relaxed claim takes the next one at once; the strict one waits for it."""
    with ours(pg_dsn, pg_schema) as strict, ours(pg_dsn, pg_schema, relaxed_order=True) as relaxed:
        first, second, _ = strict.write_many("q", ["a", "b", "c"])
        holder = psycopg.connect(pg_dsn, autocommit=True)
        try:
            holder.execute(f'SET search_path TO "{pg_schema}"')
            holder.execute("BEGIN")
            holder.execute("SELECT ts FROM messages WHERE ts = %s FOR UPDATE", (first,))
            assert relaxed.claim("q") == Message("b", second)
            assert [m.body for m in relaxed.move_many("q", "r", 5)] == ["c"]
            taken: list[Message | None] = []
            waiter = threading.Thread(target=lambda: taken.append(strict.claim("q")))
            waiter.start()
            waiter.join(0.5)
            assert waiter.is_alive()  # waits for the lock holder
            holder.execute("ROLLBACK")  # the row stays pending: the strict claim takes it
            waiter.join(30)
            assert taken == [Message("a", first)]
        finally:
            holder.close()
