"""SimpleBroker's schema, copied verbatim from what SimpleBroker 7 (v5) and
8 (v6) create.

This is the one literal copy in the tests. It must not be derived from
``sansio_broker.sqlite``: the tests check the product against SimpleBroker's text.
"""

from __future__ import annotations

# meta, queue_aliases, idx_queue_aliases_target and the first meta inserts:
# the same in v6 and v5.
_META_AND_ALIASES_DDL = (
    """CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
)""",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('last_ts', 0)",
    """CREATE TABLE IF NOT EXISTS queue_aliases (
    alias TEXT PRIMARY KEY,
    target TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS idx_queue_aliases_target ON queue_aliases(target)",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('alias_version', 0)",
)

# Schema v6 as SimpleBroker 8 creates it, in order (the two parameterized
# meta inserts that end the list are INSERT_MAGIC and INSERT_SCHEMA_VERSION).
V6_DDL = (
    """CREATE TABLE IF NOT EXISTS messages (
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    ts INTEGER NOT NULL PRIMARY KEY,
    claimed INTEGER DEFAULT 0
)""",
    """CREATE INDEX IF NOT EXISTS idx_messages_queue_ts
ON messages(queue, ts)""",
    """CREATE INDEX IF NOT EXISTS idx_messages_pending_queue_ts
ON messages(queue, ts)
WHERE claimed = 0""",
    *_META_AND_ALIASES_DDL,
)

# Schema v5 as SimpleBroker 7 creates it (then INSERT_MAGIC and
# INSERT_SCHEMA_VERSION with 5).
V5_DDL = (
    """CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    ts INTEGER NOT NULL UNIQUE,
    claimed INTEGER DEFAULT 0
)""",
    """CREATE INDEX IF NOT EXISTS idx_messages_queue_ts_id
ON messages(queue, ts, id)""",
    """CREATE INDEX IF NOT EXISTS idx_messages_unclaimed
ON messages(queue, claimed, id)
WHERE claimed = 0""",
    """CREATE INDEX IF NOT EXISTS idx_messages_pending_queue_ts
ON messages(queue, ts)
WHERE claimed = 0""",
    """CREATE UNIQUE INDEX idx_messages_ts_unique
ON messages(ts)""",
    *_META_AND_ALIASES_DDL,
)

INSERT_MAGIC = "INSERT OR IGNORE INTO meta (key, value) VALUES ('magic', ?)"
INSERT_SCHEMA_VERSION = "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)"
MAGIC = "simplebroker-v1"

# PRAGMA table_info('messages') of a canonical v6 table,
# rows of (cid, name, type, notnull, dflt_value, pk).
V6_TABLE_INFO = [
    (0, "queue", "TEXT", 1, None, 0),
    (1, "body", "TEXT", 1, None, 0),
    (2, "ts", "INTEGER", 1, None, 1),
    (3, "claimed", "INTEGER", 0, "0", 0),
]
