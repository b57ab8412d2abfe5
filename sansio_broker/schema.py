"""Opening a database file: create schema v6, or admit an existing file.

Admission reads before it writes: a file that is not a database, belongs to
another program, has a schema this broker does not speak, or still counts
IDs in the old microsecond layout is refused with nothing written, not even
a setting that persists. The SimpleBroker rules (magic, schema versions, the
ID layout) are here; the engine's own checks and statements come from the
:class:`~sansio_broker.dialect.Dialect`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from . import timestamps
from .commands import READ_CLOCK, Execute, Fetch, Operation
from .config import Config
from .dialect import Dialect
from .errors import (
    ForeignDatabaseError,
    IncompatibleDatabaseError,
    NotADatabaseDriverError,
    NotADatabaseError,
    SchemaVersionError,
)

T = TypeVar("T")

SIMPLEBROKER_MAGIC = "simplebroker-v1"
SCHEMA_VERSION = 6
OLDEST_SCHEMA_VERSION = 5


class _Transactor(Protocol):
    def __call__(
        self, body: Callable[[], Operation[T]], mutations: Callable[[T], int] = ..., *, resync_ids: bool = ...
    ) -> Operation[T]: ...


def setup_connection(dialect: Dialect, config: Config, label: str) -> Operation[None]:
    try:
        for statement in dialect.connection_setup(config):
            yield Execute(statement)
    except NotADatabaseDriverError:
        raise _not_a_database(dialect, label) from None


def _not_a_database(dialect: Dialect, label: str) -> NotADatabaseError:
    return NotADatabaseError(f"{label} is not {dialect.DATABASE_NOUN} (invalid header)")


def open_database(dialect: Dialect, label: str, transaction: _Transactor) -> Operation[None]:
    yield from dialect.check_engine()
    try:
        tables = yield from _tables(dialect)
    except NotADatabaseDriverError:
        raise _not_a_database(dialect, label) from None
    if not tables:
        yield from _create(dialect, label, transaction)
    else:
        yield from _admit(dialect, label, tables, transaction)


def check_database(dialect: Dialect, label: str) -> Operation[None]:
    """Every refusal of :func:`open_database`, by reads alone.

    Adapters run it first on a read-only connection when the file has a WAL:
    on a read-write connection even the connection set-up reads the file,
    which rebuilds its ``-shm``, and closing that connection checkpoints the
    WAL into the database, so a refused file would not stay byte-for-byte
    unchanged. An empty file passes (it is created on the read-write one).
    """
    try:
        tables = yield from _tables(dialect)
    except NotADatabaseDriverError:
        raise _not_a_database(dialect, label) from None
    if tables:
        yield from _inspect(dialect, label, tables)


def _tables(dialect: Dialect) -> Operation[set[str]]:
    rows = yield Execute(dialect.LIST_TABLES, (), Fetch.ALL)
    return {r[0] for r in rows}


def _create(dialect: Dialect, label: str, transaction: _Transactor) -> Operation[None]:
    yield from dialect.prepare_storage(label, new=True)
    created = yield from transaction(lambda: _create_tables(dialect))
    if not created:  # another process created it between our look and our lock
        tables = yield from _tables(dialect)
        yield from _admit(dialect, label, tables, transaction)


def _create_tables(dialect: Dialect) -> Operation[bool]:
    return (yield from dialect.bootstrap())


def _admit(dialect: Dialect, label: str, tables: set[str], transaction: _Transactor) -> Operation[None]:
    last_ts, missing_indexes = yield from _inspect(dialect, label, tables)
    # Everything was read; from here on the file is ours to write.
    yield from dialect.prepare_storage(label, new=False)
    repairs = list(dialect.ENSURE_ALIASES) if dialect.ALIASES_TABLE not in tables else []
    if missing_indexes:
        repairs[:0] = dialect.REPAIR_V6_INDEXES
    if repairs:
        yield from transaction(lambda: _run_all(repairs))
    (newest,) = yield Execute(dialect.MAX_TS, (), Fetch.ONE)
    if newest is not None and newest > last_ts:
        yield from transaction(lambda: resync_last_ts(dialect))


def _inspect(dialect: Dialect, label: str, tables: set[str]) -> Operation[tuple[int, bool]]:
    """Refuse the file, or return its ``last_ts`` and whether canonical indexes are missing; reads only."""
    if "messages" not in tables or "meta" not in tables:
        if "messages" in tables:
            raise SchemaVersionError(
                f"{label} has a SimpleBroker schema v1 database (no meta table); "
                "open it once with SimpleBroker 8 to upgrade it"
            )
        raise ForeignDatabaseError(f"{label} is {dialect.DATABASE_NOUN} of another program (no broker tables)")
    meta = yield from dialect.read_meta()
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
    missing_indexes = yield from dialect.check_messages_table(label, canonical=version == SCHEMA_VERSION)
    return last_ts, missing_indexes


def _schema_version(label: str, value: Any) -> int:
    if value is None:
        return 1  # SimpleBroker reads a missing row as v1
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise SchemaVersionError(f"{label}: database schema version {value!r} is not an integer")


def _run_all(statements: list[str]) -> Operation[None]:
    for statement in statements:
        yield Execute(statement)


def resync_last_ts(dialect: Dialect) -> Operation[None]:
    """Advance meta.last_ts past the newest stored row, if it fell behind."""
    row = yield Execute(dialect.MAX_TS, (), Fetch.ONE)
    newest = row[0] if row else None
    if newest is not None:
        yield Execute(dialect.ADVANCE_LAST_TS, (newest, newest), Fetch.ONE)
