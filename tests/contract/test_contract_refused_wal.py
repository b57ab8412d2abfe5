"""A refused file whose WAL still holds frames stays byte-for-byte unchanged (issue 9, item 11).

A program killed (or still running) in WAL mode leaves its last commits in
``-wal``, indexed by ``-shm``. Opening such a file read-write rebuilds the
``-shm``, and closing that connection checkpoints the WAL into the database
and deletes both, so a refusal must be decided on a read-only connection.
Every file here is made with the real ``sqlite3`` module; each adapter must
refuse it with its typed error and leave all three files as they were.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sansio_broker import (
    BrokerError,
    ForeignDatabaseError,
    IncompatibleDatabaseError,
    Message,
    SchemaVersionError,
)
from tests.contract.contract_support import MakeBroker, build_db, expect_error, listing, raised_by
from tests.support.contract import V6_DDL
from tests.support.rawdb import connect, meta

pytestmark = pytest.mark.sqlite_only("SQLite files whose WAL holds frames (-wal, -shm)")

NOW = time.time_ns() & ~0xFFF
SUFFIXES = ("", "-wal", "-shm")

# Statements run by the program that leaves its WAL behind (after journal_mode=WAL).
SCHEMA_7 = [
    *V6_DDL,
    "INSERT INTO meta (key, value) VALUES ('magic', 'simplebroker-v1')",
    "INSERT INTO meta (key, value) VALUES ('schema_version', 7)",
    f"UPDATE meta SET value = {NOW} WHERE key = 'last_ts'",
    f"INSERT INTO messages (queue, body, ts) VALUES ('q', 'from v7', {NOW})",
]
FOREIGN = [
    "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)",
    "INSERT INTO users (name) VALUES ('ada')",
]
FOREIGN_MAGIC = [
    *V6_DDL,
    "INSERT INTO meta (key, value) VALUES ('magic', 'another-program')",
    "INSERT INTO meta (key, value) VALUES ('schema_version', 6)",
]
# The main file alone is an admissible v6 database: only the WAL says v7.
BUMPED_IN_WAL = [
    "UPDATE meta SET value = 7 WHERE key = 'schema_version'",
    f"INSERT INTO messages (queue, body, ts) VALUES ('q', 'after the bump', {NOW + 4096})",
]

CASES = {
    "schema-7": (SCHEMA_7, SchemaVersionError, "schema version 7 is newer"),
    "foreign": (FOREIGN, ForeignDatabaseError, "another program"),
    "foreign-magic": (FOREIGN_MAGIC, ForeignDatabaseError, "magic"),
}


def files(path: Path) -> dict[str, bytes | None]:
    """The bytes of the database, its ``-wal`` and its ``-shm`` (``None``: absent)."""
    out = {}
    for suffix in SUFFIXES:
        name = Path(f"{path}{suffix}")
        out[suffix or "db"] = name.read_bytes() if name.exists() else None
    return out


def left_by_running_writer(path: Path, statements: list[str], *, v6_first: bool = False) -> None:
    """``path`` as copied while its writer is still open: its commits only in the WAL."""
    source = path.parent / "writer" / path.name
    source.parent.mkdir()
    if v6_first:  # an admissible v6 main file, checkpointed and closed
        build_db(source, last_ts=NOW, messages=(("q", "in the main file", NOW, 0),))
    writer = sqlite3.connect(source, isolation_level=None)
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("PRAGMA wal_autocheckpoint=0")
        for statement in statements:
            writer.execute(statement)
        for suffix in SUFFIXES:
            shutil.copyfile(f"{source}{suffix}", f"{path}{suffix}")
    finally:
        writer.close()
    shutil.rmtree(source.parent)


def left_by_killed_writer(path: Path, statements: list[str]) -> None:
    """``path`` as a writer process killed in WAL mode leaves it (no close, no checkpoint)."""
    script = textwrap.dedent(
        """
        import os, sqlite3, sys
        writer = sqlite3.connect(sys.argv[1], isolation_level=None)
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("PRAGMA wal_autocheckpoint=0")
        for statement in sys.argv[2:]:
            writer.execute(statement)
        os._exit(0)
        """
    )
    subprocess.run([sys.executable, "-c", script, str(path), *statements], check=True, timeout=60)


def assert_holds_frames(path: Path) -> None:
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    assert wal.stat().st_size > 32 + 24 + 4096  # the WAL header and at least one frame
    assert shm.exists()


def assert_refused_untouched(make_broker: MakeBroker, path: Path, error: type[BrokerError], match: str) -> BrokerError:
    before, names = files(path), listing(path.parent)
    raised = raised_by(make_broker)
    refusal: BrokerError = expect_error(raised, error, match)
    assert isinstance(refusal, IncompatibleDatabaseError)
    assert path.name in str(refusal)
    after = files(path)
    for name in before:
        assert after[name] == before[name], f"the refused file's {name} was changed"
    assert listing(path.parent) == names
    return refusal


@pytest.mark.parametrize("case", list(CASES))
def test_refused_file_with_wal_frames_is_left_untouched(make_broker: MakeBroker, db_path: Path, case: str) -> None:
    statements, error, match = CASES[case]
    left_by_running_writer(db_path, statements)
    assert_holds_frames(db_path)
    assert_refused_untouched(make_broker, db_path, error, match)
    assert_refused_untouched(make_broker, db_path, error, match)  # and again: nothing drifted


def test_refused_file_of_a_killed_writer_is_left_untouched(make_broker: MakeBroker, db_path: Path) -> None:
    left_by_killed_writer(db_path, SCHEMA_7)
    assert_holds_frames(db_path)
    assert_refused_untouched(make_broker, db_path, SchemaVersionError, "schema version 7 is newer")
    # The killed writer's commits are all there for whoever may read the file.
    assert meta(db_path)["schema_version"] == 7
    with connect(db_path) as conn:
        assert conn.execute("SELECT body FROM messages").fetchall() == [("from v7",)]


def test_refusal_is_decided_by_what_the_wal_says(make_broker: MakeBroker, db_path: Path) -> None:
    """The main file alone is admissible v6; its WAL bumped the schema to 7."""
    left_by_running_writer(db_path, BUMPED_IN_WAL, v6_first=True)
    assert_holds_frames(db_path)
    assert_refused_untouched(make_broker, db_path, SchemaVersionError, "schema version 7 is newer")


def test_refused_foreign_file_keeps_its_data(make_broker: MakeBroker, db_path: Path) -> None:
    left_by_running_writer(db_path, FOREIGN)
    assert_refused_untouched(make_broker, db_path, ForeignDatabaseError, "another program")
    with connect(db_path) as conn:
        assert conn.execute("SELECT name FROM users").fetchall() == [("ada",)]


def test_refused_file_with_a_wal_but_no_shm_keeps_database_and_wal(make_broker: MakeBroker, db_path: Path) -> None:
    """Without a ``-shm`` SQLite cannot read the WAL without building one: only the ``-shm`` may appear."""
    left_by_running_writer(db_path, SCHEMA_7)
    os.remove(f"{db_path}-shm")
    before = files(db_path)
    raised = raised_by(make_broker)
    expect_error(raised, SchemaVersionError, "schema version 7 is newer")
    after = files(db_path)
    assert (after["db"], after["-wal"]) == (before["db"], before["-wal"])


def test_admitted_file_with_wal_frames_is_used(make_broker: MakeBroker, db_path: Path) -> None:
    """The read-only look first does not get in the way of a file that is admitted."""
    left_by_running_writer(
        db_path,
        [
            f"INSERT INTO messages (queue, body, ts) VALUES ('q', 'only in the WAL', {NOW + 4096})",
            f"UPDATE meta SET value = {NOW + 4096} WHERE key = 'last_ts'",
        ],
        v6_first=True,
    )
    assert_holds_frames(db_path)
    broker = make_broker()
    assert broker.claim_many("q", 5) == [Message("in the main file", NOW), Message("only in the WAL", NOW + 4096)]
    assert broker.write("q", "new") > NOW + 4096
