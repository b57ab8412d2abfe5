"""The PostgreSQL dialect's statements on a real server, read back by simplebroker-pg.

Without any adapter: a few lines of plain psycopg here run the core's operations (``BrokerCore`` with
:func:`~sansio_broker.postgres.postgres_dialect`), answering each command as a
driver would: bootstrap a fresh schema, write (meta advanced, then the insert
with its notify), claim, move, rename, vacuum. simplebroker-pg 4.7.2 then
opens the same schema with its own Python API and finds what was written.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, TypeVar

import pytest

from sansio_broker.commands import (
    Begin,
    Commit,
    Execute,
    ExecuteMany,
    Fetch,
    Operation,
    ReadClock,
    Rollback,
    SealGroup,
    Sleep,
)
from sansio_broker.config import Config
from sansio_broker.driver import BrokerCore, Session
from sansio_broker.postgres import PostgresDialect, advisory_lock_key, postgres_dialect
from tests.support import pgserver

try:
    import psycopg
except ImportError:  # as the server fixture does: skip, but fail under CI=true
    if pgserver.in_ci():
        raise
    pytest.skip(f"psycopg is not installed. {pgserver.HOW_TO_ENABLE}.", allow_module_level=True)

T = TypeVar("T")


def drive(conn: psycopg.Connection[Any], dialect: PostgresDialect, operation: Operation[T]) -> T:
    """Run an operation's commands on one autocommit connection (the driver to come, in miniature)."""
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            command = operation.throw(error) if error is not None else operation.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        result, error = None, None
        try:
            if isinstance(command, Execute):
                cursor = conn.execute(command.sql, tuple(command.params) or None)
                if command.fetch is Fetch.ONE:
                    result = cursor.fetchone()
                elif command.fetch is Fetch.ALL:
                    result = cursor.fetchall()
                elif command.fetch is Fetch.ROWCOUNT:
                    result = cursor.rowcount
            elif isinstance(command, ExecuteMany):
                with conn.cursor() as cursor:
                    cursor.executemany(command.sql, command.rows)
            elif isinstance(command, Begin | Commit | Rollback):
                conn.execute(command.sql)
            elif isinstance(command, ReadClock):
                result = time.time_ns()
            elif isinstance(command, Sleep):
                time.sleep(command.seconds)
            elif isinstance(command, SealGroup):
                result = frozenset()
            else:  # pragma: no cover - a command this sketch does not know
                raise AssertionError(f"unexpected command {command!r}")
        except psycopg.Error as exc:
            error = dialect.classify_error(str(exc), exc.sqlstate)


@pytest.fixture
def schema(pg_dsn: str) -> Iterator[str]:
    """A schema name nobody created yet: the bootstrap makes it."""
    with pgserver.fresh_schema(pg_dsn, prefix="d", create=False) as name:
        yield name


@pytest.fixture
def conn(pg_dsn: str, schema: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg_dsn, autocommit=True) as connection:
        for statement in postgres_dialect(schema).connection_setup(Config()):
            connection.execute(statement)
        yield connection


def bootstrap(conn: psycopg.Connection[Any], dialect: PostgresDialect) -> bool:
    conn.execute(dialect.BEGIN_WRITE)
    created = drive(conn, dialect, dialect.bootstrap())
    conn.execute("COMMIT")
    return created


def notifications(listener: psycopg.Connection[Any], count: int) -> list[tuple[str, str]]:
    got = [(n.channel, n.payload) for n in listener.notifies(timeout=5.0, stop_after=count)]
    return got


def test_bootstrap_write_claim_then_simplebroker_pg_reads(pg_dsn: str, schema: str, conn: Any) -> None:
    from simplebroker import Queue
    from simplebroker_pg import PostgresRunner

    dialect = postgres_dialect(schema)
    assert drive(conn, dialect, iter_rows(dialect.LIST_TABLES)) == []
    assert bootstrap(conn, dialect) is True
    assert bootstrap(conn, dialect) is False  # already there: the re-check under the lock
    assert {r[0] for r in drive(conn, dialect, iter_rows(dialect.LIST_TABLES))} == {"messages", "meta", "aliases"}
    assert drive(conn, dialect, dialect.check_messages_table("t", canonical=True)) is False
    meta = drive(conn, dialect, dialect.read_meta())
    assert meta == {"magic": "simplebroker-v1", "schema_version": 6, "last_ts": 0, "alias_version": 0}
    indexes = conn.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = %s ORDER BY indexname", (schema,)
    ).fetchall()
    assert [r[0] for r in indexes] == [
        "aliases_pkey",
        "idx_aliases_target",
        "idx_messages_pending_queue_ts",
        "idx_messages_queue_ts",
        "messages_pkey",
        "meta_pkey",
    ]

    session: Session = BrokerCore(dialect=dialect).session()
    with psycopg.connect(pg_dsn, autocommit=True) as listener:
        listener.execute(dialect.LISTEN)
        ids = [drive(conn, dialect, session.write("jobs", body)) for body in ("a", "b", "c")]
        got = notifications(listener, 3)
    assert got == [(dialect.channel, "jobs")] * 3
    assert ids == sorted(ids) and drive(conn, dialect, session.last_id()) == ids[-1]

    claimed = drive(conn, dialect, session.claim("jobs"))
    assert claimed is not None and (claimed.body, claimed.id) == ("a", ids[0])

    runner = PostgresRunner(pg_dsn, schema=schema)
    queue = Queue("jobs", runner=runner, persistent=True)
    try:
        assert queue.read(with_timestamps=True) == ("b", ids[1])
        later = queue.write("d")  # simplebroker-pg continues from our meta.last_ts
        assert later > ids[-1]
        assert queue.read(with_timestamps=True) == ("c", ids[2])
    finally:
        queue.close()
        runner.close()
    assert [m.body for m in drive(conn, dialect, session.claim_many("jobs", 10))] == ["d"]


def iter_rows(sql: str) -> Operation[list[Any]]:
    rows: list[Any] = yield Execute(sql, (), Fetch.ALL)
    return rows


def test_move_rename_notify_and_simplebroker_pg_sees_them(pg_dsn: str, schema: str, conn: Any) -> None:
    from simplebroker import Queue
    from simplebroker_pg import PostgresRunner

    dialect = postgres_dialect(schema)
    bootstrap(conn, dialect)
    session = BrokerCore(dialect=dialect).session()
    drive(conn, dialect, session.write_many("src", ["m1", "m2"]))
    with psycopg.connect(pg_dsn, autocommit=True) as listener:
        listener.execute(dialect.LISTEN)
        moved = drive(conn, dialect, session.move_many("src", "dst", 5))
        assert [m.body for m in moved] == ["m1", "m2"]
        assert notifications(listener, 1) == [(dialect.channel, "dst")]  # once per statement
        # The rename statement the core runs, then its notifications, in one transaction.
        conn.execute("BEGIN")
        renamed = conn.execute(dialect.RENAME_QUEUE, ("renamed", "dst")).rowcount
        for command in dialect.change_notification(["dst", "renamed"]):
            assert isinstance(command, Execute)
            conn.execute(command.sql, command.params)
        conn.execute("COMMIT")
        assert renamed == 2
        assert notifications(listener, 2) == [(dialect.channel, "dst"), (dialect.channel, "renamed")]

    runner = PostgresRunner(pg_dsn, schema=schema)
    queue = Queue("renamed", runner=runner, persistent=True)
    try:
        assert queue.read() == "m1"
        assert queue.read() == "m2"
    finally:
        queue.close()
        runner.close()


def test_vacuum_compact_size_and_repair_on_the_server(pg_dsn: str, schema: str, conn: Any) -> None:
    dialect = postgres_dialect(schema)
    bootstrap(conn, dialect)
    session = BrokerCore(dialect=dialect).session()
    drive(conn, dialect, session.write_many("v", [str(i) for i in range(5)]))
    drive(conn, dialect, session.claim_many("v", 3))
    # Another session holding simplebroker-pg's vacuum key keeps us out.
    with psycopg.connect(pg_dsn, autocommit=True) as other:
        key = advisory_lock_key("vacuum", schema)
        assert other.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone() == (True,)
        assert drive(conn, dialect, session.vacuum()) == 0
        # Unlocked here: closing the connection frees it only once its backend has exited.
        other.execute("SELECT pg_advisory_unlock(%s)", (key,))
    assert drive(conn, dialect, session.vacuum(compact=True)) == 3  # VACUUM runs in autocommit
    assert drive(conn, dialect, session.vacuum()) == 0
    assert drive(conn, dialect, session.status()).total_messages == 2
    size = conn.execute(dialect.DATABASE_SIZE).fetchone()
    assert size is not None and size[0] > 0
    # An absent canonical index is reported repairable, and the repair is the shape check's.
    conn.execute("DROP INDEX idx_messages_pending_queue_ts")
    assert conn.execute(dialect.V6_SHAPE_DETAILS).fetchone() == (True, True, True, None)
    assert drive(conn, dialect, dialect.check_messages_table("t", canonical=True)) is True
    for statement in dialect.REPAIR_V6_INDEXES:
        conn.execute(statement)
    assert drive(conn, dialect, dialect.check_messages_table("t", canonical=True)) is False
    # A wrong one is refused.
    conn.execute("DROP INDEX idx_messages_queue_ts")
    conn.execute("CREATE INDEX idx_messages_queue_ts ON messages (ts, queue)")
    assert conn.execute(dialect.V6_SHAPE_DETAILS).fetchone() == (True, True, False, True)


def test_every_statement_parses_on_the_server(conn: Any, schema: str) -> None:
    """Each text is valid PostgreSQL (prepared, not run)."""
    dialect = postgres_dialect(schema)
    bootstrap(conn, dialect)
    texts: dict[str, str] = {}
    for name in dir(dialect):
        value = getattr(dialect, name)
        if (
            name.isupper()
            and isinstance(value, str)
            and name not in {"DATABASE_NOUN", "BEGIN_WRITE", "LISTEN", "ALIASES_TABLE"}
        ):
            texts[name] = value
    where = dialect.where(by_id=False, unclaimed_only=True, after=True, before=True)
    for newest in (False, True):
        texts[f"claim{newest}"] = dialect.claim(where, newest)
        texts[f"claim_skip{newest}"] = dialect.claim(where, newest, skip_locked=True)
        texts[f"move{newest}"] = dialect.move(where, newest)
        texts[f"peek{newest}"] = dialect.peek(where, newest)
    texts["find"] = dialect.find_ids(include_claimed=False, after=True, before=True)
    skipped = {"SEARCH_PATH", "SERVER_VERSION_NUM", "LOCK_MESSAGES", "BACKEND_NAME"}
    for name, text in sorted(texts.items()):
        if name in skipped:
            continue
        statement = f"PREPARE p_{name.lower()} AS {psycopg_to_dollar(text)}"
        conn.execute(statement)
        conn.execute(f"DEALLOCATE p_{name.lower()}")


def psycopg_to_dollar(text: str) -> str:
    parts = text.split("%s")
    return "".join(part + (f"${i}" if i < len(parts) else "") for i, part in enumerate(parts, 1))
