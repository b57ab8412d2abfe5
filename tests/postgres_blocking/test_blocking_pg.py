"""The blocking adapter on a PostgreSQL target: the core's operations through psycopg.

Each test opens ``Broker(dsn, config={"BROKER_BACKEND_SCHEMA": schema})`` in
a schema of its own on the shared test server; the storage is
simplebroker-pg's, so messages cross between the two programs both ways.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sansio_broker import DatabaseError, IntegrityError, InvalidInputError, Message
from sansio_broker.adapters._pg import describe
from sansio_broker.adapters.blocking import Broker
from tests.support import pgserver
from tests.support.workers import clean_env

try:
    import psycopg
except ImportError:  # as the server fixture does: skip, but fail under CI=true
    if pgserver.in_ci():
        raise
    pytest.skip(f"psycopg is not installed. {pgserver.HOW_TO_ENABLE}.", allow_module_level=True)


@pytest.fixture
def broker(pg_dsn: str, pg_schema: str) -> Iterator[Broker]:
    with Broker(pg_dsn, config={"BROKER_BACKEND_SCHEMA": pg_schema}) as opened:
        yield opened


def _rows(dsn: str, schema: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        return conn.execute(sql).fetchall()


# ---------------------------------------------------------------- opening
def test_opening_creates_simplebroker_pgs_schema(pg_dsn: str, pg_schema: str, broker: Broker) -> None:
    assert _rows(pg_dsn, pg_schema, "SELECT magic, schema_version FROM meta") == [("simplebroker-v1", 6)]
    listed = _rows(pg_dsn, pg_schema, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    tables = {r[0] for r in listed}
    assert tables == {"messages", "meta", "aliases"}
    # A second broker (and connection) admits what the first created.
    with Broker(pg_dsn, config={"BROKER_BACKEND_SCHEMA": pg_schema}) as again:
        again.write("q", "x")
    assert broker.read("q") == ["x"]


def test_postgres_scheme_spelling_works(pg_dsn: str, pg_schema: str) -> None:
    dsn = "postgres://" + pg_dsn.removeprefix("postgresql://")
    with Broker(dsn, config={"BROKER_BACKEND_SCHEMA": pg_schema}) as b:
        b.write("q", "a")
        assert b.read("q") == ["a"]


def test_schema_public_is_refused(pg_dsn: str) -> None:
    with pytest.raises(InvalidInputError, match="refuses to use schema 'public'"):
        Broker(pg_dsn, config={"BROKER_BACKEND_SCHEMA": "public"})


def test_label_hides_the_password() -> None:
    assert describe("postgresql://u:secret@h:5432/db", "s") == "postgresql://u:***@h:5432/db (schema s)"
    assert describe("postgresql://u@h/db", "s") == "postgresql://u@h/db (schema s)"


def test_a_sqlite_broker_never_imports_psycopg(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom sansio_broker.adapters.blocking import Broker\n"
        f"with Broker({str(tmp_path / 'x.db')!r}) as b:\n    b.write('q', 'a')\n"
        "assert 'psycopg' not in sys.modules, 'psycopg imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=clean_env({}), timeout=60)


# ---------------------------------------------------------------- operations
def test_write_read_peek_claim(broker: Broker) -> None:
    first = broker.write("jobs", "one")
    ids = broker.write_many("jobs", ["two", "three", "four"])
    assert first < ids[0] < ids[1] < ids[2]
    assert broker.peek("jobs") == Message("one", first)
    assert broker.claim("jobs") == Message("one", first)
    assert [m.body for m in broker.claim_many("jobs", 2)] == ["two", "three"]
    assert broker.claim("jobs", order="newest") == Message("four", ids[2])
    assert broker.claim("jobs") is None
    assert broker.peek("jobs", include_claimed=True) == Message("one", first)
    assert broker.has_pending("jobs") is False


def test_claim_by_id_and_bounds(broker: Broker) -> None:
    a, b, _ = broker.write_many("q", ["a", "b", "c"])
    assert broker.claim("q", message_id=b) == Message("b", b)
    assert broker.claim("q", message_id=b) is None
    assert [m.body for m in broker.claim_many("q", 10, after_timestamp=a)] == ["c"]
    assert broker.claim_all("q") == [Message("a", a)]


def test_move(broker: Broker) -> None:
    a, b, _ = broker.write_many("src", ["a", "b", "c"])
    assert broker.move("src", "dst") == Message("a", a)
    assert broker.move_many("src", "dst", 1) == [Message("b", b)]
    assert broker.move_all("src", "dst") == 1
    assert [m.body for m in broker.peek_many("dst", 10)] == ["a", "b", "c"]
    assert broker.list_queues() == ["dst"]


def test_delete(broker: Broker) -> None:
    a, b, _ = broker.write_many("q", ["a", "b", "c"])
    broker.write("other", "x")
    assert broker.delete_messages("q", [a, b, 12345]) == 2
    assert broker.delete("q") == 1
    assert broker.list_queues() == ["other"]
    assert broker.delete() == 1
    assert broker.list_queues() == []


def test_list_and_stats(broker: Broker) -> None:
    broker.write_many("a", ["1", "2", "3"])
    broker.write("b", "x")
    broker.claim("a")
    assert broker.list_queues() == ["a", "b"]
    assert [tuple(s) for s in broker.get_queue_stats()] == [("a", 2, 3), ("b", 1, 1)]
    assert tuple(broker.queue_stats("a")) == ("a", 2, 3)
    assert broker.queue_exists("b") and not broker.queue_exists("c")
    status = broker.status()
    assert status.total_messages == 4
    assert status.last_timestamp > 0
    assert status.db_size > 0


def test_aliases_and_rename(broker: Broker) -> None:
    broker.add_alias("al", "jobs")
    assert broker.list_aliases() == [("al", "jobs")]
    assert broker.resolve_queue("@al") == "jobs"
    broker.write("@al", "via alias")
    assert broker.read("jobs") == ["via alias"]
    broker.write("jobs", "again")
    result = broker.rename_queue("jobs", "work")
    assert (result.messages_renamed, result.aliases_retargeted, result.renamed) == (2, 1, True)
    assert broker.list_aliases() == [("al", "work")]
    assert broker.remove_alias("al") is True
    assert broker.list_aliases() == []


def test_keep_newest(broker: Broker) -> None:
    for n in range(5):
        broker.write("ring", str(n), keep_newest=2)
    assert broker.read("ring", all_messages=True) == ["3", "4"]


def test_broadcast(broker: Broker) -> None:
    broker.write("a", "x")
    broker.write("b", "y")
    assert broker.broadcast("all") == 2
    assert broker.read("a", all_messages=True) == ["x", "all"]


def test_dump_and_load(pg_dsn: str, broker: Broker) -> None:
    ids = broker.write_many("q", ["a", "b"])
    broker.add_alias("al", "q")
    broker.claim("q")
    lines = list(broker.dump())
    header = json.loads(lines[0])
    assert int(header["last_ts"]) >= ids[-1]
    with (
        pgserver.fresh_schema(pg_dsn, create=False) as other,
        Broker(pg_dsn, config={"BROKER_BACKEND_SCHEMA": other}) as target,
    ):
        assert tuple(target.load(lines)) == (1, 1)
        assert target.peek_many("q", 10) == [Message("b", ids[1])]
        assert target.list_aliases() == [("al", "q")]
        assert target.write("q", "later") > int(header["last_ts"])


def test_vacuum(pg_dsn: str, pg_schema: str, broker: Broker) -> None:
    broker.write_many("q", [str(n) for n in range(10)])
    broker.claim_many("q", 7)
    assert broker.vacuum() == 7
    assert broker.vacuum(compact=True) == 0
    assert _rows(pg_dsn, pg_schema, "SELECT count(*) FROM messages") == [(3,)]


def test_transaction_rolls_back(broker: Broker) -> None:
    broker.write("q", "kept")
    with pytest.raises(RuntimeError), broker.transaction():
        broker.write("q", "dropped")
        assert broker.claim("q") == broker.peek("q", include_claimed=True)
        raise RuntimeError
    assert broker.read("q", all_messages=True) == ["kept"]


def test_a_failed_statement_aborts_the_transaction(broker: Broker) -> None:
    """PostgreSQL, unlike SQLite, aborts the whole transaction on a failed
    statement: its COMMIT (which the server turns into a ROLLBACK) fails."""
    first = broker.write("q", "a")
    with pytest.raises(DatabaseError, match="COMMIT rolled back instead") as caught, broker.transaction():
        broker.write("q", "b")
        with pytest.raises(IntegrityError):
            broker.insert_messages("q", [("dup", first)])
    assert caught.value.code == "25P02"
    assert broker.read("q", all_messages=True) == ["a"]
    broker.write("q", "usable")  # the connection is clean again
    assert broker.read("q") == ["usable"]


# ---------------------------------------------------------------- with simplebroker-pg
def _simplebroker_queue(dsn: str, schema: str, name: str) -> tuple[Any, Any]:
    """simplebroker-pg's Queue on the schema, and its runner (close both)."""
    try:
        import simplebroker_pg  # noqa: F401
    except ImportError:
        pgserver.unavailable("simplebroker_pg is not installed")
    from simplebroker import Queue
    from simplebroker_pg import PostgresRunner

    runner = PostgresRunner(dsn, schema=schema)
    return Queue(name, runner=runner, persistent=True), runner


def test_simplebroker_pg_reads_what_we_write(pg_dsn: str, pg_schema: str, broker: Broker) -> None:
    ours = broker.write_many("jobs", ["one", "two"])
    queue, runner = _simplebroker_queue(pg_dsn, pg_schema, "jobs")
    try:
        assert queue.peek_many(10, with_timestamps=True) == [("one", ours[0]), ("two", ours[1])]
        assert queue.read() == "one"
        theirs = queue.write("three")
        assert theirs > ours[1]
    finally:
        queue.close()
        runner.close()
    assert broker.read("jobs", all_messages=True) == ["two", "three"]
    assert broker.write("jobs", "four") > theirs


def test_we_read_what_simplebroker_pg_writes(pg_dsn: str, pg_schema: str) -> None:
    queue, runner = _simplebroker_queue(pg_dsn, pg_schema, "jobs")
    try:
        queue.write("from sb-pg")
        queue.write("second")
    finally:
        queue.close()
        runner.close()
    with Broker(pg_dsn, config={"BROKER_BACKEND_SCHEMA": pg_schema}) as b:
        assert b.read("jobs") == ["from sb-pg"]
        assert b.peek("jobs").body == "second"  # type: ignore[union-attr]


# ---------------------------------------------------------------- concurrency
def test_four_threads_claim_each_message_once(broker: Broker) -> None:
    written = broker.write_many("work", [f"m{n}" for n in range(200)])
    got: list[list[int]] = [[] for _ in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def consume(mine: list[int]) -> None:
        try:
            start.wait()
            while True:
                message = broker.claim("work")
                if message is None:
                    if not broker.has_pending("work"):
                        return
                    continue
                mine.append(message.id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=consume, args=(mine,)) for mine in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    delivered = [i for mine in got for i in mine]
    assert sorted(delivered) == written  # each exactly once
    assert all(mine == sorted(mine) for mine in got)  # FIFO per consumer
