"""The SQLite dialect: every statement and SQLite-specific step the core runs.

The text is the storage contract shared with SimpleBroker 8.7.2 (schema v6):
statements name only ``queue, body, ts, claimed`` so they run on schema v5
and v6 alike, and keep SimpleBroker's exact text where it fixes the file
format (the schema) or the speed (the plain claim is cached per queue).
:class:`~sansio_broker.dialect.Dialect` says what each member is for.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from .commands import LOCK_VACUUM_FILE, UNLOCK_VACUUM_FILE, Command, Execute, ExecuteMany, Fetch, Operation
from .config import Config
from .dialect import where_params
from .errors import (
    BusyError,
    DatabaseError,
    IncompatibleDatabaseError,
    IntegrityError,
    NotADatabaseDriverError,
    StatementInterruptedError,
)
from .schema import SCHEMA_VERSION, SIMPLEBROKER_MAGIC

MIN_SQLITE_VERSION = (3, 35, 0)  # RETURNING

# SQLite primary result codes the core reacts to.
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_INTERRUPT = 9
SQLITE_CONSTRAINT = 19
SQLITE_NOTADB = 26

_BUSY_TEXT = (
    "database is locked",
    "database table is locked",
    "database schema is locked",
    "database is busy",
    "database busy",
)

# PRAGMA table_info rows SimpleBroker 8 requires of a v6 messages table:
# name -> (type, notnull, dflt_value, pk)
V6_COLUMNS: dict[str, tuple[str, int, str | None, int]] = {
    "queue": ("TEXT", 1, None, 0),
    "body": ("TEXT", 1, None, 0),
    "ts": ("INTEGER", 1, None, 1),
    "claimed": ("INTEGER", 0, "0", 0),
}
# index name -> (unique, partial)
V6_INDEXES = {"idx_messages_queue_ts": (0, 0), "idx_messages_pending_queue_ts": (0, 1)}
V6_INDEX_COLUMNS = ["queue", "ts"]


class SQLiteDialect:
    """SQLite statements; methods build the few statements that vary."""

    DATABASE_NOUN = "an SQLite database"
    BACKEND_NAME = "sqlite"
    TEXT_ALLOWS_NUL = True

    # --- transactions and limits --------------------------------------------
    # BEGIN IMMEDIATE takes the write lock up front, so an ID allocated inside
    # the transaction is serialized with every other writer.
    BEGIN_WRITE = "BEGIN IMMEDIATE"
    NO_LIMIT: int | None = -1  # ``LIMIT -1``: no limit

    # --- connection set-up (per connection, nothing persisted) -------------
    @staticmethod
    def connection_setup(config: Config) -> tuple[str, ...]:
        return (
            f"PRAGMA busy_timeout={int(config.busy_timeout_ms)}",
            f"PRAGMA wal_autocheckpoint={int(config.wal_autocheckpoint)}",
            f"PRAGMA cache_size=-{int(config.cache_mb) * 1024}",
            f"PRAGMA synchronous={config.sync_mode}",
        )

    # --- inspection on open (read-only) ------------------------------------
    SQLITE_VERSION = "SELECT sqlite_version()"
    LIST_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table'"
    READ_META = "SELECT key, value FROM meta WHERE key IN ('magic', 'schema_version', 'last_ts')"
    TABLE_INFO_MESSAGES = "PRAGMA table_info('messages')"
    INDEX_LIST_MESSAGES = "PRAGMA index_list('messages')"

    @staticmethod
    def index_columns(index_name: str) -> str:
        return f"SELECT name FROM pragma_index_info('{index_name}') ORDER BY seqno"

    GET_JOURNAL_MODE = "PRAGMA journal_mode"
    SET_JOURNAL_MODE_WAL = "PRAGMA journal_mode=WAL"
    SET_AUTO_VACUUM_INCREMENTAL = "PRAGMA auto_vacuum=2"
    GET_AUTO_VACUUM = "PRAGMA auto_vacuum"

    # --- schema v6, exactly as SimpleBroker 8 creates it --------------------
    CREATE_MESSAGES = """CREATE TABLE IF NOT EXISTS messages (
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    ts INTEGER NOT NULL PRIMARY KEY,
    claimed INTEGER DEFAULT 0
)"""
    CREATE_QUEUE_TS_INDEX = """CREATE INDEX IF NOT EXISTS idx_messages_queue_ts
ON messages(queue, ts)"""
    CREATE_PENDING_QUEUE_TS_INDEX = """CREATE INDEX IF NOT EXISTS idx_messages_pending_queue_ts
ON messages(queue, ts)
WHERE claimed = 0"""
    CREATE_META = """CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
)"""
    INSERT_LAST_TS = "INSERT OR IGNORE INTO meta (key, value) VALUES ('last_ts', 0)"
    CREATE_ALIASES = """CREATE TABLE IF NOT EXISTS queue_aliases (
    alias TEXT PRIMARY KEY,
    target TEXT NOT NULL
)"""
    CREATE_ALIAS_TARGET_INDEX = "CREATE INDEX IF NOT EXISTS idx_queue_aliases_target ON queue_aliases(target)"
    INSERT_ALIAS_VERSION = "INSERT OR IGNORE INTO meta (key, value) VALUES ('alias_version', 0)"
    INSERT_MAGIC = "INSERT OR IGNORE INTO meta (key, value) VALUES ('magic', ?)"
    INSERT_SCHEMA_VERSION = "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)"

    QUEUE_TS_INDEX = "idx_messages_queue_ts"
    PENDING_QUEUE_TS_INDEX = "idx_messages_pending_queue_ts"

    # Order of creation matters to nobody but is kept as SimpleBroker's.
    CREATE_SCHEMA_V6: tuple[str, ...] = (
        CREATE_MESSAGES,
        CREATE_QUEUE_TS_INDEX,
        CREATE_PENDING_QUEUE_TS_INDEX,
        CREATE_META,
        INSERT_LAST_TS,
        CREATE_ALIASES,
        CREATE_ALIAS_TARGET_INDEX,
        INSERT_ALIAS_VERSION,
    )
    REPAIR_V6_INDEXES: tuple[str, ...] = (CREATE_QUEUE_TS_INDEX, CREATE_PENDING_QUEUE_TS_INDEX)
    ENSURE_ALIASES: tuple[str, ...] = (CREATE_ALIASES, CREATE_ALIAS_TARGET_INDEX, INSERT_ALIAS_VERSION)

    # --- message IDs: compare-and-advance inside the write transaction -----
    READ_LAST_TS = "SELECT value FROM meta WHERE key = 'last_ts'"
    LOCK_LAST_TS = READ_LAST_TS
    # params (new_value, must_be_greater_than): a batch advances once.
    ADVANCE_LAST_TS = "UPDATE meta SET value = ? WHERE key = 'last_ts' AND value < ? RETURNING value"

    MAX_TS = "SELECT MAX(ts) FROM messages"

    # --- writes -------------------------------------------------------------
    INSERT_MESSAGE = "INSERT INTO messages (queue, body, ts) VALUES (?, ?, ?)"
    LIST_QUEUES = "SELECT DISTINCT queue FROM messages ORDER BY queue"

    # --- selections: claim, move, peek -------------------------------------
    @staticmethod
    @cache
    def where(*, by_id: bool, unclaimed_only: bool, after: bool, before: bool) -> str:
        """The ``{where}`` fragment of a selection; see :meth:`where_params`."""
        parts = ["ts = ? AND queue = ?"] if by_id else ["queue = ?"]
        if unclaimed_only:
            parts.append("claimed = 0")
        if not by_id:
            if after:
                parts.append("ts > ?")
            if before:
                parts.append("ts < ?")
        return " AND ".join(parts)

    where_params = staticmethod(where_params)

    @staticmethod
    @cache
    def claim(where: str, newest: bool = False, *, skip_locked: bool = False) -> str:
        # skip_locked is ignored: SQLite has no row locks; BEGIN IMMEDIATE
        # already runs one claim at a time.
        return (
            "UPDATE messages\nSET claimed = 1\nWHERE ts IN (\n"
            f"    SELECT ts FROM messages\n    WHERE {where}\n"
            f"    ORDER BY ts {_direction(newest)}\n    LIMIT ?\n)\nRETURNING body, ts"
        )

    # A group operation taking back what it did for callers that withdrew.
    DELETE_BY_ID = "DELETE FROM messages WHERE ts = ?"
    UNCLAIM_BY_ID = "UPDATE messages SET claimed = 0 WHERE ts = ?"
    # Give a claimed message back (a reader cancelled after its shared claim
    # committed): pending again with its ID, body and queue, even if a vacuum
    # deleted the claimed row in between.
    RETURN_CLAIMED = (
        "INSERT INTO messages (queue, body, ts, claimed) VALUES (?, ?, ?, 0)\nON CONFLICT(ts) DO UPDATE SET claimed = 0"
    )

    @staticmethod
    @cache
    def move(where: str, newest: bool = False, *, skip_locked: bool = False) -> str:
        # The claimed flag is kept, as SimpleBroker 8 does.
        return (
            "UPDATE messages\nSET queue = ?\nWHERE ts IN (\n"
            f"    SELECT ts FROM messages\n    WHERE {where}\n"
            f"    ORDER BY ts {_direction(newest)}\n    LIMIT ?\n)\nRETURNING body, ts"
        )

    @staticmethod
    @cache
    def peek(where: str, newest: bool = False) -> str:
        return f"SELECT body, ts FROM messages\nWHERE {where}\nORDER BY ts {_direction(newest)}\nLIMIT ?"

    # ``write(..., keep_newest=N)``, after the insert in the same transaction:
    # claims every pending message but the N newest (params: queue, queue, N-1).
    # A queue with fewer than N pending has no OFFSET row: nothing is claimed.
    CLAIM_OLDER_PENDING = (
        "UPDATE messages\nSET claimed = 1\nWHERE queue = ? AND claimed = 0 AND ts < (\n"
        "    SELECT ts\n    FROM messages\n    WHERE queue = ? AND claimed = 0\n"
        "    ORDER BY ts DESC\n    LIMIT 1 OFFSET ?\n)"
    )

    # --- lock order: nothing to add, BEGIN IMMEDIATE serializes every writer
    LOCK_ALIASES: tuple[Command, ...] = ()
    LOCK_BROADCAST: tuple[Command, ...] = ()
    LOCK_RENAME: tuple[Command, ...] = ()
    LOCK_KEEP_NEWEST: tuple[Command, ...] = ()

    # --- exact-ID inserts (dump load): the ID high-water mark follows ------
    # params (max_id + 1, max_id + 1), as SimpleBroker advances it.
    RAISE_LAST_TS = "UPDATE meta SET value = ? WHERE key = 'last_ts' AND value < ?"
    INSERT_EXACT = "INSERT INTO messages (queue, body, ts, claimed) VALUES (?, ?, ?, 0)"

    # --- aliases (SimpleBroker's table and version counter) ----------------
    ALIAS_TARGET = "SELECT target FROM queue_aliases WHERE alias = ?"
    LIST_ALIASES = "SELECT alias, target FROM queue_aliases ORDER BY alias"
    INSERT_ALIAS = "INSERT INTO queue_aliases (alias, target) VALUES (?, ?)"
    DELETE_ALIAS = "DELETE FROM queue_aliases WHERE alias = ?"
    # Readers cache aliases by this value: every change sets it to the wall clock (ns).
    SET_ALIAS_VERSION = "UPDATE meta SET value = ? WHERE key = 'alias_version'"
    RETARGET_ALIASES = "UPDATE queue_aliases SET target = ? WHERE target = ?"
    RENAME_QUEUE = "UPDATE messages SET queue = ? WHERE queue = ?"

    # --- search and overview -------------------------------------------------
    @staticmethod
    @cache
    def find_ids(*, include_claimed: bool, after: bool, before: bool) -> str:
        """IDs of messages whose body contains a literal substring (params:
        queue, needle, [after], [before], limit)."""
        parts = ["queue = ?"]
        if not include_claimed:
            parts.append("claimed = 0")
        parts.append("instr(body, ?) > 0")
        if after:
            parts.append("ts > ?")
        if before:
            parts.append("ts < ?")
        return f"SELECT ts FROM messages\nWHERE {' AND '.join(parts)}\nORDER BY ts\nLIMIT ?"

    HAS_PENDING = "SELECT EXISTS(SELECT 1 FROM messages WHERE queue = ? AND claimed = 0 LIMIT 1)"
    HAS_PENDING_AFTER = "SELECT EXISTS(SELECT 1 FROM messages WHERE queue = ? AND claimed = 0 AND ts > ? LIMIT 1)"
    COUNT_MESSAGES = "SELECT COUNT(*) FROM messages"
    DATABASE_SIZE = "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"

    # --- dump: pending messages by (queue, ts), keyset pages ---------------
    # params (last_ts, queue, queue, ts, limit): rows after the cursor (queue, ts).
    DUMP_PAGE = (
        "SELECT queue, body, ts FROM messages\n"
        "WHERE claimed = 0 AND ts <= ? AND (queue > ? OR (queue = ? AND ts > ?))\n"
        "ORDER BY queue, ts\nLIMIT ?"
    )

    # --- delete ------------------------------------------------------------
    DELETE_QUEUE = "DELETE FROM messages WHERE queue = ?"
    DELETE_ALL = "DELETE FROM messages"
    CREATE_DELETE_IDS_TABLE = (
        "CREATE TEMP TABLE IF NOT EXISTS simplebroker_delete_message_ids (\n    ts INTEGER PRIMARY KEY\n) WITHOUT ROWID"
    )
    CLEAR_DELETE_IDS = "DELETE FROM simplebroker_delete_message_ids"
    INSERT_DELETE_ID = "INSERT OR IGNORE INTO simplebroker_delete_message_ids(ts) VALUES (?)"
    DELETE_LISTED_IDS = (
        "DELETE FROM messages\nWHERE queue = ?\nAND ts IN (SELECT ts FROM simplebroker_delete_message_ids)"
    )

    # --- inspection ---------------------------------------------------------
    QUEUE_STATS = (
        "SELECT COALESCE(SUM(CASE WHEN claimed = 0 THEN 1 ELSE 0 END), 0) as unclaimed, "
        "COUNT(*) as total FROM messages WHERE queue = ?"
    )
    ALL_QUEUE_STATS = (
        "SELECT queue, SUM(CASE WHEN claimed = 0 THEN 1 ELSE 0 END) as unclaimed, "
        "COUNT(*) as total FROM messages GROUP BY queue ORDER BY queue"
    )
    QUEUE_EXISTS = "SELECT EXISTS( SELECT 1 FROM messages WHERE queue = ? LIMIT 1 )"
    OVERALL_STATS = "SELECT SUM(CASE WHEN claimed = 1 THEN 1 ELSE 0 END) as claimed, COUNT(*) as total FROM messages"

    # --- vacuum -------------------------------------------------------------
    ANY_CLAIMED = "SELECT EXISTS(SELECT 1 FROM messages WHERE claimed = 1 LIMIT 1)"
    DELETE_CLAIMED_BATCH = (
        "DELETE FROM messages\nWHERE ts IN (\n    SELECT ts FROM messages\n"
        "    WHERE claimed = 1\n    ORDER BY ts\n    LIMIT ?\n)"
    )
    INCREMENTAL_VACUUM = "PRAGMA incremental_vacuum(100)"
    COMPACT = "VACUUM"

    # --- steps the core runs as sub-operations -------------------------------
    ALIASES_TABLE = "queue_aliases"

    def read_meta(self) -> Operation[dict[str, Any]]:
        rows = yield Execute(self.READ_META, (), Fetch.ALL)
        return dict(rows)

    def bootstrap(self) -> Operation[bool]:
        rows = yield Execute(self.LIST_TABLES, (), Fetch.ALL)
        if rows:
            return False
        for statement in self.CREATE_SCHEMA_V6:
            yield Execute(statement)
        yield Execute(self.INSERT_MAGIC, (SIMPLEBROKER_MAGIC,))
        yield Execute(self.INSERT_SCHEMA_VERSION, (SCHEMA_VERSION,))
        return True

    def check_engine(self) -> Operation[None]:
        (version,) = yield Execute(self.SQLITE_VERSION, (), Fetch.ONE)
        if tuple(int(p) for p in str(version).split(".")[:3]) < MIN_SQLITE_VERSION:
            raise DatabaseError(f"SQLite {version} is too old: 3.35.0 or newer is required (RETURNING)")

    def prepare_storage(self, label: str, *, new: bool) -> Operation[None]:
        # auto_vacuum must be set before the first table exists; WAL before use.
        if new:
            yield Execute(self.SET_AUTO_VACUUM_INCREMENTAL)
        (mode,) = yield Execute(self.GET_JOURNAL_MODE, (), Fetch.ONE)
        if str(mode).lower() == "wal":
            return
        (mode,) = yield Execute(self.SET_JOURNAL_MODE_WAL, (), Fetch.ONE)
        if str(mode).lower() != "wal":
            raise DatabaseError(f"{label}: could not switch to WAL journal mode (got {mode!r})")

    def check_messages_table(self, label: str, *, canonical: bool) -> Operation[bool]:
        columns = {
            row[1]: (str(row[2]).upper(), row[3], row[4], row[5])
            for row in (yield Execute(self.TABLE_INFO_MESSAGES, (), Fetch.ALL))
        }
        if not canonical:
            if not set(V6_COLUMNS) <= set(columns):
                raise IncompatibleDatabaseError(f"{label}: messages table lacks (queue, body, ts, claimed)")
            return False
        keys = sum(1 for c in columns.values() if c[3] > 0)
        if any(columns.get(name) != shape for name, shape in V6_COLUMNS.items()) or keys != 1:
            raise IncompatibleDatabaseError(
                f"{label}: SQLite schema version 6 requires messages columns (queue, body, ts, claimed) "
                "with ts as the public-message-ID primary key"
            )
        return (yield from self._check_v6_indexes(label))

    def _check_v6_indexes(self, label: str) -> Operation[bool]:
        """True when canonical indexes are missing (repairable); refuse wrong ones."""
        rows = yield Execute(self.INDEX_LIST_MESSAGES, (), Fetch.ALL)
        present = {row[1]: (row[2], row[4]) for row in rows}
        missing = False
        for name, shape in V6_INDEXES.items():
            if name not in present:
                missing = True
                continue
            columns = [r[0] for r in (yield Execute(self.index_columns(name), (), Fetch.ALL))]
            if present[name] != shape or columns != V6_INDEX_COLUMNS:
                raise IncompatibleDatabaseError(f"{label}: index {name} does not have the canonical shape")
        return missing

    def delete_ids(self, queue: str, ids: list[int]) -> Operation[int]:
        # SimpleBroker's way: the IDs go through a temporary table (no limit
        # on the number of bound variables), emptied again afterwards.
        yield Execute(self.CREATE_DELETE_IDS_TABLE)
        yield Execute(self.CLEAR_DELETE_IDS)
        yield ExecuteMany(self.INSERT_DELETE_ID, [(i,) for i in ids])
        deleted: int = yield Execute(self.DELETE_LISTED_IDS, (queue,), Fetch.ROWCOUNT)
        yield Execute(self.CLEAR_DELETE_IDS)
        return deleted

    def lock_vacuum(self) -> Operation[bool]:
        # ``<db>.vacuum.lock``, as SimpleBroker takes it: one vacuum across both programs.
        acquired: bool = yield LOCK_VACUUM_FILE
        return acquired

    def unlock_vacuum(self) -> Operation[None]:
        yield UNLOCK_VACUUM_FILE

    def compact(self) -> Operation[None]:
        yield Execute(self.SET_AUTO_VACUUM_INCREMENTAL)
        yield Execute(self.COMPACT)

    def reclaim_space(self) -> Operation[None]:
        # Only files created with auto_vacuum=INCREMENTAL can shrink this way.
        (mode,) = yield Execute(self.GET_AUTO_VACUUM, (), Fetch.ONE)
        if mode == 2:
            yield Execute(self.INCREMENTAL_VACUUM, (), Fetch.ALL)

    # --- errors -------------------------------------------------------------
    @staticmethod
    def classify_error(message: str, code: int | str | None) -> DatabaseError:
        """By primary result code (the extended code's low byte), else by
        message text for drivers that report none."""
        primary = code & 0xFF if isinstance(code, int) else None
        lowered = message.lower()
        if primary in (SQLITE_BUSY, SQLITE_LOCKED) or any(t in lowered for t in _BUSY_TEXT):
            return BusyError(message, primary)
        if primary == SQLITE_CONSTRAINT:
            return IntegrityError(message, primary)
        if primary == SQLITE_INTERRUPT:
            return StatementInterruptedError(message, primary)
        if primary == SQLITE_NOTADB or "file is not a database" in lowered:
            return NotADatabaseDriverError(message, primary)
        return DatabaseError(message, primary)

    # --- change notification ------------------------------------------------
    @staticmethod
    def change_notification(queues: Sequence[str]) -> tuple[Command, ...]:
        # SQLite has no notification channel: other processes poll
        # ``PRAGMA data_version``; nothing is added to a write.
        return ()


def _direction(newest: bool) -> str:
    return "DESC" if newest else "ASC"


SQLITE = SQLiteDialect()
