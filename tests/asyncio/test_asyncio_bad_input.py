"""Bad input raises a clear exception from sansio_broker.errors before anything touches the file."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from asyncio_support import idle_count, registry, run, settle, threads_left, worker_threads

from sansio_broker import (
    BrokerError,
    ForeignDatabaseError,
    IncompatibleDatabaseError,
    InvalidInputError,
    InvalidTypeError,
    MessageError,
    MessageIdError,
    NotADatabaseError,
    QueueNameError,
    SchemaVersionError,
)
from sansio_broker.adapters.asyncio import AsyncBroker, AsyncQueue, async_broker

MAX_SIZE = 12
CONFIG = {"BROKER_AUTO_VACUUM": "0", "BROKER_MAX_MESSAGE_SIZE": str(MAX_SIZE)}

Call = Callable[[AsyncBroker], Awaitable[Any] | AsyncIterator[Any] | Any]


def snapshot(path: Path) -> tuple[bytes, bytes | None]:
    wal = Path(f"{path}-wal")
    return path.read_bytes(), wal.read_bytes() if wal.exists() else None


async def _consume(result: Any) -> Any:
    """Await an awaitable, or pull the first item of an async iterator."""
    if hasattr(result, "__anext__"):
        return await result.__anext__()
    if hasattr(result, "__await__"):
        return await result
    return result


def check_refused(db_path: Path, calls: list[Call], error: type[BaseException], *, pool_intact: bool = True) -> None:
    """Each call raises ``error`` (a BrokerError), the file is untouched, and the broker still works."""

    async def main() -> None:
        async with async_broker(db_path, pool_size=2, config=CONFIG) as broker:
            await broker.write_many("q", ["a", "b", "c"])
            await broker.claim("q")
            await broker.write("other", "x")
            before = snapshot(db_path)
            for call in calls:
                with pytest.raises(error) as info:
                    await _consume(call(broker))
                assert isinstance(info.value, BrokerError)
                assert snapshot(db_path) == before, f"{call} changed the file"
            if pool_intact:
                await settle(broker, timeout=2)
                assert idle_count(broker) == len(registry(broker)), "a refused call kept a connection"
                assert await asyncio.wait_for(broker.peek("other"), 5) is not None

    run(main())


BAD_NAMES: list[Any] = [
    ("", QueueNameError),
    ("-leading", QueueNameError),
    (".leading", QueueNameError),
    ("x" * 513, QueueNameError),
    ("has space", QueueNameError),
    ("slash/", QueueNameError),
    ("émoji", QueueNameError),
    (None, InvalidTypeError),
    (42, InvalidTypeError),
    (b"bytes", InvalidTypeError),
]


def name_calls(name: Any) -> list[Call]:
    delete: list[Call] = [] if name is None else [lambda b: b.delete(name)]
    return [
        *delete,
        lambda b: b.write(name, "m"),
        lambda b: b.write_many(name, ["m"]),
        lambda b: b.claim(name),
        lambda b: b.claim(name, message_id=1),
        lambda b: b.claim_many(name, 1),
        lambda b: b.claim_all(name),
        lambda b: b.peek(name),
        lambda b: b.peek_many(name, 1),
        lambda b: b.move(name, "q"),
        lambda b: b.move("q", name),
        lambda b: b.move_many(name, "q", 1),
        lambda b: b.move_all("q", name),
        lambda b: b.delete_messages(name, []),
        lambda b: b.queue_stats(name),
        lambda b: b.queue_exists(name),
        lambda b: b.read(name),
        lambda b: b.read(name, peek=True, all_messages=True),
        lambda b: AsyncQueue(name, b),
    ]


@pytest.mark.parametrize(("name", "error"), BAD_NAMES)
def test_invalid_queue_names(db_path: Path, name: object, error: type) -> None:
    check_refused(db_path, name_calls(name), error)


def test_invalid_queue_names_are_value_or_type_errors(db_path: Path) -> None:
    check_refused(db_path, [lambda b: b.write("bad name", "m")], ValueError)
    check_refused(db_path, [lambda b: b.write(7, "m")], TypeError)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"bytes", InvalidTypeError),
        (None, InvalidTypeError),
        ("\ud800", MessageError),
        ("x" * (MAX_SIZE + 1), MessageError),
        ("é" * (MAX_SIZE // 2 + 1), MessageError),  # 7 chars, 14 bytes
        ("\U0001f600" * 4, MessageError),  # 4 chars, 16 bytes
    ],
)
def test_invalid_bodies(db_path: Path, body: Any, error: type) -> None:
    check_refused(
        db_path,
        [
            lambda b: b.write("q", body),
            lambda b: b.write_many("q", ["fine", body]),
            lambda b: b.broadcast(body),
            lambda b: AsyncQueue("q", b).write(body),
            lambda b: AsyncQueue("q", b).write_many(["fine", body]),
        ],
        error,
    )


def test_body_size_limit_counts_utf8_bytes(db_path: Path) -> None:
    async def main() -> None:
        async with async_broker(db_path, config=CONFIG) as broker:
            exactly = "é" * (MAX_SIZE // 2)
            await broker.write("sizes", exactly)
            await broker.write("sizes", "\U0001f600" * 3)
            assert await broker.read("sizes", all_messages=True) == [exactly, "\U0001f600" * 3]

    run(main())


BAD_IDS: list[tuple[object, type[BaseException]]] = [
    ("1" * 18, MessageIdError),
    ("9" * 19, MessageIdError),
    ("12345678901234567x9", MessageIdError),
    (-1, MessageIdError),
    (2**63, MessageIdError),
    (True, InvalidTypeError),
    (1.0, InvalidTypeError),
    (b"1234567890123456789", InvalidTypeError),
]


@pytest.mark.parametrize(("message_id", "error"), BAD_IDS)
def test_invalid_message_ids(db_path: Path, message_id: Any, error: type) -> None:
    check_refused(
        db_path,
        [
            lambda b: b.claim("q", message_id=message_id),
            lambda b: b.peek("q", message_id=message_id),
            lambda b: b.move("q", "dst", message_id=message_id),
            lambda b: b.delete_messages("q", [message_id]),
            lambda b: b.read("q", exact_timestamp=message_id),
            lambda b: b.read("q", peek=True, exact_timestamp=message_id),
            lambda b: AsyncQueue("q", b).read(message_id=message_id),
            lambda b: AsyncQueue("q", b).claim(message_id=message_id),
            lambda b: AsyncQueue("q", b).peek(message_id=message_id),
            lambda b: AsyncQueue("q", b).move_to("dst", message_id=message_id),
            lambda b: AsyncQueue("q", b).delete(message_id=message_id),
        ],
        error,
    )


@pytest.mark.parametrize(
    ("bound", "error"),
    [(-1, MessageIdError), (2**63, MessageIdError), (True, InvalidTypeError), ("5", InvalidTypeError)],
)
def test_invalid_bounds(db_path: Path, bound: Any, error: type) -> None:
    check_refused(
        db_path,
        [
            lambda b: b.claim("q", after_timestamp=bound),
            lambda b: b.claim_many("q", 2, before_timestamp=bound),
            lambda b: b.claim_all("q", after_timestamp=bound),
            lambda b: b.peek("q", before_timestamp=bound),
            lambda b: b.peek_many("q", 2, after_timestamp=bound),
            lambda b: b.move("q", "dst", after_timestamp=bound),
            lambda b: b.move_many("q", "dst", 2, before_timestamp=bound),
            lambda b: b.move_all("q", "dst", after_timestamp=bound),
            lambda b: b.read("q", after_timestamp=bound),
            lambda b: AsyncQueue("q", b).read(before_timestamp=bound),
        ],
        error,
    )


@pytest.mark.parametrize(
    ("limit", "error"),
    [(0, InvalidInputError), (-1, InvalidInputError), (True, InvalidTypeError), ("1", InvalidTypeError)],
)
def test_invalid_limits(db_path: Path, limit: Any, error: type) -> None:
    check_refused(
        db_path,
        [
            lambda b: b.claim_many("q", limit),
            lambda b: b.peek_many("q", limit),
            lambda b: b.move_many("q", "dst", limit),
            lambda b: AsyncQueue("q", b).move_many("dst", limit),
            lambda b: AsyncQueue("q", b).peek_many(limit),
        ],
        error,
    )


def test_invalid_combinations(db_path: Path) -> None:
    check_refused(
        db_path,
        [
            lambda b: b.claim("q", message_id=1, after_timestamp=0),
            lambda b: b.peek("q", message_id=1, before_timestamp=5),
            lambda b: b.move("q", "q"),
            lambda b: b.move_all("q", "q"),
            lambda b: b.read("q", all_messages=True, exact_timestamp=1),
        ],
        InvalidInputError,
    )
    check_refused(
        db_path,
        [
            lambda b: b.write_many("q", "abc"),
            lambda b: b.delete_messages("q", 5),
            lambda b: b.delete_messages("q", "1234567890123456789"),
            lambda b: b.broadcast("m", pattern=b"q*"),
        ],
        InvalidTypeError,
    )
    # One bad ID among good ones: nothing is deleted.
    check_refused(db_path, [lambda b: b.delete_messages("q", [1, -5])], MessageIdError)


STREAM_CALLS: list[tuple[Call, type[BaseException]]] = [
    (lambda b: b.stream("bad name"), QueueNameError),
    (lambda b: b.stream("q", commit_interval=0), InvalidInputError),
    (lambda b: b.stream("q", commit_interval=2.0), InvalidTypeError),
    (lambda b: b.stream("q", after_timestamp=-1), MessageIdError),
    (lambda b: b.stream("q", peek=True, before_timestamp=True), InvalidTypeError),
    (lambda b: b.stream_read("bad name"), QueueNameError),
    (lambda b: b.stream_read("q", all_messages=True, commit_interval=-3), InvalidInputError),
    (lambda b: AsyncQueue("q", b).stream(commit_interval=0), InvalidInputError),
    (lambda b: AsyncQueue("q", b).messages(commit_interval=0), InvalidInputError),
]


@pytest.mark.parametrize(("call", "error"), STREAM_CALLS)
def test_invalid_stream_arguments_raise_clear_errors(db_path: Path, call: Call, error: type) -> None:
    check_refused(db_path, [call], error, pool_intact=False)


def test_refused_stream_gives_its_connection_back(db_path: Path) -> None:
    async def main() -> None:
        async with async_broker(db_path, pool_size=1, config=CONFIG) as broker:
            with pytest.raises(QueueNameError):
                async for _ in broker.stream("bad name"):
                    pass
            # With pool_size=1 the next operation waits forever for the leaked connection.
            assert await asyncio.wait_for(broker.write("q", "after"), 3) > 0

    run(main())


# ----------------------------------------------------------- bad files
def _open_refused(path: Path, error: type[BaseException]) -> None:
    before_threads = worker_threads()
    before = path.read_bytes()

    async def main() -> None:
        async with async_broker(path):
            raise AssertionError("a bad file was opened")

    with pytest.raises(error):
        run(main())
    assert path.read_bytes() == before
    assert not Path(f"{path}-wal").exists()
    assert not threads_left(before_threads)


def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is not a database, just some text\n" * 200)
    _open_refused(path, NotADatabaseError)


def test_a_foreign_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users (name) VALUES ('ada')")
    conn.close()
    _open_refused(path, ForeignDatabaseError)


def test_a_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    import sqlite3

    from support.contract import INSERT_MAGIC, INSERT_SCHEMA_VERSION, MAGIC, V6_DDL

    path = tmp_path / "future.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in V6_DDL:
        conn.execute(statement)
    conn.execute(INSERT_MAGIC, (MAGIC,))
    conn.execute(INSERT_SCHEMA_VERSION, (99,))
    conn.close()
    _open_refused(path, SchemaVersionError)
    assert issubclass(SchemaVersionError, IncompatibleDatabaseError)


# aiosqlite stops the worker of a connection that failed to open without waiting
# for it; the worker's last call_soon_threadsafe can then meet the closed loop.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_directory_path_is_refused(tmp_path: Path) -> None:
    async def main() -> None:
        async with async_broker(tmp_path):
            raise AssertionError("opened a directory")

    before = worker_threads()
    with pytest.raises(BrokerError):
        run(main())
    assert os.listdir(tmp_path) == []
    assert not threads_left(before)
