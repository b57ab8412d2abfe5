"""The PostgreSQL dialect: simplebroker-pg 4.7.2's schema and statements, for one schema.

Pure, as the rest of the core: it imports no driver (the adapters import it
when a broker opens a ``postgresql://`` target). :func:`postgres_dialect`
validates the schema name and returns a :class:`PostgresDialect`, which
provides every member of :class:`~sansio_broker.dialect.Dialect`, with
psycopg's ``%s`` placeholders. The storage is simplebroker-pg's, so both programs can share
one schema at once: the same tables, index names, singleton ``meta`` row,
advisory lock keys (:func:`advisory_lock_key`), LISTEN channel
(:func:`notification_channel`, the queue name as payload) and lock order.

Statement text is simplebroker-pg 4.7.2's (``simplebroker_pg/_sql.py``,
``schema.py``, ``plugin.py``, ``runner.py``) wherever it runs the same
thing; ``tests/core/test_core_postgres_dialect.py`` compares each one with
the text simplebroker-pg itself builds. The deliberate differences:

* statements the core reads a rowcount from (``DELETE_QUEUE``, ``DELETE_ALL``,
  ``RETARGET_ALIASES``, ``RENAME_QUEUE``, ``DELETE_CLAIMED_BATCH``) are the
  plain DML; simplebroker-pg wraps them in ``WITH ... SELECT COUNT(*)``
  because its runner has no rowcount. Those wrappers are here too
  (``*_COUNT``), for a core that reads one row instead;
* ``peek`` has no ``OFFSET ?`` (the core never skips rows);
* ``DELETE_CLAIMED_BATCH`` locks its rows ``FOR UPDATE SKIP LOCKED`` (a
  vacuum that waited for rows could deadlock with claims) and re-checks
  ``claimed = TRUE`` on the row it deletes: at READ COMMITTED a message made
  pending again (``RETURN_CLAIMED``) meanwhile would otherwise be deleted;
* ``DATABASE_SIZE`` and ``LIST_TABLES`` carry the schema as a literal (the
  core binds nothing to them); ``LIST_TABLES`` must not use
  ``current_schema()``, which is ``public`` while the schema does not exist;
* ``DUMP_PAGE`` orders queues by ``COLLATE "C"`` (byte order, as SQLite's
  dump), not by the database's collation;
* statements simplebroker-pg has no counterpart for (group commit, shared
  claims, ``ALIAS_TARGET``, ``ANY_CLAIMED``, the delete-IDs temporary table)
  are this project's, in the same style.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from .commands import Command, Execute, Fetch, Operation
from .config import Config
from .dialect import where_params
from .errors import (
    BusyError,
    DatabaseError,
    IncompatibleDatabaseError,
    IntegrityError,
    InvalidInputError,
    InvalidTypeError,
    SchemaVersionError,
    StatementInterruptedError,
)

if TYPE_CHECKING:
    from .dialect import Dialect

SIMPLEBROKER_MAGIC = "simplebroker-v1"
POSTGRES_SCHEMA_VERSION = 6
MIN_SERVER_VERSION_NUM = 120000  # ``WITH ... AS MATERIALIZED``
DEFAULT_SCHEMA = "simplebroker_pg_v1"  # simplebroker's BROKER_BACKEND_SCHEMA default

# simplebroker-pg's pattern (validation.SCHEMA_NAME_RE), anchored with \Z:
# its ``$`` also accepts a trailing newline.
SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
SCHEMA_PATTERN_TEXT = "^[A-Za-z_][A-Za-z0-9_]*$"

# SQLSTATEs (PostgreSQL Appendix A) the core reacts to.
RETRYABLE_SQLSTATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available
    }
)
QUERY_CANCELED = "57014"  # psycopg's Connection.cancel(): the adapter interrupted a statement

# The channel as every sender computes it, server-side (simplebroker-pg's
# text): it follows ``current_schema()``, so the search path must put the
# broker's schema first (``connection_setup``).
_CHANNEL_SQL = "'simplebroker_' || substr(md5(current_schema()), 1, 24)"


# ----------------------------------------------------------------- pure helpers
def advisory_lock_key(*parts: str) -> int:
    """simplebroker-pg's advisory lock key (``stable_lock_key``): BLAKE2b with
    an 8-byte digest of the parts joined by U+001F, as a big-endian signed int64."""
    digest = hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, byteorder="big", signed=True)


def notification_channel(schema: str) -> str:
    """The LISTEN channel of a schema: ``simplebroker_`` + 24 hex digits of md5(schema)."""
    digest = hashlib.md5(schema.encode("utf-8"), usedforsecurity=False).hexdigest()
    return f"simplebroker_{digest[:24]}"


def check_schema_name(schema: object) -> str:
    """The schema name, or simplebroker-pg's refusal (``require_schema_name``)."""
    if schema is not None and not isinstance(schema, str):
        raise InvalidTypeError(f"Postgres schema must be a str, not {type(schema).__name__}")
    if not schema:
        raise InvalidInputError("Postgres backend requires backend_options.schema or BROKER_BACKEND_SCHEMA")
    if schema == "public":
        raise InvalidInputError("Postgres backend refuses to use schema 'public'")
    if not SCHEMA_NAME.match(schema):
        raise InvalidInputError(f"Postgres schema must match {SCHEMA_PATTERN_TEXT}")
    return schema


def quote_ident(schema: str) -> str:
    """A validated name as a quoted identifier (the pattern leaves nothing to escape)."""
    return f'"{check_schema_name(schema)}"'


def postgres_dialect(schema: str) -> PostgresDialect:
    """The dialect of one broker schema; refuses ``public`` and names outside the pattern."""
    return PostgresDialect(schema)


# ----------------------------------------------------------------- schema v6 (schema.py)
CREATE_MESSAGES_TABLE = """
CREATE TABLE IF NOT EXISTS messages (
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    ts BIGINT PRIMARY KEY,
    claimed BOOLEAN NOT NULL DEFAULT FALSE
)
"""

CREATE_META_TABLE = """
CREATE TABLE IF NOT EXISTS meta (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    magic TEXT NOT NULL,
    schema_version BIGINT NOT NULL,
    last_ts BIGINT NOT NULL,
    alias_version BIGINT NOT NULL
)
"""

CREATE_ALIASES_TABLE = """
CREATE TABLE IF NOT EXISTS aliases (
    alias TEXT PRIMARY KEY,
    target TEXT NOT NULL
)
"""

CREATE_QUEUE_TS_INDEX = """
CREATE INDEX IF NOT EXISTS idx_messages_queue_ts
ON messages (queue, ts)
"""

CREATE_PENDING_QUEUE_TS_INDEX = """
CREATE INDEX IF NOT EXISTS idx_messages_pending_queue_ts
ON messages (queue, ts)
WHERE claimed = FALSE
"""

CREATE_ALIAS_TARGET_INDEX = """
CREATE INDEX IF NOT EXISTS idx_aliases_target
ON aliases (target)
"""


def bootstrap_sql(schema: str) -> str:
    """The one multi-statement DDL string simplebroker-pg runs (``_bootstrap_schema_sql``);
    the tables are unqualified: the search path resolves them into the new schema."""
    return f"""
CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)};
{CREATE_MESSAGES_TABLE};
{CREATE_META_TABLE};
{CREATE_ALIASES_TABLE};
{CREATE_QUEUE_TS_INDEX};
{CREATE_PENDING_QUEUE_TS_INDEX};
{CREATE_ALIAS_TARGET_INDEX};
"""


# Params (magic, schema_version); returns the row, inserted or already there.
ENSURE_META_ROW = """
WITH inserted AS (
    INSERT INTO meta (singleton, magic, schema_version, last_ts, alias_version)
    VALUES (TRUE, %s, %s, 0, 0)
    ON CONFLICT (singleton) DO NOTHING
    RETURNING magic, schema_version, last_ts, alias_version
)
SELECT magic, schema_version, last_ts, alias_version
FROM inserted
UNION ALL
SELECT magic, schema_version, last_ts, alias_version
FROM meta
WHERE singleton = TRUE
  AND NOT EXISTS (SELECT 1 FROM inserted)
"""

ADVISORY_XACT_LOCK = "SELECT pg_advisory_xact_lock(%s)"
TRY_ADVISORY_LOCK = "SELECT pg_try_advisory_lock(%s)"
ADVISORY_UNLOCK = "SELECT pg_advisory_unlock(%s)"
TO_REGCLASS = "SELECT to_regclass(%s)"

# simplebroker-pg's v6 shape check (schema.POSTGRES_V6_SHAPE_SQL): one boolean.
V6_SHAPE = """
/* postgres_v6_shape */
WITH message_table AS (
    SELECT table_class.oid
    FROM pg_class AS table_class
    JOIN pg_namespace AS table_schema
      ON table_schema.oid = table_class.relnamespace
    WHERE table_schema.nspname = current_schema()
      AND table_class.relname = 'messages'
),
index_shapes AS (
    SELECT
        access_index.relname AS index_name,
        index_row.indisprimary AS is_primary,
        index_row.indpred IS NULL AS is_total,
        regexp_replace(
            pg_get_expr(index_row.indpred, index_row.indrelid),
            '[()[:space:]]',
            '',
            'g'
        ) AS normalized_predicate,
        (
            SELECT array_agg(attribute_row.attname ORDER BY key_row.ordinality)
            FROM unnest(index_row.indkey)
                 WITH ORDINALITY AS key_row(attnum, ordinality)
            JOIN pg_attribute AS attribute_row
              ON attribute_row.attrelid = index_row.indrelid
             AND attribute_row.attnum = key_row.attnum
        ) AS key_columns
    FROM pg_index AS index_row
    JOIN pg_class AS access_index
      ON access_index.oid = index_row.indexrelid
    WHERE index_row.indrelid = (SELECT oid FROM message_table)
)
SELECT
    NOT EXISTS (
        SELECT 1
        FROM information_schema.columns
        WHERE table_schema = current_schema()
          AND table_name = 'messages'
          AND column_name = 'order_id'
    )
    AND EXISTS (
        SELECT 1
        FROM index_shapes
        WHERE is_primary
          AND key_columns = ARRAY['ts']::name[]
    )
    AND EXISTS (
        SELECT 1
        FROM index_shapes
        WHERE index_name = 'idx_messages_queue_ts'
          AND is_total
          AND key_columns = ARRAY['queue', 'ts']::name[]
    )
    AND EXISTS (
        SELECT 1
        FROM index_shapes
        WHERE index_name = 'idx_messages_pending_queue_ts'
          AND normalized_predicate = 'claimed=false'
          AND key_columns = ARRAY['queue', 'ts']::name[]
    )
"""

# Ours: why the shape check failed, so that an absent canonical index (which
# simplebroker-pg re-creates) is told apart from a wrong one (which it refuses).
# Row: (no order_id, ts is the primary key, queue_ts, pending_queue_ts) with
# each index TRUE (canonical), FALSE (another shape) or NULL (absent).
V6_SHAPE_DETAILS = V6_SHAPE[: V6_SHAPE.index("SELECT\n    NOT EXISTS")].replace(
    "/* postgres_v6_shape */", "/* postgres_v6_shape_details */"
) + (
    "SELECT\n"
    "    NOT EXISTS (\n"
    "        SELECT 1\n        FROM information_schema.columns\n"
    "        WHERE table_schema = current_schema()\n"
    "          AND table_name = 'messages'\n"
    "          AND column_name = 'order_id'\n    ),\n"
    "    EXISTS (\n        SELECT 1\n        FROM index_shapes\n"
    "        WHERE is_primary\n          AND key_columns = ARRAY['ts']::name[]\n    ),\n"
    "    (\n        SELECT bool_and(is_total AND key_columns = ARRAY['queue', 'ts']::name[])\n"
    "        FROM index_shapes\n        WHERE index_name = 'idx_messages_queue_ts'\n    ),\n"
    "    (\n        SELECT bool_and(\n"
    "            COALESCE(normalized_predicate = 'claimed=false', FALSE)\n"
    "            AND key_columns = ARRAY['queue', 'ts']::name[]\n        )\n"
    "        FROM index_shapes\n        WHERE index_name = 'idx_messages_pending_queue_ts'\n    )\n"
)

V6_SHAPE_ERROR = (
    "Postgres schema version 6 requires ts as the sole message "
    "primary key and the canonical queue/timestamp access paths"
)


# ----------------------------------------------------------------- selections
@cache
def _where(*, by_id: bool, unclaimed_only: bool, after: bool, before: bool) -> str:
    # simplebroker-pg's _build_where_clause, condition for condition.
    parts = ["ts = %s", "queue = %s"] if by_id else ["queue = %s"]
    if unclaimed_only:
        parts.append("claimed = FALSE")
    if not by_id:
        if after:
            parts.append("ts > %s")
        if before:
            parts.append("ts < %s")
    return " AND ".join(parts)


def _direction(newest: bool) -> str:
    return "DESC" if newest else "ASC"


def _lock_clause(skip_locked: bool) -> str:
    return "FOR UPDATE SKIP LOCKED" if skip_locked else "FOR UPDATE"


def _selected(where: str, direction: str, skip_locked: bool) -> str:
    """The rows a claim or move takes, locked first (the CTE both share)."""
    return f"""selected AS MATERIALIZED (
    SELECT ts
    FROM messages
    WHERE {where}
    ORDER BY ts {direction}
    LIMIT %s
    {_lock_clause(skip_locked)}
)"""


@cache
def _claim(where: str, newest: bool, skip_locked: bool) -> str:
    direction = _direction(newest)
    return f"""
WITH {_selected(where, direction, skip_locked)},
updated AS (
    UPDATE messages AS m
    SET claimed = TRUE
    FROM selected
    WHERE m.ts = selected.ts
    RETURNING m.body, m.ts
)
SELECT updated.body, updated.ts
FROM updated
JOIN selected
  ON selected.ts = updated.ts
ORDER BY selected.ts {direction}
"""


@cache
def _move(where: str, newest: bool, skip_locked: bool) -> str:
    # The claimed flag is kept, as simplebroker-pg does; the target queue is notified once.
    direction = _direction(newest)
    return f"""
WITH target_queue AS (
    SELECT %s AS queue_name
),
{_selected(where, direction, skip_locked)},
updated AS (
    UPDATE messages AS m
    SET queue = (SELECT queue_name FROM target_queue)
    FROM selected
    WHERE m.ts = selected.ts
    RETURNING m.body, m.ts
),
notified AS (
    SELECT pg_notify(
        {_CHANNEL_SQL},
        (SELECT queue_name FROM target_queue)
    )
    FROM updated
    LIMIT 1
)
SELECT updated.body, updated.ts
FROM updated
JOIN selected
  ON selected.ts = updated.ts
LEFT JOIN notified
  ON TRUE
ORDER BY selected.ts {direction}
"""


@cache
def _peek(where: str, newest: bool) -> str:
    return f"""
SELECT body, ts
FROM messages
WHERE {where}
ORDER BY ts {_direction(newest)}
LIMIT %s
"""


@cache
def _find_ids(*, include_claimed: bool, after: bool, before: bool) -> str:
    # simplebroker-pg's build_find_message_ids_query.
    parts = ["queue = %s", "strpos(body, %s) > 0"]
    if not include_claimed:
        parts.append("claimed = FALSE")
    if after:
        parts.append("ts > %s")
    if before:
        parts.append("ts < %s")
    return f"""
SELECT ts
FROM messages
WHERE {" AND ".join(parts)}
ORDER BY ts
LIMIT %s
"""


# ----------------------------------------------------------------- the dialect
class PostgresDialect:
    """simplebroker-pg 4.7.2's statements for one schema (see the module docstring)."""

    DATABASE_NOUN = "a PostgreSQL schema"
    BACKEND_NAME = "postgres"  # simplebroker's backend name (its dump header says so)
    TEXT_ALLOWS_NUL = False  # "invalid byte sequence": text cannot hold U+0000

    # --- transactions and limits --------------------------------------------
    # simplebroker-pg's literal BEGIN, at the server's default isolation (READ
    # COMMITTED). It takes no lock: writers serialize on the meta row, which
    # ADVANCE_LAST_TS locks up to COMMIT (the "write lock" of the protocol).
    BEGIN_WRITE = "BEGIN"
    NO_LIMIT: int | None = None  # ``LIMIT NULL``: no limit

    schema: str
    channel: str
    """The LISTEN/NOTIFY channel (``LISTEN`` it quoted: :attr:`LISTEN`)."""
    LISTEN: str
    """What the listener connection runs (autocommit, any search path)."""
    SETUP_LOCK_KEY: int
    ALIASES_LOCK_KEY: int
    LOCK_ALIASES: tuple[Command, ...]
    LOCK_BROADCAST: tuple[Command, ...]
    LOCK_RENAME: tuple[Command, ...]
    VACUUM_LOCK_KEY: int
    SEARCH_PATH: str
    LIST_TABLES: str
    CREATE_SCHEMA_V6: tuple[str, ...]
    DATABASE_SIZE: str

    def __init__(self, schema: str) -> None:
        self.schema = check_schema_name(schema)
        self.channel = notification_channel(schema)
        self.LISTEN = f'LISTEN "{self.channel}"'
        self.SETUP_LOCK_KEY = advisory_lock_key("schema-setup", schema)
        self.ALIASES_LOCK_KEY = advisory_lock_key("aliases", schema)
        self.VACUUM_LOCK_KEY = advisory_lock_key("vacuum", schema)
        # The lock order: the aliases advisory lock, the meta row, the table.
        self.LOCK_ALIASES = (Execute(ADVISORY_XACT_LOCK, (self.ALIASES_LOCK_KEY,)),)
        self.LOCK_BROADCAST = (Execute(self.LOCK_META_ROW), Execute(self.LOCK_MESSAGES))
        self.LOCK_RENAME = self.LOCK_ALIASES + self.LOCK_BROADCAST
        self.SEARCH_PATH = f"SET search_path TO {quote_ident(schema)}, public"
        # The schema as a literal: current_schema() would be ``public`` while
        # the broker's schema does not exist yet.
        self.LIST_TABLES = (
            "SELECT c.relname\nFROM pg_class AS c\nJOIN pg_namespace AS n\n  ON n.oid = c.relnamespace\n"
            f"WHERE n.nspname = '{schema}'\n  AND c.relkind IN ('r', 'p')"
        )
        self.CREATE_SCHEMA_V6 = (bootstrap_sql(schema),)
        self.DATABASE_SIZE = (
            "\nSELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)\nFROM pg_class AS c\n"
            "JOIN pg_namespace AS n\n  ON n.oid = c.relnamespace\n"
            f"WHERE n.nspname = '{schema}'\n  AND c.relname IN ('messages', 'meta', 'aliases')\n"
        )

    def __repr__(self) -> str:
        return f"postgres_dialect({self.schema!r})"

    # --- connection set-up (per connection, nothing persisted) -------------
    # simplebroker-pg's pool ``configure`` (unqualified table names and the
    # notify channel, current_schema(), both follow the search path), then
    # Config.busy_timeout_ms as lock_timeout: a writer that waits that long
    # for the meta row or a table lock gets 55P03, a BusyError the core
    # retries, as SQLite's busy timeout does (simplebroker-pg waits forever).
    def connection_setup(self, config: Config) -> tuple[str, ...]:
        return (self.SEARCH_PATH, f"SET lock_timeout = {int(config.busy_timeout_ms)}")

    # --- schema: reads on open, then creation or repair ---------------------
    SERVER_VERSION_NUM = "SHOW server_version_num"
    # The protocol's (key, value) rows, as simplebroker-pg's SELECT_META_ALL
    # spells them: every value is TEXT (a UNION needs one type), so last_ts
    # arrives as a string; META_ROW is the typed read.
    READ_META = """
SELECT key, value
FROM (
    SELECT 'alias_version'::TEXT AS key, alias_version::TEXT AS value
    FROM meta
    WHERE singleton = TRUE
    UNION ALL
    SELECT 'last_ts'::TEXT AS key, last_ts::TEXT AS value
    FROM meta
    WHERE singleton = TRUE
    UNION ALL
    SELECT 'magic'::TEXT AS key, magic AS value
    FROM meta
    WHERE singleton = TRUE
    UNION ALL
    SELECT 'schema_version'::TEXT AS key, schema_version::TEXT AS value
    FROM meta
    WHERE singleton = TRUE
) AS meta_items
ORDER BY key
"""
    META_ROW = """
SELECT magic, schema_version, last_ts, alias_version
FROM meta
WHERE singleton = TRUE
"""
    """The singleton row, typed (what simplebroker-pg reads on open)."""
    ENSURE_META_ROW = ENSURE_META_ROW
    """Params ``(magic, schema_version)``; the row, new or kept."""
    V6_SHAPE = V6_SHAPE
    V6_SHAPE_DETAILS = V6_SHAPE_DETAILS
    REPAIR_V6_INDEXES: tuple[str, ...] = (CREATE_QUEUE_TS_INDEX, CREATE_PENDING_QUEUE_TS_INDEX)
    # simplebroker-pg's v4 step; the alias version is a meta column, nothing to insert.
    ENSURE_ALIASES: tuple[str, ...] = (CREATE_ALIASES_TABLE, CREATE_ALIAS_TARGET_INDEX)
    ALIASES_TABLE = "aliases"
    # The core inserts the magic, then the version, each "keeping an existing
    # row"; the meta row needs both at once. The version is a 0 placeholder
    # until INSERT_SCHEMA_VERSION, in the same transaction (ENSURE_META_ROW is
    # simplebroker-pg's one statement for both).
    INSERT_MAGIC = (
        "INSERT INTO meta (singleton, magic, schema_version, last_ts, alias_version)\n"
        "VALUES (TRUE, %s, 0, 0, 0)\nON CONFLICT (singleton) DO NOTHING"
    )
    INSERT_SCHEMA_VERSION = "UPDATE meta SET schema_version = %s WHERE singleton = TRUE AND schema_version = 0"

    def check_engine(self) -> Operation[None]:
        (version,) = yield Execute(self.SERVER_VERSION_NUM, (), Fetch.ONE)
        if int(version) < MIN_SERVER_VERSION_NUM:
            raise DatabaseError(f"PostgreSQL {version} is too old: 12 or newer is required (MATERIALIZED)")

    def prepare_storage(self, label: str, *, new: bool) -> Operation[None]:
        # Nothing persistent to set on PostgreSQL (no journal mode, no auto_vacuum pragma).
        return
        yield  # a generator that yields nothing

    def check_messages_table(self, label: str, *, canonical: bool) -> Operation[bool]:
        if not canonical:
            # simplebroker-pg's v1-v5 tables need its migration ladder (order_id, keys).
            raise SchemaVersionError(
                f"{label}: PostgreSQL schema versions before {POSTGRES_SCHEMA_VERSION} need simplebroker-pg's "
                "migration; run 'broker init' with simplebroker-pg 4.7.2 first"
            )
        (current,) = yield Execute(self.V6_SHAPE, (), Fetch.ONE)
        if current:
            return False
        no_order_id, ts_primary, queue_ts, pending = yield Execute(self.V6_SHAPE_DETAILS, (), Fetch.ONE)
        if not no_order_id or not ts_primary or queue_ts is False or pending is False:
            raise IncompatibleDatabaseError(f"{label}: {V6_SHAPE_ERROR}")
        return True  # a canonical index is absent: REPAIR_V6_INDEXES re-creates it

    def bootstrap(self) -> Operation[bool]:
        """Create the schema, inside a transaction, as simplebroker-pg does
        (``initialize_database``): the setup lock, the re-check, the DDL, the meta
        row. False when another process had created it."""
        yield Execute(ADVISORY_XACT_LOCK, (self.SETUP_LOCK_KEY,))
        (meta,) = yield Execute(TO_REGCLASS, (f"{quote_ident(self.schema)}.meta",), Fetch.ONE)
        if meta is not None:
            return False
        for statement in self.CREATE_SCHEMA_V6:
            yield Execute(statement)
        row = yield Execute(self.ENSURE_META_ROW, (SIMPLEBROKER_MAGIC, POSTGRES_SCHEMA_VERSION), Fetch.ONE)
        if row is None:
            raise DatabaseError("Postgres bootstrap did not publish metadata")
        return True

    def read_meta(self) -> Operation[dict[str, Any]]:
        """``magic``, ``schema_version``, ``last_ts``, ``alias_version``
        typed; empty when the row is missing (admission reads this, not READ_META)."""
        row = yield Execute(self.META_ROW, (), Fetch.ONE)
        if row is None:
            return {}
        return dict(zip(("magic", "schema_version", "last_ts", "alias_version"), row, strict=True))

    # --- message IDs: compare-and-advance inside the write transaction -----
    READ_LAST_TS = "SELECT last_ts FROM meta WHERE singleton = TRUE"
    # simplebroker-pg's LOCK_LAST_TS_ROW: a writer whose compare-and-advance
    # lost (another writer advanced meanwhile) waits its turn here once, then
    # advances from the value it holds, instead of queueing again per attempt.
    LOCK_LAST_TS = "SELECT last_ts FROM meta WHERE singleton = TRUE FOR UPDATE"
    # Params (new_value, must_be_greater_than). Locks the meta row to COMMIT:
    # every writer serializes here, before touching messages (the lock order).
    ADVANCE_LAST_TS = """
UPDATE meta
SET last_ts = %s
WHERE singleton = TRUE
  AND last_ts < %s
RETURNING last_ts
"""
    MAX_TS = "SELECT COALESCE(MAX(ts), 0) FROM messages"

    # --- writes: the notify is in the same statement ------------------------
    INSERT_MESSAGE = f"""
WITH inserted AS (
    INSERT INTO messages (queue, body, ts)
    VALUES (%s, %s, %s)
    RETURNING queue
)
SELECT pg_notify(
    {_CHANNEL_SQL},
    queue
)
FROM inserted
"""
    LIST_QUEUES = "SELECT DISTINCT queue FROM messages ORDER BY queue"

    # --- group operations (ours: simplebroker-pg has no group commit) --------
    DELETE_BY_ID = "DELETE FROM messages WHERE ts = %s"
    # A group claim's messages for readers that withdrew, pending again in
    # the claiming transaction: others saw them pending all along, but a
    # relaxed-order claim (SKIP LOCKED) may have passed over them, so waiters are told.
    UNCLAIM_BY_ID = f"""
WITH unclaimed AS (
    UPDATE messages
    SET claimed = FALSE
    WHERE ts = %s
    RETURNING queue
)
SELECT pg_notify(
    {_CHANNEL_SQL},
    queue
)
FROM unclaimed
"""
    # Pending again, re-inserted if vacuumed meanwhile; waiters are told.
    RETURN_CLAIMED = f"""
WITH returned AS (
    INSERT INTO messages (queue, body, ts, claimed)
    VALUES (%s, %s, %s, FALSE)
    ON CONFLICT (ts) DO UPDATE SET claimed = FALSE
    RETURNING queue
)
SELECT pg_notify(
    {_CHANNEL_SQL},
    queue
)
FROM returned
"""

    # --- selections: claim, move, peek -------------------------------------
    @staticmethod
    def where(*, by_id: bool, unclaimed_only: bool, after: bool, before: bool) -> str:
        return _where(by_id=by_id, unclaimed_only=unclaimed_only, after=after, before=before)

    where_params = staticmethod(where_params)

    # Row locks taken before the update, so each row is claimed once at READ
    # COMMITTED (the SQLite text would deliver some twice). A row a claim
    # waited for and then found claimed fails the re-check and the scan goes
    # on to the next row (LockRows sits below Limit since PostgreSQL 9.0), so
    # a claim returns fewer rows than its LIMIT only when fewer were pending
    # (tests/postgres_blocking/test_pg_claims.py checks it under contention).
    @staticmethod
    def claim(where: str, newest: bool = False, *, skip_locked: bool = False) -> str:
        """``skip_locked``: ``Config.relaxed_order``, not simplebroker-pg's."""
        return _claim(where, newest, skip_locked)

    @staticmethod
    def move(where: str, newest: bool = False, *, skip_locked: bool = False) -> str:
        return _move(where, newest, skip_locked)

    @staticmethod
    def peek(where: str, newest: bool = False) -> str:
        return _peek(where, newest)

    # Params (queue, queue, keep - 1). simplebroker-pg runs it after
    # LOCK_MESSAGES (see lock_keep_newest) and the INSERT.
    CLAIM_OLDER_PENDING = """
UPDATE messages
SET claimed = TRUE
WHERE queue = %s AND claimed = FALSE AND ts < (
    SELECT ts
    FROM messages
    WHERE queue = %s AND claimed = FALSE
    ORDER BY ts DESC
    LIMIT 1 OFFSET %s
)
"""

    # --- exact-ID inserts (dump load) --------------------------------------
    # simplebroker-pg's insert_messages runs its INSERT_MESSAGE (claimed
    # defaults to FALSE; each row notifies) after advancing meta.
    INSERT_EXACT = INSERT_MESSAGE
    RAISE_LAST_TS = ADVANCE_LAST_TS  # params (value, value)

    # --- aliases (the table is ``aliases``; the version is a meta column) ---
    ALIAS_TARGET = "SELECT target FROM aliases WHERE alias = %s"
    LIST_ALIASES = "SELECT alias, target FROM aliases ORDER BY alias"
    INSERT_ALIAS = "INSERT INTO aliases (alias, target) VALUES (%s, %s)"
    DELETE_ALIAS = "DELETE FROM aliases WHERE alias = %s"
    # Wall-clock nanoseconds, as simplebroker sets it; peers compare for inequality.
    SET_ALIAS_VERSION = """
UPDATE meta
SET alias_version = %s
WHERE singleton = TRUE
"""
    RETARGET_ALIASES = "UPDATE aliases SET target = %s WHERE target = %s"
    RETARGET_ALIASES_COUNT = """
WITH updated AS (
    UPDATE aliases
    SET target = %s
    WHERE target = %s
    RETURNING 1
)
SELECT COUNT(*) FROM updated
"""
    # Plain, for the core's rowcount: the old and new names are then notified
    # with change_notification((old, new)) in the same transaction.
    RENAME_QUEUE = "UPDATE messages SET queue = %s WHERE queue = %s"
    RENAME_QUEUE_COUNT = f"""
WITH renamed AS (
    UPDATE messages
    SET queue = %s
    WHERE queue = %s
    RETURNING 1
),
renamed_count AS (
    SELECT COUNT(*) AS count FROM renamed
),
notified AS (
    SELECT pg_notify(
        {_CHANNEL_SQL},
        notifications.payload
    )
    FROM renamed_count
    CROSS JOIN (VALUES (%s::text), (%s::text)) AS notifications(payload)
    WHERE renamed_count.count > 0
)
SELECT
    renamed_count.count,
    notification_count.count
FROM renamed_count
CROSS JOIN (SELECT COUNT(*) AS count FROM notified) AS notification_count
"""
    """simplebroker-pg's rename, params ``(new, old, old, new)``; one row
    ``(renamed, notifications)``; notifies both names in the same statement."""

    # --- search, overview, dump --------------------------------------------
    @staticmethod
    def find_ids(*, include_claimed: bool, after: bool, before: bool) -> str:
        return _find_ids(include_claimed=include_claimed, after=after, before=before)

    HAS_PENDING = """
SELECT EXISTS(
    SELECT 1
    FROM messages
    WHERE queue = %s AND claimed = FALSE
    LIMIT 1
)
"""
    HAS_PENDING_AFTER = """
SELECT EXISTS(
    SELECT 1
    FROM messages
    WHERE queue = %s AND claimed = FALSE AND ts > %s
    LIMIT 1
)
"""
    COUNT_MESSAGES = "SELECT COUNT(*) FROM messages"
    # Params (last_ts, queue, queue, ts, limit); queues in byte order, as SQLite's dump.
    DUMP_PAGE = (
        "SELECT queue, body, ts FROM messages\n"
        'WHERE claimed = FALSE AND ts <= %s AND (queue COLLATE "C" > %s OR (queue = %s AND ts > %s))\n'
        'ORDER BY queue COLLATE "C", ts\nLIMIT %s'
    )

    # --- delete ------------------------------------------------------------
    DELETE_QUEUE = "DELETE FROM messages WHERE queue = %s"
    DELETE_ALL = "DELETE FROM messages"
    DELETE_QUEUE_COUNT = """
WITH deleted AS (
    DELETE FROM messages
    WHERE queue = %s
    RETURNING 1
)
SELECT COUNT(*) FROM deleted
"""
    DELETE_ALL_COUNT = """
WITH deleted AS (
    DELETE FROM messages
    RETURNING 1
)
SELECT COUNT(*) FROM deleted
"""
    DELETE_IDS_COUNT = """
WITH ids(ts) AS MATERIALIZED (
    SELECT DISTINCT unnest(%s::bigint[])
),
deleted AS (
    DELETE FROM messages AS m
    USING ids
    WHERE m.queue = %s
      AND m.ts = ids.ts
    RETURNING 1
)
SELECT COUNT(*) FROM deleted
"""
    """simplebroker-pg's one statement, params ``(list_of_ids, queue)``; one row ``(count,)``."""

    def delete_ids(self, queue: str, ids: list[int]) -> Operation[int]:
        # One statement, the IDs as one array parameter (no temporary table).
        (deleted,) = yield Execute(self.DELETE_IDS_COUNT, (ids, queue), Fetch.ONE)
        return int(deleted)

    # --- inspection ---------------------------------------------------------
    QUEUE_STATS = """
SELECT
    COALESCE(SUM(CASE WHEN NOT claimed THEN 1 ELSE 0 END), 0) AS unclaimed_count,
    COUNT(*) AS total_count
FROM messages
WHERE queue = %s
"""
    ALL_QUEUE_STATS = """
SELECT
    queue,
    SUM(CASE WHEN NOT claimed THEN 1 ELSE 0 END) AS unclaimed_count,
    COUNT(*) AS total_count
FROM messages
GROUP BY queue
ORDER BY queue
"""
    QUEUE_EXISTS = """
SELECT EXISTS(
    SELECT 1
    FROM messages
    WHERE queue = %s
    LIMIT 1
)
"""
    OVERALL_STATS = """
SELECT
    COALESCE(SUM(CASE WHEN claimed THEN 1 ELSE 0 END), 0),
    COUNT(*)
FROM messages
"""

    # --- locks in simplebroker-pg's order: aliases -> meta row -> messages table
    LOCK_META_ROW = "SELECT last_ts FROM meta WHERE singleton = TRUE FOR UPDATE"
    LOCK_MESSAGES = "LOCK TABLE messages IN SHARE ROW EXCLUSIVE MODE"

    # (simplebroker-pg's prepare_alias_mutation, prepare_broadcast and
    # prepare_queue_operation "rename" / "write_keep", statement for statement;
    # built per schema in __init__: LOCK_ALIASES, LOCK_BROADCAST, LOCK_RENAME.)
    LOCK_KEEP_NEWEST: tuple[Command, ...] = (Execute(LOCK_MESSAGES),)

    # --- vacuum -------------------------------------------------------------
    ANY_CLAIMED = "SELECT EXISTS(SELECT 1 FROM messages WHERE claimed = TRUE LIMIT 1)"
    # The batch locks its rows first and passes over rows others hold, so a
    # vacuum never waits for anyone and can be in no deadlock: a claim keeps
    # the lock of every claimed row it waited for and skipped (the re-check
    # failed) up to its COMMIT, while it waits for the next row; a vacuum
    # deleting in its own order would wait for such a row and deadlock
    # (seen on the server against simplebroker-pg's claims). Skipped rows
    # go in a later batch or vacuum.
    DELETE_CLAIMED_BATCH = """
DELETE FROM messages
WHERE claimed = TRUE
  AND ts IN (
    SELECT ts
    FROM messages
    WHERE claimed = TRUE
    ORDER BY ts
    LIMIT %s
    FOR UPDATE SKIP LOCKED
)
"""
    DELETE_CLAIMED_BATCH_COUNT = """
WITH deleted AS (
    DELETE FROM messages
    WHERE ts IN (
        SELECT ts
        FROM messages
        WHERE claimed = TRUE
        ORDER BY ts
        LIMIT %s
    )
    RETURNING 1
)
SELECT COUNT(*) FROM deleted
"""
    """simplebroker-pg's vacuum batch (no re-check of ``claimed`` on the deleted row)."""
    COMPACT: tuple[str, ...] = ("VACUUM (ANALYZE) messages", "VACUUM (ANALYZE) meta", "VACUUM (ANALYZE) aliases")
    ANALYZE: tuple[str, ...] = ("ANALYZE messages", "ANALYZE meta", "ANALYZE aliases")

    def lock_vacuum(self) -> Operation[bool]:
        # A session lock, as simplebroker-pg's ("vacuum", schema): the
        # connection must stay the same up to unlock_vacuum (a connection that
        # dies releases it).
        row = yield Execute(TRY_ADVISORY_LOCK, (self.VACUUM_LOCK_KEY,), Fetch.ONE)
        return bool(row[0])

    def unlock_vacuum(self) -> Operation[None]:
        yield Execute(ADVISORY_UNLOCK, (self.VACUUM_LOCK_KEY,), Fetch.ONE)

    def compact(self) -> Operation[None]:
        # VACUUM refuses a transaction block: the driver runs it in autocommit.
        for statement in self.COMPACT:
            yield Execute(statement)

    def reclaim_space(self) -> Operation[None]:
        # autovacuum returns the space; fresh statistics after a large delete.
        for statement in self.ANALYZE:
            yield Execute(statement)

    # --- errors -------------------------------------------------------------
    @staticmethod
    def classify_error(message: str, code: int | str | None) -> DatabaseError:
        """By SQLSTATE (psycopg's ``Error.sqlstate``), as simplebroker-pg's
        ``_translate_error``: 40001/40P01/55P03 retryable, class 23 a
        constraint, 57014 our cancellation; the error keeps the SQLSTATE."""
        sqlstate = code if isinstance(code, str) else None
        if sqlstate in RETRYABLE_SQLSTATES:
            return BusyError(message, sqlstate)
        if sqlstate is not None and sqlstate.startswith("23"):
            return IntegrityError(message, sqlstate)
        if sqlstate == QUERY_CANCELED:
            return StatementInterruptedError(message, sqlstate)
        return DatabaseError(message, sqlstate)

    # --- change notification -------------------------------------------------
    NOTIFY = f"SELECT pg_notify({_CHANNEL_SQL}, %s)"
    NOTIFY_EACH = f"SELECT pg_notify({_CHANNEL_SQL}, queue) FROM unnest(%s::text[]) AS queue"

    def change_notification(self, queues: Sequence[str]) -> tuple[Command, ...]:
        """One statement notifying each queue once, in order (sent at COMMIT,
        dropped on rollback). INSERT_MESSAGE, INSERT_EXACT, RETURN_CLAIMED,
        UNCLAIM_BY_ID and move notify by themselves."""
        names = list(dict.fromkeys(queues))
        return (Execute(self.NOTIFY_EACH, (names,)),) if names else ()


if TYPE_CHECKING:  # the protocol is met as it stands (checked by mypy)

    def _implements(dialect: PostgresDialect) -> Dialect:
        return dialect
