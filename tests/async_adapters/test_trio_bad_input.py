"""Bad input raises the documented error before anything touches the file (trio adapter).

The full matrix of bad values is the contract suite's; here every kind of
refusal goes through the trio adapter once: the file is untouched, no
connection is kept, no worker thread is left behind.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from sansio_broker import (
    BrokerError,
    ConfigError,
    ForeignDatabaseError,
    InvalidInputError,
    InvalidTypeError,
    MessageError,
    MessageIdError,
    NotADatabaseError,
    QueueNameError,
    SchemaVersionError,
)
from sansio_broker.adapters.trio import TrioBroker, TrioQueue, trio_broker
from tests.async_adapters.trio_support import run, settle, threads_left, worker_threads
from tests.support import internals
from tests.support.contract import INSERT_MAGIC, INSERT_SCHEMA_VERSION, MAGIC, V6_DDL

CONFIG = {"BROKER_AUTO_VACUUM": "0", "BROKER_MAX_MESSAGE_SIZE": "12"}

Call = Callable[[TrioBroker], Any]

REFUSED: list[tuple[str, Call, type[BrokerError]]] = [
    ("queue name", lambda b: b.write("has space", "m"), QueueNameError),
    ("queue name type", lambda b: b.claim(42), InvalidTypeError),
    ("queue name of a TrioQueue", lambda b: TrioQueue("-leading", b), QueueNameError),
    ("move to a bad name", lambda b: b.move_all("q", "slash/"), QueueNameError),
    ("body size in UTF-8 bytes", lambda b: b.write("q", "é" * 7), MessageError),
    ("body type", lambda b: TrioQueue("q", b).write(b"bytes"), InvalidTypeError),
    ("one bad body among good ones", lambda b: b.write_many("q", ["fine", "x" * 13]), MessageError),
    ("broadcast body", lambda b: b.broadcast("\ud800"), MessageError),
    ("message ID", lambda b: b.claim("q", message_id="1" * 18), MessageIdError),
    ("message ID type", lambda b: TrioQueue("q", b).delete(message_id=1.0), InvalidTypeError),
    ("one bad ID among good ones", lambda b: b.delete_messages("q", [1, -5]), MessageIdError),
    ("bound", lambda b: b.claim_all("q", after_timestamp=-1), MessageIdError),
    ("limit", lambda b: b.claim_many("q", 0), InvalidInputError),
    ("limit type", lambda b: TrioQueue("q", b).move_many("dst", True), InvalidTypeError),
    ("combination", lambda b: b.peek("q", message_id=1, before_timestamp=5), InvalidInputError),
    ("move onto itself", lambda b: b.move("q", "q"), InvalidInputError),
    ("stream commit_interval", lambda b: b.stream("q", commit_interval=0).__anext__(), InvalidInputError),
    ("stream bound", lambda b: TrioQueue("q", b).stream(after_timestamp=-1).__anext__(), MessageIdError),
]


def snapshot(path: Path) -> tuple[bytes, bytes | None]:
    wal = Path(f"{path}-wal")
    return path.read_bytes(), wal.read_bytes() if wal.exists() else None


@pytest.mark.parametrize(("call", "error"), [(c, e) for _, c, e in REFUSED], ids=[n for n, _, _ in REFUSED])
def test_bad_input_is_refused_before_anything_is_written(db_path: Path, call: Call, error: type) -> None:
    async def main() -> None:
        async with trio_broker(db_path, pool_size=1, config=CONFIG) as broker:
            await broker.write_many("q", ["a", "b", "c"])
            await broker.claim("q")
            before = snapshot(db_path)
            with pytest.raises(error) as info:
                result = call(broker)
                if hasattr(result, "__await__"):
                    await result
            assert isinstance(info.value, BrokerError)
            assert snapshot(db_path) == before
            # Nothing kept the only connection: the next operation runs at once.
            await settle(broker, timeout=2)
            assert internals.idle_connections(broker) == len(internals.open_connections(broker)) == 1
            with trio.fail_after(3):
                assert (await broker.peek("q")) is not None

    run(main)


# ----------------------------------------------------------- opening
def _not_sqlite(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is not a database, just some text\n" * 200)
    return path


def _foreign(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users (name) VALUES ('ada')")
    conn.close()
    return path


def _newer(tmp_path: Path) -> Path:
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in V6_DDL:
        conn.execute(statement)
    conn.execute(INSERT_MAGIC, (MAGIC,))
    conn.execute(INSERT_SCHEMA_VERSION, (99,))
    conn.close()
    return path


BAD_FILES = [(_not_sqlite, NotADatabaseError), (_foreign, ForeignDatabaseError), (_newer, SchemaVersionError)]
BAD_OPENINGS: list[tuple[str, dict[str, Any], type[BrokerError]]] = [
    ("pool_size 0", {"pool_size": 0}, InvalidInputError),
    ("pool_size -2", {"pool_size": -2}, InvalidInputError),
    ("pool_size str", {"pool_size": "3"}, InvalidTypeError),
    ("busy timeout", {"config": {"BROKER_BUSY_TIMEOUT": "soon"}}, ConfigError),
    ("sync mode", {"config": {"BROKER_SYNC_MODE": "SOMETIMES"}}, ConfigError),
]


async def open_and_fail(path: Path, **kwargs: Any) -> None:
    async with trio_broker(path, **kwargs):
        raise AssertionError("opened")


@pytest.mark.parametrize(("make", "error"), BAD_FILES, ids=[m.__name__ for m, _ in BAD_FILES])
def test_a_bad_file_is_refused_untouched(tmp_path: Path, make: Callable[[Path], Path], error: type) -> None:
    path = make(tmp_path)
    before, before_threads = path.read_bytes(), worker_threads()
    with pytest.raises(error):
        run(open_and_fail, path)
    assert path.read_bytes() == before
    assert not Path(f"{path}-wal").exists()
    assert not threads_left(before_threads, timeout=2)


@pytest.mark.parametrize(("kwargs", "error"), [(k, e) for _, k, e in BAD_OPENINGS], ids=[n for n, _, _ in BAD_OPENINGS])
def test_bad_arguments_are_refused_before_the_file_exists(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, Any], error: type
) -> None:
    before = worker_threads()
    with pytest.raises(error) as info:
        run(partial(open_and_fail, db_path, **kwargs))
    if error is ConfigError:
        ((key, value),) = kwargs["config"].items()
        assert info.value.key == key  # type: ignore[attr-defined]
        monkeypatch.setenv(key, value)  # the same from the environment, with config=None
        with pytest.raises(ConfigError, match=key):
            run(open_and_fail, db_path)
    assert not db_path.exists()
    assert worker_threads() <= before
