"""Session.open_database: create schema v6, or admit / refuse an existing file;
schema.check_database: the same refusals by reads alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from sansio_broker import (
    BusyError,
    DatabaseError,
    ForeignDatabaseError,
    IncompatibleDatabaseError,
    NotADatabaseError,
    SchemaVersionError,
)
from sansio_broker.commands import Command
from sansio_broker.driver import Begin, Commit, Execute, Fetch, ReadClock, Sleep
from sansio_broker.errors import NotADatabaseDriverError
from sansio_broker.schema import check_database
from sansio_broker.testing import Stepper, run_with
from tests.core.core_testkit import NOW, SQL, is_write, kinds, make_session
from tests.support.contract import INSERT_MAGIC, INSERT_SCHEMA_VERSION, V6_DDL, V6_TABLE_INFO

LIST_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table'"

# PRAGMA table_info rows: (cid, name, type, notnull, dflt_value, pk)
V5_TABLE_INFO = [
    (0, "id", "INTEGER", 0, None, 1),
    (1, "queue", "TEXT", 1, None, 0),
    (2, "body", "TEXT", 1, None, 0),
    (3, "ts", "INTEGER", 1, None, 0),
    (4, "claimed", "INTEGER", 0, "0", 0),
]
# PRAGMA index_list rows: (seq, name, unique, origin, partial)
V6_INDEX_LIST = [
    (0, "idx_messages_pending_queue_ts", 0, "c", 1),
    (1, "idx_messages_queue_ts", 0, "c", 0),
]


@dataclass
class FakeFile:
    """An existing (or empty) database file as the admission code reads it."""

    tables: set[str] = field(default_factory=lambda: {"messages", "meta", "queue_aliases"})
    meta: dict[str, Any] = field(
        default_factory=lambda: {"magic": "simplebroker-v1", "schema_version": 6, "last_ts": NOW - 1000}
    )
    table_info: list[tuple[Any, ...]] = field(default_factory=lambda: list(V6_TABLE_INFO))
    index_list: list[tuple[Any, ...]] = field(default_factory=lambda: list(V6_INDEX_LIST))
    index_columns: dict[str, list[str]] = field(
        default_factory=lambda: {
            "idx_messages_queue_ts": ["queue", "ts"],
            "idx_messages_pending_queue_ts": ["queue", "ts"],
        }
    )
    journal_mode: str = "wal"
    max_ts: int | None = None
    sqlite_version: str = "3.45.1"
    not_a_database: bool = False
    created_by_someone_else: bool = False

    def __call__(self, command: Command) -> Any:
        if isinstance(command, ReadClock):
            return NOW
        if not isinstance(command, Execute):
            return None  # Begin / Commit / Rollback / Sleep
        sql = command.sql
        if sql == SQL.SQLITE_VERSION:
            return (self.sqlite_version,)
        if sql == LIST_TABLES:
            if self.not_a_database:
                return NotADatabaseDriverError("file is not a database", 26)
            if self.created_by_someone_else and not self.tables:
                self.tables = {"messages", "meta", "queue_aliases"}
                return []
            return [(t,) for t in sorted(self.tables)]
        if sql == SQL.READ_META:
            return list(self.meta.items())
        if sql == SQL.TABLE_INFO_MESSAGES:
            return self.table_info
        if sql == SQL.INDEX_LIST_MESSAGES:
            return self.index_list
        for name, columns in self.index_columns.items():
            if sql == SQL.index_columns(name):
                return [(c,) for c in columns]
        if sql == "PRAGMA journal_mode":
            return (self.journal_mode,)
        if sql == "PRAGMA journal_mode=WAL":
            return ("wal",)
        if sql == SQL.MAX_TS:
            return (self.max_ts,)
        if sql == SQL.ADVANCE_LAST_TS:
            return (command.params[0],)
        if is_write(command):
            return None
        return AssertionError(f"unexpected {command!r}")


def open_db(file: FakeFile) -> list[Command]:
    _, commands = run_with(make_session().open_database("test.db"), file)
    return commands


def refuse(file: FakeFile, error: type[Exception], match: str) -> list[Command]:
    commands: list[Command] = []

    def record(command: Command) -> Any:
        commands.append(command)
        return file(command)

    with pytest.raises(error, match=match):
        run_with(make_session().open_database("test.db"), record)
    writes = [c for c in commands if is_write(c)]
    assert writes == [], f"wrote before refusing: {writes}"
    return commands


def executed(commands: list[Command]) -> list[str]:
    return [c.sql for c in commands if isinstance(c, Execute)]


# --------------------------------------------------------------- creation
def test_sql_constants_are_the_v6_ddl() -> None:
    assert list(SQL.CREATE_SCHEMA_V6) == list(V6_DDL)
    assert SQL.INSERT_MAGIC == INSERT_MAGIC
    assert SQL.INSERT_SCHEMA_VERSION == INSERT_SCHEMA_VERSION


def test_new_file_gets_auto_vacuum_wal_and_exactly_the_v6_ddl() -> None:
    file = FakeFile(tables=set(), journal_mode="delete")
    commands = open_db(file)
    assert commands == [
        Execute("SELECT sqlite_version()", (), Fetch.ONE),
        Execute(LIST_TABLES, (), Fetch.ALL),
        Execute("PRAGMA auto_vacuum=2"),
        Execute("PRAGMA journal_mode", (), Fetch.ONE),
        Execute("PRAGMA journal_mode=WAL", (), Fetch.ONE),
        Begin(),
        Execute(LIST_TABLES, (), Fetch.ALL),  # re-checked under the write lock
        *[Execute(sql) for sql in V6_DDL],
        Execute(INSERT_MAGIC, ("simplebroker-v1",)),
        Execute(INSERT_SCHEMA_VERSION, (6,)),
        Commit(),
    ]


def test_new_file_already_in_wal_mode_skips_the_switch() -> None:
    commands = open_db(FakeFile(tables=set(), journal_mode="WAL"))
    assert "PRAGMA journal_mode=WAL" not in executed(commands)
    assert kinds(commands).count("Begin") == 1


def test_schema_proof_keys_are_never_written() -> None:
    for file in (FakeFile(tables=set()), FakeFile(), FakeFile(index_list=[]), FakeFile(max_ts=NOW)):
        assert not any("schema_proof" in sql for sql in executed(open_db(file)))


def test_wal_that_cannot_be_set_is_an_error() -> None:
    file = FakeFile(tables=set(), journal_mode="delete")

    def respond(command: Command) -> Any:
        if isinstance(command, Execute) and command.sql == "PRAGMA journal_mode=WAL":
            return ("delete",)
        return file(command)

    with pytest.raises(DatabaseError, match="WAL"):
        run_with(make_session().open_database("test.db"), respond)


def test_created_by_another_process_between_look_and_lock_is_admitted() -> None:
    file = FakeFile(tables=set(), created_by_someone_else=True)
    commands = open_db(file)
    assert not any(sql.startswith("CREATE") for sql in executed(commands))
    assert kinds(commands).count("Begin") == 1  # the (empty) creation transaction only
    assert SQL.READ_META in executed(commands)


def test_busy_while_creating_is_retried() -> None:
    file = FakeFile(tables=set())
    busy = [BusyError("database is locked", 5)]

    def respond(command: Command) -> Any:
        if isinstance(command, Begin) and busy:
            return busy.pop()
        return file(command)

    _, commands = run_with(make_session().open_database("test.db"), respond)
    assert kinds(commands)[4:7] == ["Begin", "Sleep", "Begin"]
    assert Sleep(0.05) in commands


# ---------------------------------------------------------------- admission
def test_current_v6_file_is_admitted_with_reads_only() -> None:
    commands = open_db(FakeFile())
    assert [c for c in commands if is_write(c)] == []
    assert executed(commands) == [
        "SELECT sqlite_version()",
        LIST_TABLES,
        SQL.READ_META,
        "PRAGMA table_info('messages')",
        "PRAGMA index_list('messages')",
        SQL.index_columns("idx_messages_queue_ts"),
        SQL.index_columns("idx_messages_pending_queue_ts"),
        "PRAGMA journal_mode",
        SQL.MAX_TS,
    ]
    assert SQL.index_columns("idx_messages_queue_ts") == (
        "SELECT name FROM pragma_index_info('idx_messages_queue_ts') ORDER BY seqno"
    )


def test_v6_in_rollback_journal_mode_is_switched_to_wal_after_the_checks() -> None:
    commands = open_db(FakeFile(journal_mode="delete"))
    sqls = executed(commands)
    assert sqls.index("PRAGMA journal_mode=WAL") > sqls.index(SQL.INDEX_LIST_MESSAGES)


def test_schema_version_stored_as_text_digits_is_accepted() -> None:
    file = FakeFile()
    file.meta["schema_version"] = "6"
    assert [c for c in open_db(file) if is_write(c)] == []


def test_file_without_magic_row_is_accepted() -> None:
    file = FakeFile()
    del file.meta["magic"]
    assert [c for c in open_db(file) if is_write(c)] == []


def test_v5_is_accepted_without_migration() -> None:
    file = FakeFile(table_info=list(V5_TABLE_INFO), index_list=[])
    file.meta["schema_version"] = 5
    commands = open_db(file)
    assert [c for c in commands if is_write(c)] == []
    assert SQL.INDEX_LIST_MESSAGES not in executed(commands)  # the v6 shape rules do not apply


def test_v5_without_the_columns_the_broker_uses_is_refused() -> None:
    file = FakeFile(table_info=[row for row in V5_TABLE_INFO if row[1] != "claimed"])
    file.meta["schema_version"] = 5
    refuse(file, IncompatibleDatabaseError, "queue, body, ts, claimed")


def test_missing_canonical_indexes_are_repaired_in_a_transaction() -> None:
    file = FakeFile(index_list=[(0, "idx_messages_queue_ts", 0, "c", 0)])
    commands = open_db(file)
    begin = commands.index(Begin())
    assert commands[begin:] == [
        Begin(),
        Execute(V6_DDL[1]),
        Execute(V6_DDL[2]),
        Commit(),
        Execute(SQL.MAX_TS, (), Fetch.ONE),
    ]


def test_missing_aliases_table_is_created_with_index_repairs() -> None:
    file = FakeFile(tables={"messages", "meta"}, index_list=[])
    commands = open_db(file)
    begin = commands.index(Begin())
    assert commands[begin : begin + 7] == [
        Begin(),
        Execute(V6_DDL[1]),
        Execute(V6_DDL[2]),
        Execute(V6_DDL[5]),
        Execute(V6_DDL[6]),
        Execute(V6_DDL[7]),
        Commit(),
    ]


def test_last_ts_behind_the_newest_row_is_resynced() -> None:
    file = FakeFile(max_ts=NOW + 77)
    commands = open_db(file)
    assert commands[-5:] == [
        Execute(SQL.MAX_TS, (), Fetch.ONE),
        Begin(),
        Execute(SQL.MAX_TS, (), Fetch.ONE),
        Execute(SQL.ADVANCE_LAST_TS, (NOW + 77, NOW + 77), Fetch.ONE),
        Commit(),
    ]


def test_last_ts_at_or_ahead_of_the_newest_row_is_left_alone() -> None:
    for newest in (NOW - 1000, NOW - 5000):
        assert [c for c in open_db(FakeFile(max_ts=newest)) if is_write(c)] == []


# ------------------------------------------------------------------ refusal
def test_not_an_sqlite_file() -> None:
    commands = refuse(FakeFile(not_a_database=True), NotADatabaseError, "test.db is not an SQLite database")
    assert len(commands) == 2
    assert issubclass(NotADatabaseError, IncompatibleDatabaseError)


def test_tables_of_another_program() -> None:
    refuse(FakeFile(tables={"users", "orders"}), ForeignDatabaseError, "another program")
    refuse(FakeFile(tables={"meta"}), ForeignDatabaseError, "another program")


def test_messages_without_meta_is_schema_v1() -> None:
    refuse(FakeFile(tables={"messages"}), SchemaVersionError, "v1")


def test_wrong_magic() -> None:
    file = FakeFile()
    file.meta["magic"] = "other"
    refuse(file, ForeignDatabaseError, "magic")


@pytest.mark.parametrize(
    ("version", "match"),
    [
        (7, "newer than supported version 6"),
        (4, "too old"),
        (1, "too old"),
        (0, "too old"),
        (None, "too old"),  # no schema_version row: SimpleBroker reads it as v1
        ("abc", "not an integer"),
        ("", "not an integer"),
        (6.5, "not an integer"),
    ],
)
def test_unsupported_schema_versions(version: Any, match: str) -> None:
    file = FakeFile()
    if version is None:
        del file.meta["schema_version"]
    else:
        file.meta["schema_version"] = version
    refuse(file, SchemaVersionError, match)


def test_schema_version_with_a_non_decimal_digit_is_a_schema_version_error() -> None:
    file = FakeFile()
    file.meta["schema_version"] = "²"
    refuse(file, SchemaVersionError, "not an integer")


def test_legacy_microsecond_last_ts() -> None:
    file = FakeFile()
    file.meta["last_ts"] = (1_750_000_000_000_000 << 12) | 3
    refuse(file, IncompatibleDatabaseError, "pre-2.1 ID layout")


@pytest.mark.parametrize("last_ts", [None, "12"])
def test_last_ts_missing_or_not_an_integer(last_ts: Any) -> None:
    file = FakeFile()
    if last_ts is None:
        del file.meta["last_ts"]
    else:
        file.meta["last_ts"] = last_ts
    refuse(file, IncompatibleDatabaseError, "last_ts")


@pytest.mark.parametrize(
    ("column", "row"),
    [
        ("claimed", (3, "claimed", "INTEGER", 1, "0", 0)),  # claimed NOT NULL
        ("ts", (2, "ts", "INTEGER", 0, None, 1)),  # ts without NOT NULL
        ("ts", (2, "ts", "TEXT", 1, None, 1)),
        ("queue", (0, "queue", "TEXT", 0, None, 0)),
        ("claimed", (3, "claimed", "INTEGER", 0, "1", 0)),
    ],
)
def test_v6_with_a_wrong_column_shape(column: str, row: tuple[Any, ...]) -> None:
    info = [row if r[1] == column else r for r in V6_TABLE_INFO]
    refuse(FakeFile(table_info=info), IncompatibleDatabaseError, "schema version 6 requires")


def test_v6_with_a_missing_column() -> None:
    info = [r for r in V6_TABLE_INFO if r[1] != "claimed"]
    refuse(FakeFile(table_info=info), IncompatibleDatabaseError, "schema version 6 requires")


def test_v6_with_a_composite_primary_key() -> None:
    # PRIMARY KEY (ts, shard): every canonical column looks right, but ts is not the whole key
    info = [*V6_TABLE_INFO, (4, "shard", "INTEGER", 0, None, 2)]
    refuse(FakeFile(table_info=info), IncompatibleDatabaseError, "schema version 6 requires")


def test_v6_column_type_is_compared_case_insensitively_and_extras_are_ignored() -> None:
    info = [(i, n, t.lower(), nn, d, pk) for i, n, t, nn, d, pk in V6_TABLE_INFO]
    info.append((4, "extra", "TEXT", 0, None, 0))
    assert [c for c in open_db(FakeFile(table_info=info)) if is_write(c)] == []


@pytest.mark.parametrize(
    ("index_list", "columns"),
    [
        ([(0, "idx_messages_pending_queue_ts", 0, "c", 0), (1, "idx_messages_queue_ts", 0, "c", 0)], None),
        ([(0, "idx_messages_pending_queue_ts", 0, "c", 1), (1, "idx_messages_queue_ts", 1, "c", 0)], None),
        (V6_INDEX_LIST, {"idx_messages_queue_ts": ["ts", "queue"]}),
        (V6_INDEX_LIST, {"idx_messages_pending_queue_ts": ["queue"]}),
    ],
)
def test_v6_with_a_wrong_index_shape(index_list: list[Any], columns: dict[str, list[str]] | None) -> None:
    file = FakeFile(index_list=index_list)
    if columns:
        file.index_columns.update(columns)
    refuse(file, IncompatibleDatabaseError, "canonical shape")


@pytest.mark.parametrize("version", ["3.34.1", "3.8.11", "2.9.0"])
def test_old_sqlite_is_refused(version: str) -> None:
    commands = refuse(FakeFile(sqlite_version=version), DatabaseError, "3.35.0")
    assert len(commands) == 1


@pytest.mark.parametrize("version", ["3.35.0", "3.35.5", "3.40.1", "4.0.0"])
def test_new_enough_sqlite_is_accepted(version: str) -> None:
    open_db(FakeFile(sqlite_version=version))


def test_errors_are_broker_errors() -> None:
    for error in (NotADatabaseError, ForeignDatabaseError, SchemaVersionError):
        assert issubclass(error, IncompatibleDatabaseError)


# ------------------------------------------------------- connection set-up
def test_not_a_database_during_connection_setup_names_the_file() -> None:
    step = Stepper(make_session().setup_connection("/data/x.db"))
    assert step.start() == Execute("PRAGMA busy_timeout=5000")
    with pytest.raises(NotADatabaseError, match=r"/data/x\.db is not an SQLite database") as caught:
        step.throw(NotADatabaseDriverError("file is not a database", 26))
    assert caught.value.__cause__ is None
    assert step.commands == [Execute("PRAGMA busy_timeout=5000")]


def test_other_errors_during_connection_setup_propagate_unchanged() -> None:
    step = Stepper(make_session().setup_connection("x.db"))
    step.start()
    step.send(None)
    error = DatabaseError("disk I/O error", 10)
    with pytest.raises(DatabaseError) as caught:
        step.throw(error)
    assert caught.value is error


# ---------------------------------------------- read-only admission (item 11)
def check(file: FakeFile) -> list[Command]:
    """``check_database`` on ``file``: every command it sent (all reads, or it fails)."""
    _, commands = run_with(check_database(SQL, "test.db"), file)
    assert [c for c in commands if is_write(c) or not isinstance(c, Execute | ReadClock)] == []
    return commands


def test_check_database_of_an_admissible_file_reads_only_what_admission_reads() -> None:
    assert executed(check(FakeFile())) == [
        LIST_TABLES,
        SQL.READ_META,
        "PRAGMA table_info('messages')",
        "PRAGMA index_list('messages')",
        SQL.index_columns("idx_messages_queue_ts"),
        SQL.index_columns("idx_messages_pending_queue_ts"),
    ]


def test_check_database_of_an_empty_file_lists_the_tables_only() -> None:
    assert executed(check(FakeFile(tables=set()))) == [LIST_TABLES]


def test_check_database_passes_what_open_database_repairs() -> None:
    """Missing indexes, a missing aliases table, a rollback journal, a stale last_ts: the read-write open fixes them."""
    file = FakeFile(tables={"messages", "meta"}, index_list=[], journal_mode="delete", max_ts=NOW + 5)
    assert "PRAGMA journal_mode" not in executed(check(file))
    assert [c for c in open_db(file) if is_write(c)] != []


def _v5() -> FakeFile:
    file = FakeFile(table_info=list(V5_TABLE_INFO), index_list=[])
    file.meta["schema_version"] = 5
    return file


def test_check_database_passes_v5() -> None:
    check(_v5())


def _with_meta(**changes: Any) -> FakeFile:
    file = FakeFile()
    file.meta.update(changes)
    return file


REFUSED: dict[str, tuple[FakeFile, type[Exception]]] = {
    "not-sqlite": (FakeFile(not_a_database=True), NotADatabaseError),
    "foreign": (FakeFile(tables={"users"}), ForeignDatabaseError),
    "v1": (FakeFile(tables={"messages"}), SchemaVersionError),
    "magic": (_with_meta(magic="other"), ForeignDatabaseError),
    "schema-7": (_with_meta(schema_version=7), SchemaVersionError),
    "schema-4": (_with_meta(schema_version=4), SchemaVersionError),
    "legacy-last-ts": (_with_meta(last_ts=(1_750_000_000_000_000 << 12) | 3), IncompatibleDatabaseError),
    "v6-shape": (FakeFile(table_info=[(0, "queue", "TEXT", 1, None, 0)]), IncompatibleDatabaseError),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_check_database_refuses_exactly_what_open_database_refuses(case: str) -> None:
    file, error = REFUSED[case]
    commands: list[Command] = []

    def record(command: Command) -> Any:
        commands.append(command)
        return file(command)

    with pytest.raises(error) as checked:
        run_with(check_database(SQL, "test.db"), record)
    assert [c for c in commands if is_write(c) or isinstance(c, Begin | Commit)] == []
    with pytest.raises(error) as opened:
        run_with(make_session().open_database("test.db"), file)
    assert type(checked.value) is type(opened.value)
    assert str(checked.value) == str(opened.value)
    assert "test.db" in str(checked.value)
