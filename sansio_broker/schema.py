"""Opening a database file: create schema v6, or admit an existing file.

Admission reads before it writes: a file that is not SQLite, belongs to
another program, has a schema this broker does not speak, or still counts
IDs in the old microsecond layout is refused with nothing written, not even
a PRAGMA that persists (contract §1.9-§1.11).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from . import timestamps
from .commands import READ_CLOCK, Execute, Fetch, Operation
from .config import Config
from .errors import (
    DatabaseError,
    ForeignDatabaseError,
    IncompatibleDatabaseError,
    NotADatabaseDriverError,
    NotADatabaseError,
    SchemaVersionError,
)
from .sql import OLDEST_SCHEMA_VERSION, SCHEMA_VERSION, SIMPLEBROKER_MAGIC, SQLiteDialect

T = TypeVar("T")
MIN_SQLITE_VERSION = (3, 35, 0)  # RETURNING

# PRAGMA table_info rows SimpleBroker 8 requires of a v6 messages table:
# name -> (type, notnull, dflt_value, pk)  (contract §1.10)
V6_COLUMNS: dict[str, tuple[str, int, str | None, int]] = {
    "queue": ("TEXT", 1, None, 0),
    "body": ("TEXT", 1, None, 0),
    "ts": ("INTEGER", 1, None, 1),
    "claimed": ("INTEGER", 0, "0", 0),
}
# index name -> (unique, partial)
V6_INDEXES = {"idx_messages_queue_ts": (0, 0), "idx_messages_pending_queue_ts": (0, 1)}
V6_INDEX_COLUMNS = ["queue", "ts"]


class _Transactor(Protocol):
    def __call__(
        self, body: Callable[[], Operation[T]], mutations: Callable[[T], int] = ..., *, resync_ids: bool = ...
    ) -> Operation[T]: ...


def setup_connection(sql: SQLiteDialect, config: Config, label: str) -> Operation[None]:
    pragmas = sql.connection_pragmas(
        config.busy_timeout_ms, config.cache_mb, config.sync_mode, config.wal_autocheckpoint
    )
    try:
        for pragma in pragmas:
            yield Execute(pragma)
    except NotADatabaseDriverError:
        raise _not_a_database(label) from None


def _not_a_database(label: str) -> NotADatabaseError:
    return NotADatabaseError(f"{label} is not an SQLite database (invalid header)")


def open_database(sql: SQLiteDialect, label: str, transaction: _Transactor) -> Operation[None]:
    (version,) = yield Execute(sql.SQLITE_VERSION, (), Fetch.ONE)
    if tuple(int(p) for p in str(version).split(".")[:3]) < MIN_SQLITE_VERSION:
        raise DatabaseError(f"SQLite {version} is too old: 3.35.0 or newer is required (RETURNING)")
    try:
        tables = yield from _tables(sql)
    except NotADatabaseDriverError:
        raise _not_a_database(label) from None
    if not tables:
        yield from _create(sql, label, transaction)
    else:
        yield from _admit(sql, label, tables, transaction)


def check_database(sql: SQLiteDialect, label: str) -> Operation[None]:
    """Every refusal of :func:`open_database`, by reads alone.

    Adapters run it first on a read-only connection when the file has a WAL:
    on a read-write connection even the set-up PRAGMAs read the file, which
    rebuilds its ``-shm``, and closing that connection checkpoints the WAL
    into the database, so a refused file would not stay byte-for-byte
    unchanged. An empty file passes (it is created on the read-write one).
    """
    try:
        tables = yield from _tables(sql)
    except NotADatabaseDriverError:
        raise _not_a_database(label) from None
    if tables:
        yield from _inspect(sql, label, tables)


def _tables(sql: SQLiteDialect) -> Operation[set[str]]:
    rows = yield Execute(sql.LIST_TABLES, (), Fetch.ALL)
    return {r[0] for r in rows}


def _create(sql: SQLiteDialect, label: str, transaction: _Transactor) -> Operation[None]:
    # auto_vacuum must be set before the first table exists; WAL before use.
    yield Execute(sql.SET_AUTO_VACUUM_INCREMENTAL)
    yield from _ensure_wal(sql, label)
    created = yield from transaction(lambda: _create_tables(sql))
    if not created:  # another process created it between our look and our lock
        tables = yield from _tables(sql)
        yield from _admit(sql, label, tables, transaction)


def _create_tables(sql: SQLiteDialect) -> Operation[bool]:
    tables = yield from _tables(sql)
    if tables:
        return False
    for statement in sql.CREATE_SCHEMA_V6:
        yield Execute(statement)
    yield Execute(sql.INSERT_MAGIC, (SIMPLEBROKER_MAGIC,))
    yield Execute(sql.INSERT_SCHEMA_VERSION, (SCHEMA_VERSION,))
    return True


def _ensure_wal(sql: SQLiteDialect, label: str) -> Operation[None]:
    (mode,) = yield Execute(sql.GET_JOURNAL_MODE, (), Fetch.ONE)
    if str(mode).lower() == "wal":
        return
    (mode,) = yield Execute(sql.SET_JOURNAL_MODE_WAL, (), Fetch.ONE)
    if str(mode).lower() != "wal":
        raise DatabaseError(f"{label}: could not switch to WAL journal mode (got {mode!r})")


def _admit(sql: SQLiteDialect, label: str, tables: set[str], transaction: _Transactor) -> Operation[None]:
    last_ts, missing_indexes = yield from _inspect(sql, label, tables)
    # Everything was read; from here on the file is ours to write.
    yield from _ensure_wal(sql, label)
    repairs = list(sql.ENSURE_ALIASES) if "queue_aliases" not in tables else []
    if missing_indexes:
        repairs[:0] = sql.REPAIR_V6_INDEXES
    if repairs:
        yield from transaction(lambda: _run_all(repairs))
    (newest,) = yield Execute(sql.MAX_TS, (), Fetch.ONE)
    if newest is not None and newest > last_ts:
        yield from transaction(lambda: resync_last_ts(sql))


def _inspect(sql: SQLiteDialect, label: str, tables: set[str]) -> Operation[tuple[int, bool]]:
    """Refuse the file, or return its ``last_ts`` and whether canonical indexes are missing; reads only."""
    if "messages" not in tables or "meta" not in tables:
        if "messages" in tables:
            raise SchemaVersionError(
                f"{label} has a SimpleBroker schema v1 database (no meta table); "
                "open it once with SimpleBroker 8 to upgrade it"
            )
        raise ForeignDatabaseError(f"{label} is an SQLite database of another program (no broker tables)")
    meta: dict[str, Any] = dict((yield Execute(sql.READ_META, (), Fetch.ALL)))
    magic = meta.get("magic")
    if magic is not None and magic != SIMPLEBROKER_MAGIC:
        raise ForeignDatabaseError(f"{label}: database magic string mismatch ({magic!r})")
    version = _schema_version(label, meta.get("schema_version"))
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{label}: database schema version {version} is newer than supported version {SCHEMA_VERSION}"
        )
    if version < OLDEST_SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{label}: database schema version {version} is too old; open it once with SimpleBroker 8 to upgrade it"
        )
    last_ts = meta.get("last_ts")
    if not isinstance(last_ts, int):
        raise IncompatibleDatabaseError(f"{label}: meta.last_ts is missing or not an integer")
    now = yield READ_CLOCK
    if timestamps.is_legacy_layout(last_ts, now):
        raise IncompatibleDatabaseError(
            f"{label}: meta.last_ts {last_ts} uses SimpleBroker's pre-2.1 ID layout, "
            "which the current ID allocator cannot continue"
        )
    columns = {
        row[1]: (str(row[2]).upper(), row[3], row[4], row[5])
        for row in (yield Execute(sql.TABLE_INFO_MESSAGES, (), Fetch.ALL))
    }
    missing_indexes = False
    if version == SCHEMA_VERSION:
        _check_v6_columns(label, columns)
        missing_indexes = yield from _check_v6_indexes(sql, label)
    elif not set(V6_COLUMNS) <= set(columns):
        raise IncompatibleDatabaseError(f"{label}: messages table lacks (queue, body, ts, claimed)")
    return last_ts, missing_indexes


def _schema_version(label: str, value: Any) -> int:
    if value is None:
        return 1  # SimpleBroker reads a missing row as v1
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise SchemaVersionError(f"{label}: database schema version {value!r} is not an integer")


def _check_v6_columns(label: str, columns: dict[str, tuple[str, int, str | None, int]]) -> None:
    keys = sum(1 for c in columns.values() if c[3] > 0)
    if any(columns.get(name) != shape for name, shape in V6_COLUMNS.items()) or keys != 1:
        raise IncompatibleDatabaseError(
            f"{label}: SQLite schema version 6 requires messages columns (queue, body, ts, claimed) "
            "with ts as the public-message-ID primary key"
        )


def _check_v6_indexes(sql: SQLiteDialect, label: str) -> Operation[bool]:
    """True when canonical indexes are missing (repairable); refuse wrong ones."""
    rows = yield Execute(sql.INDEX_LIST_MESSAGES, (), Fetch.ALL)
    present = {row[1]: (row[2], row[4]) for row in rows}
    missing = False
    for name, shape in V6_INDEXES.items():
        if name not in present:
            missing = True
            continue
        columns = [r[0] for r in (yield Execute(sql.index_columns(name), (), Fetch.ALL))]
        if present[name] != shape or columns != V6_INDEX_COLUMNS:
            raise IncompatibleDatabaseError(f"{label}: index {name} does not have the canonical shape")
    return missing


def _run_all(statements: list[str]) -> Operation[None]:
    for statement in statements:
        yield Execute(statement)


def resync_last_ts(sql: SQLiteDialect) -> Operation[None]:
    """Advance meta.last_ts past the newest stored row, if it fell behind."""
    row = yield Execute(sql.MAX_TS, (), Fetch.ONE)
    newest = row[0] if row else None
    if newest is not None:
        yield Execute(sql.ADVANCE_LAST_TS, (newest, newest), Fetch.ONE)
