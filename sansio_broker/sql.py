"""All SQL text the broker runs: one dialect, SQLite, as the storage contract
fixes it (SimpleBroker 8.7.2, schema v6).

Operations never build SQL themselves; they ask a dialect object for a
statement. Statements name only ``queue, body, ts, claimed`` so they run on
schema v5 and v6 alike. A second dialect is a second class with the same
attributes and methods.
"""

from __future__ import annotations

from functools import cache

# Transaction control. Every write transaction is BEGIN IMMEDIATE so the
# write lock is taken up front and an ID allocated inside it is serialized.
BEGIN_IMMEDIATE = "BEGIN IMMEDIATE"
COMMIT = "COMMIT"
ROLLBACK = "ROLLBACK"

SIMPLEBROKER_MAGIC = "simplebroker-v1"
SCHEMA_VERSION = 6
OLDEST_SCHEMA_VERSION = 5


class SQLiteDialect:
    """SQLite statements; methods build the few statements that vary."""

    # --- connection set-up (per connection, nothing persisted) -------------
    @staticmethod
    def connection_pragmas(
        busy_timeout_ms: int, cache_mb: int, sync_mode: str, wal_autocheckpoint: int
    ) -> tuple[str, ...]:
        return (
            f"PRAGMA busy_timeout={int(busy_timeout_ms)}",
            f"PRAGMA wal_autocheckpoint={int(wal_autocheckpoint)}",
            f"PRAGMA cache_size=-{int(cache_mb) * 1024}",
            f"PRAGMA synchronous={sync_mode}",
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

    # --- schema v6, exactly as SimpleBroker 8 creates it (contract §1.3) ---
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
    CREATE_SCHEMA_V6 = (
        CREATE_MESSAGES,
        CREATE_QUEUE_TS_INDEX,
        CREATE_PENDING_QUEUE_TS_INDEX,
        CREATE_META,
        INSERT_LAST_TS,
        CREATE_ALIASES,
        CREATE_ALIAS_TARGET_INDEX,
        INSERT_ALIAS_VERSION,
    )
    REPAIR_V6_INDEXES = (CREATE_QUEUE_TS_INDEX, CREATE_PENDING_QUEUE_TS_INDEX)
    ENSURE_ALIASES = (CREATE_ALIASES, CREATE_ALIAS_TARGET_INDEX, INSERT_ALIAS_VERSION)

    # --- message IDs (contract §3.2): compare-and-advance inside BEGIN IMMEDIATE
    READ_LAST_TS = "SELECT value FROM meta WHERE key = 'last_ts'"
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
        """The ``{where}`` fragment of contract §4; see :func:`where_params`."""
        parts = ["ts = ? AND queue = ?"] if by_id else ["queue = ?"]
        if unclaimed_only:
            parts.append("claimed = 0")
        if not by_id:
            if after:
                parts.append("ts > ?")
            if before:
                parts.append("ts < ?")
        return " AND ".join(parts)

    @staticmethod
    @cache
    def claim(where: str) -> str:
        return (
            "UPDATE messages\nSET claimed = 1\nWHERE ts IN (\n"
            f"    SELECT ts FROM messages\n    WHERE {where}\n"
            "    ORDER BY ts ASC\n    LIMIT ?\n)\nRETURNING body, ts"
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
    def move(where: str) -> str:
        # The claimed flag is kept, as SimpleBroker 8 does.
        return (
            "UPDATE messages\nSET queue = ?\nWHERE ts IN (\n"
            f"    SELECT ts FROM messages\n    WHERE {where}\n"
            "    ORDER BY ts ASC\n    LIMIT ?\n)\nRETURNING body, ts"
        )

    @staticmethod
    @cache
    def peek(where: str) -> str:
        return f"SELECT body, ts FROM messages\nWHERE {where}\nORDER BY ts ASC\nLIMIT ?"

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

    # --- vacuum (contract §4.12) --------------------------------------------
    ANY_CLAIMED = "SELECT EXISTS(SELECT 1 FROM messages WHERE claimed = 1 LIMIT 1)"
    DELETE_CLAIMED_BATCH = (
        "DELETE FROM messages\nWHERE ts IN (\n    SELECT ts FROM messages\n"
        "    WHERE claimed = 1\n    ORDER BY ts\n    LIMIT ?\n)"
    )
    INCREMENTAL_VACUUM = "PRAGMA incremental_vacuum(100)"
    COMPACT = "VACUUM"


SQLITE = SQLiteDialect()


def where_params(queue: str, *, message_id: int | None, after: int | None, before: int | None) -> tuple[int | str, ...]:
    """Parameters in the order :meth:`SQLiteDialect.where` expects them."""
    if message_id is not None:
        return (message_id, queue)
    params: tuple[int | str, ...] = (queue,)
    if after is not None:
        params += (after,)
    if before is not None:
        params += (before,)
    return params
