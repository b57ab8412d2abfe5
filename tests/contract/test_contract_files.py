"""Database files, for every adapter: what a new file looks like, which files are refused, IDs on disk."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sansio_broker import (
    BrokerError,
    ForeignDatabaseError,
    IncompatibleDatabaseError,
    Message,
    NotADatabaseError,
    QueueStats,
    SchemaVersionError,
)
from tests.contract.contract_support import (
    Facade,
    MakeBroker,
    Target,
    build_db,
    expect_error,
    listing,
    meta,
    normalized_schema,
    open_facade,
    raised_by,
    rows,
    snapshot,
)
from tests.support.contract import INSERT_MAGIC, INSERT_SCHEMA_VERSION, MAGIC, V5_DDL, V6_DDL
from tests.support.rawdb import connect

NOW = time.time_ns()


def ts_at(offset_ms: int) -> int:
    """A plausible generated ID ``offset_ms`` after the start of the test run."""
    return (NOW + offset_ms * 1_000_000) & ~0xFFF


# ------------------------------------------------------------------ new files
@pytest.mark.sqlite_only("a new file's sqlite_master (the v6 DDL)")
def test_new_file_has_exactly_the_v6_schema(adapter: str, db_path: Path, tmp_path: Path) -> None:
    with open_facade(adapter, db_path):
        pass
    reference = tmp_path / "reference.db"
    with connect(reference) as conn:
        conn.execute("PRAGMA auto_vacuum=2")
        for statement in V6_DDL:
            conn.execute(statement)
        conn.execute(INSERT_MAGIC, (MAGIC,))
        conn.execute(INSERT_SCHEMA_VERSION, (6,))
    assert normalized_schema(db_path) == normalized_schema(reference)
    assert set(normalized_schema(db_path)) == {
        ("table", "messages"),
        ("index", "idx_messages_queue_ts"),
        ("index", "idx_messages_pending_queue_ts"),
        ("table", "meta"),
        ("index", "sqlite_autoindex_meta_1"),
        ("table", "queue_aliases"),
        ("index", "sqlite_autoindex_queue_aliases_1"),
        ("index", "idx_queue_aliases_target"),
    }
    with connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA auto_vacuum").fetchone() == (2,)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert meta(db_path) == {"last_ts": 0, "alias_version": 0, "magic": MAGIC, "schema_version": 6}


@pytest.mark.sqlite_only("SQLite's key/value meta table")
def test_new_file_meta_after_use_has_no_schema_proof(adapter: str, db_path: Path) -> None:
    with open_facade(adapter, db_path) as broker:
        broker.write("q", "a")
        broker.claim("q")
        broker.vacuum(compact=True)
    assert set(meta(db_path)) == {"last_ts", "alias_version", "magic", "schema_version"}
    assert not [key for key in meta(db_path) if key.startswith("schema_proof")]
    assert meta(db_path)["schema_version"] == 6


@pytest.mark.sqlite_only("an empty existing file")
def test_empty_existing_file_is_initialised(adapter: str, db_path: Path) -> None:
    db_path.write_bytes(b"")
    with open_facade(adapter, db_path) as broker:
        broker.write("q", "a")
    assert meta(db_path)["schema_version"] == 6
    with connect(db_path) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone() == (2,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert [b for _, b, _, _ in rows(db_path)] == ["a"]


# -------------------------------------------------------------- refused files
def assert_refused(
    make_broker: MakeBroker, db_path: Path, error: type[BrokerError], match: str | None = None
) -> BrokerError:
    before = snapshot(db_path)
    files_before = listing(db_path.parent)
    raised = raised_by(make_broker)
    assert snapshot(db_path) == before
    assert listing(db_path.parent) == files_before
    refusal: BrokerError = expect_error(raised, error, match)
    assert db_path.name in str(refusal)  # the message names the file
    return refusal


NOT_SQLITE = [b"hello", b"this is not a database\n" * 300, b"\0" * 4096, b"SQLite format 2\0" + b"\1" * 2000]


@pytest.mark.parametrize("content", NOT_SQLITE, ids=["short", "text", "zeros", "other-header"])
@pytest.mark.sqlite_only("a file that is not a SQLite database")
def test_not_sqlite_file_refused(make_broker: MakeBroker, db_path: Path, content: bytes) -> None:
    db_path.write_bytes(content)
    error = assert_refused(make_broker, db_path, NotADatabaseError)
    assert isinstance(error, IncompatibleDatabaseError)


@pytest.mark.parametrize("content", NOT_SQLITE, ids=["short", "text", "zeros", "other-header"])
@pytest.mark.sqlite_only("a file that is not a SQLite database")
def test_not_sqlite_file_left_unchanged(make_broker: MakeBroker, db_path: Path, content: bytes) -> None:
    db_path.write_bytes(content)
    files_before = listing(db_path.parent)
    raised = raised_by(make_broker)
    assert db_path.read_bytes() == content
    assert listing(db_path.parent) == files_before
    expect_error(raised, BrokerError)


@pytest.mark.parametrize("journal_mode", [None, "wal"])
@pytest.mark.sqlite_only("a SQLite file of another program")
def test_sqlite_file_of_another_program_refused(
    make_broker: MakeBroker, db_path: Path, journal_mode: str | None
) -> None:
    with connect(db_path) as conn:
        if journal_mode:
            conn.execute(f"PRAGMA journal_mode={journal_mode}")
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users (name) VALUES ('ada')")
    assert_refused(make_broker, db_path, ForeignDatabaseError)
    with connect(db_path) as conn:
        assert conn.execute("SELECT name FROM users").fetchall() == [("ada",)]


@pytest.mark.sqlite_only("a SQLite file built by sqlite3")
def test_sqlite_file_with_meta_but_no_messages_refused(make_broker: MakeBroker, db_path: Path) -> None:
    with connect(db_path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    assert_refused(make_broker, db_path, ForeignDatabaseError)


@pytest.mark.sqlite_only("a SQLite file built by sqlite3")
def test_foreign_magic_refused(make_broker: MakeBroker, db_path: Path) -> None:
    build_db(db_path, magic="other", messages=(("q", "a", ts_at(0), 0),), last_ts=ts_at(0))
    assert_refused(make_broker, db_path, ForeignDatabaseError, match="magic")


@pytest.mark.parametrize("version", [7, 99, 4, 0, "7", "six"])
@pytest.mark.sqlite_only("a SQLite file built by sqlite3")
def test_unsupported_schema_version_refused(make_broker: MakeBroker, db_path: Path, version: object) -> None:
    ddl = V6_DDL if version in (7, 99, "7", "six") else V5_DDL
    build_db(db_path, ddl, schema_version=version, messages=(("q", "a", ts_at(0), 0),), last_ts=ts_at(0))
    error = assert_refused(make_broker, db_path, SchemaVersionError)
    assert isinstance(error, IncompatibleDatabaseError)


@pytest.mark.sqlite_only("a legacy SQLite file layout")
def test_v1_database_without_meta_refused(make_broker: MakeBroker, db_path: Path) -> None:
    with connect(db_path) as conn:
        conn.execute(
            "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, "
            "body TEXT NOT NULL, ts INTEGER NOT NULL)"
        )
        conn.execute("INSERT INTO messages (queue, body, ts) VALUES ('q', 'a', ?)", (ts_at(0),))
    assert_refused(make_broker, db_path, SchemaVersionError)


@pytest.mark.sqlite_only("a legacy SQLite file layout")
def test_legacy_microsecond_last_ts_refused(make_broker: MakeBroker, db_path: Path) -> None:
    legacy = 7_200_000_000_000_000_000  # (µs << 12) in 2025
    build_db(db_path, last_ts=legacy, messages=(("q", "a", legacy, 0),))
    error = assert_refused(make_broker, db_path, IncompatibleDatabaseError, match="last_ts")
    assert not isinstance(error, SchemaVersionError | ForeignDatabaseError)


@pytest.mark.parametrize(
    "messages_ddl",
    [
        "claimed INTEGER NOT NULL DEFAULT 0",
        "ts INTEGER PRIMARY KEY",  # ts without NOT NULL
    ],
)
@pytest.mark.sqlite_only("a SQLite file built by sqlite3")
def test_v6_with_wrong_column_shape_refused(make_broker: MakeBroker, db_path: Path, messages_ddl: str) -> None:
    table = V6_DDL[0]
    if messages_ddl.startswith("claimed"):
        table = table.replace("claimed INTEGER DEFAULT 0", messages_ddl)
    else:
        table = table.replace("ts INTEGER NOT NULL PRIMARY KEY", messages_ddl)
    assert table != V6_DDL[0]
    build_db(db_path, (table, *V6_DDL[1:]), messages=(("q", "a", ts_at(0), 0),), last_ts=ts_at(0))
    error = assert_refused(make_broker, db_path, IncompatibleDatabaseError)
    assert not isinstance(error, SchemaVersionError | ForeignDatabaseError)


# aiosqlite stops the worker of a connection that failed to open without waiting
# for it; the worker's last call_soon_threadsafe can then meet the closed loop.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.sqlite_only("a file in a missing directory")
def test_missing_directory_raises_broker_error(make_broker: MakeBroker, tmp_path: Path) -> None:
    raised = raised_by(lambda: make_broker(tmp_path / "missing" / "broker.db"))
    assert listing(tmp_path) == []
    expect_error(raised, BrokerError)


# aiosqlite stops the worker of a connection that failed to open without waiting
# for it; the worker's last call_soon_threadsafe can then meet the closed loop.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.sqlite_only("a directory given as the database file")
def test_a_directory_path_is_refused(make_broker: MakeBroker, tmp_path: Path) -> None:
    raised = raised_by(lambda: make_broker(tmp_path))
    assert listing(tmp_path) == []
    expect_error(raised, BrokerError)


# ------------------------------------------------------------- admitted files
@pytest.mark.sqlite_only("a SQLite file built by sqlite3 (sqlite_master)")
def test_v6_missing_canonical_indexes_is_repaired(adapter: str, db_path: Path, tmp_path: Path) -> None:
    ddl = tuple(s for s in V6_DDL if "idx_messages" not in s)
    assert len(ddl) == len(V6_DDL) - 2
    build_db(db_path, ddl, messages=(("q", "a", ts_at(0), 0), ("q", "b", ts_at(1), 1)), last_ts=ts_at(1))
    with open_facade(adapter, db_path) as broker:
        assert broker.queue_stats("q") == QueueStats("q", 1, 2)
        assert broker.claim("q") == Message("a", ts_at(0))
        new = broker.write("q", "c")
        assert new > ts_at(1)
    reference = tmp_path / "reference.db"
    build_db(reference)
    schema = normalized_schema(db_path)
    expected = normalized_schema(reference)
    for key in [("index", "idx_messages_queue_ts"), ("index", "idx_messages_pending_queue_ts")]:
        assert schema[key] == expected[key]
    assert schema == expected
    assert meta(db_path)["schema_version"] == 6


@pytest.mark.sqlite_only("SQLite's rollback journal mode")
def test_v6_created_elsewhere_in_rollback_mode_is_used(adapter: str, db_path: Path) -> None:
    build_db(db_path, messages=(("q", "a", ts_at(0), 0),), last_ts=ts_at(0))
    with open_facade(adapter, db_path) as broker:
        assert broker.read("q") == ["a"]
    with connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.sqlite_only("a SQLite schema v5 file (SimpleBroker 7)")
def test_v5_database_used_without_migration(adapter: str, db_path: Path) -> None:
    build_db(
        db_path,
        V5_DDL,
        schema_version=5,
        messages=(("q", "old1", ts_at(0), 0), ("q", "old2", ts_at(1), 0), ("q", "gone", ts_at(2), 1)),
        last_ts=ts_at(2),
    )
    schema_before = normalized_schema(db_path)
    with open_facade(adapter, db_path) as broker:
        assert broker.peek_many("q", 10) == [Message("old1", ts_at(0)), Message("old2", ts_at(1))]
        assert broker.queue_stats("q") == QueueStats("q", 2, 3)
        assert broker.claim("q") == Message("old1", ts_at(0))
        new_id = broker.write("q", "new")
        assert new_id > ts_at(2)
        more = broker.write_many("q", ["n1", "n2"])
        assert broker.move("q", "dst", message_id=ts_at(0)) == Message("old1", ts_at(0))
        assert broker.vacuum() == 2
        assert broker.read("q", all_messages=True) == ["old2", "new", "n1", "n2"]
    assert meta(db_path)["schema_version"] == 5
    assert normalized_schema(db_path) == schema_before
    with connect(db_path) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info('messages')")]
        assert columns == ["id", "queue", "body", "ts", "claimed"]
        stored = conn.execute("SELECT id, queue, body, ts FROM messages ORDER BY id").fetchall()
    assert [(q, b, ts) for _, q, b, ts in stored] == [
        ("q", "old2", ts_at(1)),
        ("q", "new", new_id),
        ("q", "n1", more[0]),
        ("q", "n2", more[1]),
    ]
    assert [i for i, *_ in stored] == sorted(i for i, *_ in stored)
    assert meta(db_path)["last_ts"] == more[1]


# ------------------------------------------------------------------------ IDs
def test_last_ts_tracks_max_ts(adapter: str, target: Target) -> None:
    with open_facade(adapter, target) as broker:
        broker.write("a", "1")
        assert meta(target)["last_ts"] == max(r[2] for r in rows(target))
        broker.write_many("b", ["2", "3", "4"])
        assert meta(target)["last_ts"] == max(r[2] for r in rows(target))
        assert broker.broadcast("5") == 2
        assert meta(target)["last_ts"] == max(r[2] for r in rows(target))
        last = meta(target)["last_ts"]
        broker.claim_all("a")
        broker.move_all("b", "c")
        broker.vacuum()
        broker.delete("c")
        assert meta(target)["last_ts"] == last  # never lowered


def test_ids_are_19_digit_hybrid_timestamps(broker: Facade) -> None:
    start = time.time_ns()
    ids = [broker.write("q", "x") for _ in range(3)] + broker.write_many("q", ["y"] * 3)
    end = time.time_ns()
    for message_id in ids:
        assert isinstance(message_id, int)
        assert len(str(message_id)) == 19
        assert (start & ~0xFFF) <= message_id <= end + 4096 * 6
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_far_future_last_ts_continues_with_counter(adapter: str, target: Target) -> None:
    with open_facade(adapter, target) as broker:
        broker.write("q", "seed")
    future = (time.time_ns() + 10_000_000_000) & ~0xFFF
    target.set_last_ts(future)
    with open_facade(adapter, target) as broker:
        assert [broker.write("q", f"m{i}") for i in range(3)] == [future + 1, future + 2, future + 3]
        assert broker.write_many("q", ["a", "b"]) == [future + 4, future + 5]
    assert meta(target)["last_ts"] == future + 5
    assert [b for _, b, _, _ in rows(target)] == ["seed", "m0", "m1", "m2", "a", "b"]


@pytest.mark.sqlite_only("a SQLite file built by sqlite3 (build_db)")
def test_last_ts_behind_stored_rows_is_advanced(adapter: str, db_path: Path) -> None:
    build_db(db_path, messages=(("q", "a", ts_at(0), 0), ("q", "b", ts_at(1), 0)), last_ts=0)
    with open_facade(adapter, db_path) as broker:
        new = broker.write("q", "c")
        assert new > ts_at(1)
        assert broker.read("q", all_messages=True) == ["a", "b", "c"]
    assert meta(db_path)["last_ts"] == new


def test_duplicate_id_from_another_writer_is_resynced(adapter: str, target: Target) -> None:
    """Another writer left meta.last_ts behind a row it inserted: resync and retry once, as SimpleBroker."""
    with open_facade(adapter, target) as broker:
        broker.write("q", "first")
        future = (time.time_ns() + 5_000_000_000) & ~0xFFF
        target.set_last_ts(future)
        target.insert_row("q", "exact", future + 1)
        # The next ID after last_ts collides with the stored row: resync, then continue past it.
        assert broker.write("q", "after") == future + 2
        assert broker.read("q", all_messages=True) == ["first", "exact", "after"]
    assert meta(target)["last_ts"] == future + 2


def test_a_clock_regression_does_not_fail_writes(adapter: str, target: Target) -> None:
    with open_facade(adapter, target) as broker:
        broker.write("q", "before")  # the broker has cached its own high-water mark
        future = ((time.time_ns() + 10_000_000_000) & ~0xFFF) | 7
        target.set_last_ts(future)
        assert broker.write("q", "w1") == future + 1
        assert broker.write("q", "w2") == future + 2
        assert broker.write_many("q", ["w3", "w4"]) == [future + 3, future + 4]
        assert broker.queue("q").write("w5") == future + 5
    # A fresh broker (no cached value) carries on the same way.
    with open_facade(adapter, target) as broker:
        assert broker.write("q", "w6") == future + 6
    assert meta(target)["last_ts"] == future + 6


@pytest.mark.sqlite_only("-wal and -shm files removed at close")
def test_closing_leaves_only_the_database_file(make_broker: MakeBroker, db_path: Path) -> None:
    # SQLite checkpoints and removes -wal and -shm when the last connection
    # closes, as after SimpleBroker's commands; a checkpoint cut short (an
    # interrupt still pending at close) left them behind for the next process.
    broker = make_broker()
    broker.write("q", "x")
    assert broker.claim("q") is not None
    broker.close()
    assert sorted(p.name for p in db_path.parent.iterdir()) == [db_path.name]
