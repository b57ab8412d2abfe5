"""The dialect seam: a second, fake dialect plugged into ``BrokerCore`` runs the
unchanged operations, and every statement they send is that dialect's.

The fake renders as another engine would: ``%s`` placeholders, ``TRUE``/
``FALSE`` for the claimed flag, ``NULL`` for "no limit", its own way to start
a write transaction, lock a vacuum, inspect a table and classify errors.
Every statement it renders starts with ``/* fake */``, so a command that
carries SQLite's text instead stands out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

import sansio_broker
from sansio_broker import (
    BusyError,
    Config,
    DatabaseError,
    ForeignDatabaseError,
    IncompatibleDatabaseError,
    IntegrityError,
    Message,
    NotADatabaseError,
)
from sansio_broker.commands import Command, Operation
from sansio_broker.dialect import Dialect
from sansio_broker.driver import (
    Begin,
    BrokerCore,
    Commit,
    Execute,
    ExecuteMany,
    Fetch,
    ReadClock,
    RetryPolicy,
    SealGroup,
    Session,
    Sleep,
)
from sansio_broker.errors import NotADatabaseDriverError
from sansio_broker.sqlite import SQLITE, SQLiteDialect
from sansio_broker.testing import Stepper, run_scripted, run_with
from tests.core.core_testkit import NOW

TAG = "/* fake */ "


def fake(text: str) -> str:
    """SQLite's statement as the fake engine spells it."""
    text = text.replace("claimed = 1", "claimed = TRUE").replace("claimed = 0", "claimed = FALSE")
    return TAG + text.replace("?", "%s").removeprefix(TAG)


class FakeDialect:
    """A second engine: same operations, different text and rules."""

    DATABASE_NOUN = "a fake database"
    BACKEND_NAME = "fake"
    TEXT_ALLOWS_NUL = False
    BEGIN_WRITE = TAG + "START TRANSACTION READ WRITE"
    NO_LIMIT: int | None = None  # LIMIT NULL

    LIST_TABLES = TAG + "SELECT table_name FROM information_schema.tables"
    READ_META = fake(SQLITE.READ_META)
    ALIASES_TABLE = "queue_aliases"
    CREATE_SCHEMA_V6: tuple[str, ...] = (TAG + "CREATE TABLE messages (...)", TAG + "CREATE TABLE meta (...)")
    REPAIR_V6_INDEXES: tuple[str, ...] = (TAG + "CREATE INDEX idx_messages_queue_ts",)
    ENSURE_ALIASES: tuple[str, ...] = (TAG + "CREATE TABLE queue_aliases (...)",)
    INSERT_MAGIC = TAG + "INSERT INTO meta (key, value) VALUES ('magic', %s) ON CONFLICT DO NOTHING"
    INSERT_SCHEMA_VERSION = TAG + "INSERT INTO meta (key, value) VALUES ('schema_version', %s) ON CONFLICT DO NOTHING"
    COLUMNS = TAG + "SELECT column_name FROM information_schema.columns WHERE table_name = 'messages'"

    READ_LAST_TS = fake(SQLITE.READ_LAST_TS)
    LOCK_LAST_TS = fake(SQLITE.LOCK_LAST_TS)
    ADVANCE_LAST_TS = fake(SQLITE.ADVANCE_LAST_TS)
    MAX_TS = fake(SQLITE.MAX_TS)
    INSERT_MESSAGE = fake(SQLITE.INSERT_MESSAGE)
    LIST_QUEUES = fake(SQLITE.LIST_QUEUES)
    DELETE_BY_ID = fake(SQLITE.DELETE_BY_ID)
    UNCLAIM_BY_ID = fake(SQLITE.UNCLAIM_BY_ID)
    RETURN_CLAIMED = (
        TAG + "INSERT INTO messages (queue, body, ts, claimed) VALUES (%s, %s, %s, FALSE)\n"
        "ON CONFLICT (ts) DO UPDATE SET claimed = FALSE"
    )
    DELETE_QUEUE = fake(SQLITE.DELETE_QUEUE)
    DELETE_ALL = fake(SQLITE.DELETE_ALL)
    LOCK_ALIASES: tuple[Command, ...] = ()
    LOCK_BROADCAST: tuple[Command, ...] = ()
    LOCK_RENAME: tuple[Command, ...] = ()
    LOCK_KEEP_NEWEST: tuple[Command, ...] = ()
    CREATE_DELETE_IDS_TABLE = TAG + "CREATE TEMP TABLE IF NOT EXISTS delete_ids (ts BIGINT PRIMARY KEY)"
    CLEAR_DELETE_IDS = TAG + "DELETE FROM delete_ids"
    INSERT_DELETE_ID = TAG + "INSERT INTO delete_ids(ts) VALUES (%s) ON CONFLICT DO NOTHING"
    DELETE_LISTED_IDS = TAG + "DELETE FROM messages WHERE queue = %s AND ts IN (SELECT ts FROM delete_ids)"
    QUEUE_STATS = fake(SQLITE.QUEUE_STATS)
    ALL_QUEUE_STATS = fake(SQLITE.ALL_QUEUE_STATS)
    QUEUE_EXISTS = fake(SQLITE.QUEUE_EXISTS)
    OVERALL_STATS = fake(SQLITE.OVERALL_STATS)
    ANY_CLAIMED = fake(SQLITE.ANY_CLAIMED)
    DELETE_CLAIMED_BATCH = fake(SQLITE.DELETE_CLAIMED_BATCH)
    CLAIM_OLDER_PENDING = fake(SQLITE.CLAIM_OLDER_PENDING)
    INSERT_EXACT = fake(SQLITE.INSERT_EXACT)
    RAISE_LAST_TS = fake(SQLITE.RAISE_LAST_TS)
    ALIAS_TARGET = fake(SQLITE.ALIAS_TARGET)
    LIST_ALIASES = fake(SQLITE.LIST_ALIASES)
    INSERT_ALIAS = fake(SQLITE.INSERT_ALIAS)
    DELETE_ALIAS = fake(SQLITE.DELETE_ALIAS)
    SET_ALIAS_VERSION = fake(SQLITE.SET_ALIAS_VERSION)
    RETARGET_ALIASES = fake(SQLITE.RETARGET_ALIASES)
    RENAME_QUEUE = fake(SQLITE.RENAME_QUEUE)
    HAS_PENDING = fake(SQLITE.HAS_PENDING)
    HAS_PENDING_AFTER = fake(SQLITE.HAS_PENDING_AFTER)
    COUNT_MESSAGES = fake(SQLITE.COUNT_MESSAGES)
    DATABASE_SIZE = TAG + "SELECT pg_database_size(current_database())"
    DUMP_PAGE = fake(SQLITE.DUMP_PAGE)
    VACUUM_LOCK = TAG + "SELECT pg_try_advisory_lock(42)"
    VACUUM_UNLOCK = TAG + "SELECT pg_advisory_unlock(42)"

    def connection_setup(self, config: Config) -> tuple[str, ...]:
        return (f"{TAG}SET lock_timeout = {config.busy_timeout_ms}",)

    def read_meta(self) -> Operation[dict[str, Any]]:
        rows = yield Execute(self.READ_META, (), Fetch.ALL)
        return dict(rows)

    def bootstrap(self) -> Operation[bool]:
        if (yield Execute(self.LIST_TABLES, (), Fetch.ALL)):
            return False
        for statement in self.CREATE_SCHEMA_V6:
            yield Execute(statement)
        yield Execute(self.INSERT_MAGIC, ("simplebroker-v1",))
        yield Execute(self.INSERT_SCHEMA_VERSION, (6,))
        return True

    def check_engine(self) -> Operation[None]:
        (version,) = yield Execute(TAG + "SHOW server_version_num", (), Fetch.ONE)
        if version < 150000:
            raise DatabaseError(f"fake engine {version} is too old")

    def prepare_storage(self, label: str, *, new: bool) -> Operation[None]:
        yield Execute(TAG + ("SET storage = 'new'" if new else "SET storage = 'admitted'"))

    def check_messages_table(self, label: str, *, canonical: bool) -> Operation[bool]:
        columns = {row[0] for row in (yield Execute(self.COLUMNS, (), Fetch.ALL))}
        if not {"queue", "body", "ts", "claimed"} <= columns:
            raise IncompatibleDatabaseError(f"{label}: messages table lacks (queue, body, ts, claimed)")
        return canonical and "indexed" not in columns

    def where(self, *, by_id: bool, unclaimed_only: bool, after: bool, before: bool) -> str:
        return fake(SQLITE.where(by_id=by_id, unclaimed_only=unclaimed_only, after=after, before=before))[len(TAG) :]

    def where_params(
        self, queue: str, *, message_id: int | None, after: int | None, before: int | None
    ) -> tuple[int | str, ...]:
        return SQLITE.where_params(queue, message_id=message_id, after=after, before=before)

    def claim(self, where: str, newest: bool = False, *, skip_locked: bool = False) -> str:
        return fake(SQLITE.claim(where, newest)) + (" /* skip locked */" if skip_locked else "")

    def move(self, where: str, newest: bool = False, *, skip_locked: bool = False) -> str:
        return fake(SQLITE.move(where, newest)) + (" /* skip locked */" if skip_locked else "")

    def delete_ids(self, queue: str, ids: list[int]) -> Operation[int]:
        yield Execute(self.CREATE_DELETE_IDS_TABLE)
        yield Execute(self.CLEAR_DELETE_IDS)
        yield ExecuteMany(self.INSERT_DELETE_ID, [(i,) for i in ids])
        deleted: int = yield Execute(self.DELETE_LISTED_IDS, (queue,), Fetch.ROWCOUNT)
        return deleted

    def peek(self, where: str, newest: bool = False) -> str:
        return fake(SQLITE.peek(where, newest))

    def find_ids(self, *, include_claimed: bool, after: bool, before: bool) -> str:
        return fake(SQLITE.find_ids(include_claimed=include_claimed, after=after, before=before))

    def lock_vacuum(self) -> Operation[bool]:
        (acquired,) = yield Execute(self.VACUUM_LOCK, (), Fetch.ONE)
        return bool(acquired)

    def unlock_vacuum(self) -> Operation[None]:
        yield Execute(self.VACUUM_UNLOCK, (), Fetch.ONE)

    def compact(self) -> Operation[None]:
        yield Execute(TAG + "VACUUM FULL messages")

    def reclaim_space(self) -> Operation[None]:
        yield Execute(TAG + "VACUUM messages")

    def classify_error(self, message: str, code: int | None) -> DatabaseError:
        if code == 40001:  # serialization failure
            return BusyError(message, code)
        if code == 23505:  # unique violation
            return IntegrityError(message, code)
        return DatabaseError(message, code)

    def change_notification(self, queues: Sequence[str]) -> tuple[Command, ...]:
        return tuple(Execute(TAG + "SELECT pg_notify('broker', %s)", (q,)) for q in queues)


FAKE: Dialect = FakeDialect()


def fake_session(**config: Any) -> Session:
    return BrokerCore(Config(**config), dialect=FAKE, retry=RetryPolicy(attempts=3)).session()


def texts(commands: list[Command]) -> list[str]:
    """The SQL every command sent; COMMIT and ROLLBACK are the same in every engine."""
    return [c.sql for c in commands if isinstance(c, Begin | Execute | ExecuteMany)]


def assert_all_fake(commands: list[Command]) -> None:
    sent = texts(commands)
    assert sent, "the operation sent no statement"
    assert all(sql.startswith(TAG) for sql in sent), sent
    assert not any("?" in sql or "PRAGMA" in sql or "IMMEDIATE" in sql for sql in sent), sent


class FakeServer:
    """Answers the fake dialect's statements for a tiny database."""

    def __init__(self) -> None:
        self.last_ts = 0
        self.rows: list[tuple[str, int]] = [("a", NOW - 10), ("b", NOW - 5)]
        self.claimed_left = 2
        self.lock_free = True

    def __call__(self, command: Command) -> Any:
        if isinstance(command, ReadClock):
            return NOW
        if isinstance(command, SealGroup):
            return frozenset()
        if not isinstance(command, Execute):
            return None  # Begin / Commit / Rollback / Sleep / ExecuteMany
        sql = command.sql
        if sql == FAKE.ADVANCE_LAST_TS:
            self.last_ts = command.params[0]
            return (self.last_ts,)
        if sql.startswith(TAG + "UPDATE messages") or sql.startswith(TAG + "SELECT body, ts"):
            return list(self.rows)
        if sql == FAKE.ANY_CLAIMED:
            return (1 if self.claimed_left else 0,)
        if sql == FAKE.DELETE_CLAIMED_BATCH:
            deleted, self.claimed_left = self.claimed_left, 0
            return deleted
        if sql == FakeDialect.VACUUM_LOCK:
            return (self.lock_free,)
        if sql == FAKE.OVERALL_STATS:
            return (9, 10)
        if command.fetch is Fetch.ROWCOUNT:
            return 3
        return None


def run(operation: Operation[Any], respond: Callable[[Command], Any] | None = None) -> tuple[Any, list[Command]]:
    return run_with(operation, respond or FakeServer())


# ------------------------------------------------------------------ the seam
def test_the_sqlite_dialect_satisfies_the_protocol() -> None:
    assert isinstance(SQLITE, Dialect)
    assert isinstance(SQLITE, SQLiteDialect)
    assert BrokerCore().dialect is SQLITE
    assert BrokerCore().begin_write.sql == "BEGIN IMMEDIATE"
    assert SQLITE.NO_LIMIT == -1


def test_the_fake_dialect_satisfies_the_protocol_too() -> None:
    assert isinstance(FAKE, Dialect)
    assert not isinstance(object(), Dialect)
    assert BrokerCore(dialect=FAKE).dialect is FAKE


def test_no_engine_text_in_the_operation_modules() -> None:
    """Operations name no SQLite statement, setting or result code: those live in sqlite.py."""
    package = Path(sansio_broker.__file__).resolve().parent
    modules = ("core", "streams", "schema", "commands", "timestamps", "validation", "config", "aliases", "dump")
    forbidden = re.compile(r"sqlite_master|PRAGMA|BEGIN IMMEDIATE|LIMIT -1|OR IGNORE|WITHOUT ROWID|SQLITE_[A-Z]")
    found = {m: forbidden.findall((package / f"{m}.py").read_text()) for m in modules}
    assert found == {m: [] for m in modules}


def test_the_sqlite_change_notification_adds_nothing() -> None:
    assert SQLITE.change_notification(["q"]) == ()
    assert FAKE.change_notification(["q"]) == (Execute(TAG + "SELECT pg_notify('broker', %s)", ("q",)),)


# ------------------------------------------------------------ operations
def test_write_begins_as_the_dialect_says_and_inserts_with_its_text() -> None:
    message_id, commands = run(fake_session().write("q", "hello"))
    assert commands[0] == Begin() and commands[0].sql == TAG + "START TRANSACTION READ WRITE"
    assert Execute(FAKE.ADVANCE_LAST_TS, (message_id, message_id), Fetch.ONE) in commands
    assert Execute(TAG + "INSERT INTO messages (queue, body, ts) VALUES (%s, %s, %s)", ("q", "hello", message_id)) in (
        commands
    )
    assert commands[-1] == Commit()
    assert_all_fake(commands)


def test_write_many_and_broadcast_use_the_dialect_insert() -> None:
    ids, commands = run(fake_session().write_many("q", ["a", "b"]))
    assert ExecuteMany(FAKE.INSERT_MESSAGE, [("q", "a", ids[0]), ("q", "b", ids[1])]) in commands
    assert_all_fake(commands)

    def respond(command: Command) -> Any:
        if isinstance(command, Execute) and command.sql == FAKE.LIST_QUEUES:
            return [("x",), ("y",)]
        return FakeServer()(command)

    count, commands = run(fake_session().broadcast("hi"), respond)
    assert count == 2
    assert_all_fake(commands)


def test_a_dialect_whose_text_cannot_hold_nul_refuses_such_bodies_before_any_command() -> None:
    session = fake_session()
    for start in (
        lambda: session.write("q", "a\0b"),
        lambda: session.write("q", "a\0b", keep_newest=1),
        lambda: session.write_many("q", ["fine", "a\0b"]),
        lambda: session.broadcast("a\0b"),
        lambda: session.insert_messages([("q", "a\0b", 1)]),
    ):
        with pytest.raises(sansio_broker.MessageError, match=r"NUL character \(U\+0000\).*a fake database"):
            start()
    # SQLite stores it, as SimpleBroker does.
    assert SQLITE.TEXT_ALLOWS_NUL and BrokerCore().check_body("a\0b") == "a\0b"


def test_claim_uses_the_dialect_literals_and_no_limit() -> None:
    message, commands = run(fake_session().claim("q"))
    assert message == Message("a", NOW - 10)
    claim = commands[1]
    assert isinstance(claim, Execute)
    assert claim.sql == TAG + (
        "UPDATE messages\nSET claimed = TRUE\nWHERE ts IN (\n"
        "    SELECT ts FROM messages\n    WHERE queue = %s AND claimed = FALSE\n"
        "    ORDER BY ts ASC\n    LIMIT %s\n)\nRETURNING body, ts"
    )
    assert claim.params == ("q", 1)
    assert_all_fake(commands)

    messages, commands = run(fake_session().claim_all("q", after=5))
    assert len(messages) == 2
    claim = commands[1]
    assert isinstance(claim, Execute)
    assert "WHERE queue = %s AND claimed = FALSE AND ts > %s\n" in claim.sql
    assert claim.params == ("q", 5, None)  # LIMIT NULL: every row
    assert_all_fake(commands)


def test_read_bodies_all_and_claim_streams_use_the_dialect() -> None:
    session = fake_session()
    bodies, commands = run(session.read_bodies("q", all_messages=True))
    assert bodies == ["a", "b"]
    assert commands[1].params[-1] is None  # type: ignore[union-attr]
    assert_all_fake(commands)
    bodies, commands = run(session.read_bodies("q", peek=True, all_messages=True))
    assert commands[0].sql.startswith(TAG + "SELECT body, ts FROM messages\nWHERE queue = %s AND claimed = FALSE")  # type: ignore[union-attr]
    assert commands[0].params == ("q", None)  # type: ignore[union-attr]


def test_peek_uses_the_dialect_text() -> None:
    message, commands = run(fake_session().peek("q", message_id=NOW - 10, include_claimed=True))
    assert message == Message("a", NOW - 10)
    assert commands == [
        Execute(
            TAG + "SELECT body, ts FROM messages\nWHERE ts = %s AND queue = %s\nORDER BY ts ASC\nLIMIT %s",
            (NOW - 10, "q", 1),
            Fetch.ALL,
        )
    ]
    page, commands = run(fake_session().peek_many("q", 10))
    assert len(page) == 2
    assert_all_fake(commands)


def test_move_uses_the_dialect_text() -> None:
    moved, commands = run(fake_session().move("src", "dst"))
    assert moved == Message("a", NOW - 10)
    statement = commands[1]
    assert isinstance(statement, Execute)
    assert statement.sql == FAKE.move(FAKE.where(by_id=False, unclaimed_only=True, after=False, before=False))
    assert statement.sql.startswith(TAG + "UPDATE messages\nSET queue = %s\n")
    assert statement.params == ("dst", "src", 1)
    assert_all_fake(commands)
    count, commands = run(fake_session().move_all("src", "dst"))
    assert count == 2
    assert_all_fake(commands)


def test_deletes_use_the_dialect_text() -> None:
    count, commands = run(fake_session().delete_queue("q"))
    assert count == 3
    assert Execute(TAG + "DELETE FROM messages WHERE queue = %s", ("q",), Fetch.ROWCOUNT) in commands
    assert_all_fake(commands)
    count, commands = run(fake_session().delete_messages("q", [1, 2]))
    assert count == 3
    assert [c for c in commands if isinstance(c, Execute | ExecuteMany)] == [
        Execute(FakeDialect.CREATE_DELETE_IDS_TABLE),
        Execute(FakeDialect.CLEAR_DELETE_IDS),
        ExecuteMany(FakeDialect.INSERT_DELETE_ID, [(1,), (2,)]),
        Execute(FakeDialect.DELETE_LISTED_IDS, ("q",), Fetch.ROWCOUNT),
    ]
    assert_all_fake(commands)


def test_relaxed_order_reaches_every_claim_and_move() -> None:
    """Config.relaxed_order asks the dialect for its skip-locked claims and moves."""
    session = fake_session(relaxed_order=True)
    for operation in (
        session.claim("q"),
        session.claim("q", order="newest"),
        session.claim_many("q", 5),
        session.move("q", "r"),
        session.move_many("q", "r", 5),
    ):
        _, commands = run(operation)
        selections = [c.sql for c in commands if isinstance(c, Execute) and "UPDATE messages" in c.sql]
        assert selections and all(sql.endswith("/* skip locked */") for sql in selections)
    _, commands = run(fake_session().claim("q"))
    assert not any("skip locked" in c.sql for c in commands if isinstance(c, Execute))


def test_groups_and_give_backs_use_the_dialect_text() -> None:
    outcomes, commands = run(fake_session().write_group([("q", "a"), ("q", "b")]))
    assert all(isinstance(o, int) for o in outcomes)
    assert_all_fake(commands)
    results, commands = run(fake_session().claim_group("q", 3))
    assert results == [Message("a", NOW - 10), Message("b", NOW - 5), None]
    assert_all_fake(commands)
    _, commands = run(fake_session().return_claims("q", [Message("a", 1)]))
    assert ExecuteMany(FAKE.RETURN_CLAIMED, [("q", "a", 1)]) in commands


def test_inspection_uses_the_dialect_text() -> None:
    session = fake_session()
    for operation, answer in (
        (session.list_queues(), [("q",)]),
        (session.queue_stats("q"), (1, 2)),
        (session.all_queue_stats(), [("q", 1, 2)]),
        (session.queue_exists("q"), (1,)),
    ):
        _, commands = run_scripted(operation, [answer])
        assert_all_fake(commands)


def test_vacuum_steps_and_lock_are_the_dialect_s() -> None:
    deleted, commands = run(fake_session().vacuum())
    assert deleted == 2
    assert commands[0] == Execute(FakeDialect.VACUUM_LOCK, (), Fetch.ONE)
    assert Execute(FAKE.DELETE_CLAIMED_BATCH, (1000,), Fetch.ROWCOUNT) in commands
    assert commands[-2:] == [Execute(TAG + "VACUUM messages"), Execute(FakeDialect.VACUUM_UNLOCK, (), Fetch.ONE)]
    assert_all_fake(commands)

    deleted, commands = run(fake_session().vacuum(compact=True))
    assert commands[-2:] == [Execute(TAG + "VACUUM FULL messages"), Execute(FakeDialect.VACUUM_UNLOCK, (), Fetch.ONE)]
    assert_all_fake(commands)

    server = FakeServer()
    server.lock_free = False
    deleted, commands = run(fake_session().vacuum(), server)
    assert (deleted, commands) == (0, [Execute(FakeDialect.VACUUM_LOCK, (), Fetch.ONE)])


def test_a_failed_vacuum_step_still_unlocks_through_the_dialect() -> None:
    step = Stepper(fake_session().vacuum(compact=True))
    step.start()
    for answer in ((True,), None, (0,)):
        step.send(answer)
    assert step.send(None) == Execute(TAG + "VACUUM FULL messages")
    assert step.throw(DatabaseError("disk full")) == Execute(FakeDialect.VACUUM_UNLOCK, (), Fetch.ONE)
    with pytest.raises(DatabaseError, match="disk full"):
        step.send(None)


def test_auto_vacuum_counts_with_the_dialect_text() -> None:
    session = fake_session(auto_vacuum_interval=1)
    run(session.write("q", "x"))
    assert session.core.take_auto_vacuum()
    _, commands = run(session.auto_vacuum())
    assert commands[0] == Execute(FAKE.OVERALL_STATS, (), Fetch.ONE)
    assert_all_fake(commands)


def test_the_dialect_classifies_errors_and_the_core_applies_its_policy() -> None:
    """A lock conflict of the fake engine is a BusyError: the write retries with back-off."""
    busy = FAKE.classify_error("could not serialize access", 40001)
    assert type(busy) is BusyError
    assert type(FAKE.classify_error("duplicate key", 23505)) is IntegrityError
    server = FakeServer()
    answers = [busy]

    def respond(command: Command) -> Any:
        if isinstance(command, Begin) and answers:
            return answers.pop()
        return server(command)

    _, commands = run(fake_session().write("q", "x"), respond)
    assert [type(c).__name__ for c in commands[:3]] == ["Begin", "Sleep", "Begin"]
    assert commands[1] == Sleep(0.05)


# -------------------------------------------------------------------- schema
class FakeFile:
    """An existing (or empty) database of the fake engine."""

    def __init__(self, tables: set[str], columns: Sequence[str] = ("queue", "body", "ts", "claimed")) -> None:
        self.tables = tables
        self.columns = columns
        self.version = 160000
        self.not_a_database = False

    def __call__(self, command: Command) -> Any:
        if isinstance(command, ReadClock):
            return NOW
        if not isinstance(command, Execute):
            return None
        sql = command.sql
        if sql == TAG + "SHOW server_version_num":
            return (self.version,)
        if sql == FAKE.LIST_TABLES:
            if self.not_a_database:
                return NotADatabaseDriverError("not a fake database")
            return [(t,) for t in sorted(self.tables)]
        if sql == FAKE.READ_META:
            return [("magic", "simplebroker-v1"), ("schema_version", 6), ("last_ts", NOW - 100)]
        if sql == FakeDialect.COLUMNS:
            return [(c,) for c in self.columns]
        if sql == FAKE.MAX_TS:
            return (NOW,)
        if sql == FAKE.ADVANCE_LAST_TS:
            return (NOW,)
        return None


def test_connection_setup_is_the_dialect_s() -> None:
    _, commands = run_scripted(fake_session(busy_timeout_ms=250).setup_connection("db"), [None])
    assert commands == [Execute(TAG + "SET lock_timeout = 250")]


def test_a_new_database_is_created_with_the_dialect_statements() -> None:
    _, commands = run(fake_session().open_database("db"), FakeFile(set()))
    assert commands == [
        Execute(TAG + "SHOW server_version_num", (), Fetch.ONE),
        Execute(FAKE.LIST_TABLES, (), Fetch.ALL),
        Execute(TAG + "SET storage = 'new'"),
        Begin(),
        Execute(FAKE.LIST_TABLES, (), Fetch.ALL),
        *[Execute(s) for s in FAKE.CREATE_SCHEMA_V6],
        Execute(FAKE.INSERT_MAGIC, ("simplebroker-v1",)),
        Execute(FAKE.INSERT_SCHEMA_VERSION, (6,)),
        Commit(),
    ]
    assert_all_fake(commands)


def test_an_existing_database_is_admitted_and_repaired_with_the_dialect_checks() -> None:
    _, commands = run(fake_session().open_database("db"), FakeFile({"messages", "meta"}))
    executed = texts(commands)
    assert executed.index(FakeDialect.COLUMNS) < executed.index(TAG + "SET storage = 'admitted'")
    assert FAKE.REPAIR_V6_INDEXES[0] in executed and FAKE.ENSURE_ALIASES[0] in executed
    assert FAKE.ADVANCE_LAST_TS in executed  # last_ts fell behind the stored rows: resynced
    assert_all_fake(commands)


def test_admission_refusals_name_the_dialect_s_database() -> None:
    file = FakeFile(set())
    file.not_a_database = True
    with pytest.raises(NotADatabaseError, match=r"^db is not a fake database \(invalid header\)$"):
        run(fake_session().open_database("db"), file)
    with pytest.raises(ForeignDatabaseError, match="db is a fake database of another program"):
        run(fake_session().open_database("db"), FakeFile({"other"}))
    with pytest.raises(IncompatibleDatabaseError, match="lacks"):
        run(fake_session().open_database("db"), FakeFile({"messages", "meta"}, columns=("queue",)))
    old = FakeFile(set())
    old.version = 90000
    with pytest.raises(DatabaseError, match="too old"):
        run(fake_session().open_database("db"), old)


def test_sqlite_ignores_a_sqlstate_and_keeps_its_result_code() -> None:
    from sansio_broker.errors import BusyError as Busy

    assert type(SQLITE.classify_error("boom", "40001")) is DatabaseError  # not SQLite's: no code of its own
    error = SQLITE.classify_error("database is locked", 261)  # SQLITE_BUSY_RECOVERY
    assert isinstance(error, Busy) and error.code == 5
