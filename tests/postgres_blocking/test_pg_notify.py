"""Every change that makes messages pending notifies simplebroker-pg's channel with the queue's name.

A LISTEN connection of the test's own (as simplebroker-pg's listener and
ours will have) hears the notifications; after each operation the test sends
a marker on the same channel, so the payloads between two markers are that
operation's (sent at its COMMIT). Claims and deletes notify nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sansio_broker.postgres import notification_channel
from tests.postgres_blocking.pg_helpers import ours, theirs
from tests.support import pgserver

try:
    import psycopg
except ImportError:
    if pgserver.in_ci():
        raise
    pytest.skip(f"psycopg is not installed. {pgserver.HOW_TO_ENABLE}.", allow_module_level=True)

MARK = "--end-of-step--"


class Listener:
    def __init__(self, dsn: str, schema: str) -> None:
        self.channel = notification_channel(schema)
        self.connection = psycopg.connect(dsn, autocommit=True)
        self.connection.execute(f'LISTEN "{self.channel}"')

    def heard(self, step: Callable[[], Any]) -> list[str]:
        """Run ``step``; the payloads it caused, sorted (one transaction's order is its own)."""
        step()
        pgserver.admin_query(self.connection.info.dsn, "SELECT pg_notify(%s, %s)", (self.channel, MARK))
        payloads: list[str] = []
        for notify in self.connection.notifies(timeout=10.0):
            if notify.payload == MARK:
                return sorted(payloads)
            payloads.append(notify.payload)
        raise AssertionError(f"the step's marker never arrived (heard {payloads})")


@pytest.fixture
def listener(pg_dsn: str, pg_schema: str) -> Iterator[Listener]:
    heard = Listener(pg_dsn, pg_schema)
    try:
        yield heard
    finally:
        heard.connection.close()


def test_our_changes_notify_the_queues_that_gain_pending_messages(
    pg_dsn: str, pg_schema: str, listener: Listener
) -> None:
    with ours(pg_dsn, pg_schema) as broker:
        assert listener.heard(lambda: broker.write("a", "x")) == ["a"]
        # PostgreSQL folds repeats of one payload in one transaction
        assert listener.heard(lambda: broker.write_many("b", ["1", "2"])) == ["b"]
        assert listener.heard(lambda: broker.write("a", "k", keep_newest=1)) == ["a"]
        assert listener.heard(lambda: broker.broadcast("all")) == ["a", "b"]
        assert listener.heard(lambda: broker.move("a", "c")) == ["c"]
        assert listener.heard(lambda: broker.move_many("b", "c", 1)) == ["c"]
        claimed: list[Any] = []
        assert listener.heard(lambda: claimed.append(broker.claim("b"))) == []
        assert listener.heard(lambda: broker.return_messages("b", claimed)) == ["b"]
        stamp = broker.generate_id()
        assert listener.heard(lambda: broker.insert_messages("d", [("z", stamp)])) == ["d"]
        assert listener.heard(lambda: broker.rename_queue("d", "e")) == ["d", "e"]
        assert listener.heard(lambda: broker.rename_queue("nothing", "f")) == []
        assert listener.heard(lambda: broker.peek_many("c", 10)) == []
        assert listener.heard(lambda: broker.delete("c")) == []
        assert listener.heard(lambda: broker.vacuum()) == []
        with broker.transaction():
            broker.write("g", "1")
            assert listener.heard(lambda: None) == []  # nothing before COMMIT
        assert listener.heard(lambda: None) == ["g"]
        with pytest.raises(RuntimeError), broker.transaction():
            broker.write("h", "dropped")
            raise RuntimeError
        assert listener.heard(lambda: None) == []  # a rollback notifies nobody


def test_simplebroker_pgs_changes_notify_the_same_way(pg_dsn: str, pg_schema: str, listener: Listener) -> None:
    with theirs(pg_dsn, pg_schema) as sb, ours(pg_dsn, pg_schema) as broker:
        assert listener.heard(lambda: sb.write("a", "x")) == ["a"]
        assert listener.heard(lambda: sb.broadcast("all")) == ["a"]
        assert listener.heard(lambda: sb.move_one("a", "c")) == ["c"]
        stamp = broker.generate_id()
        assert listener.heard(lambda: sb.insert_messages([("d", "z", stamp)])) == ["d"]
        assert listener.heard(lambda: sb.rename_queue("d", "e")) == ["d", "e"]
        # and what we write reaches a simplebroker-pg waiter on the same channel
        assert listener.heard(lambda: broker.write("e", "ours")) == ["e"]
