"""Errors that are not the library's (issue 9, items 9-10), for every adapter.

Each bad input gets the library's typed error (a ``BrokerError``) with a
message that names the problem, before anything touches the file; never
Python's or a dependency's own error (``OverflowError``, a bare
``TypeError``, ``PoolClosedError``, a late ``AttributeError``).
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from aiosqlitepool.exceptions import PoolClosedError

from sansio_broker import (
    BrokerClosedError,
    BrokerError,
    ConfigError,
    DatabaseError,
    InvalidInputError,
    InvalidTypeError,
    Message,
    MessageIdError,
)
from sansio_broker.adapters.asyncio import AsyncBroker, AsyncQueue
from sansio_broker.adapters.blocking import Broker, Queue
from sansio_broker.adapters.trio import TrioBroker, TrioQueue
from tests.contract.contract_support import (
    QUIET,
    Facade,
    MakeBroker,
    Target,
    expect_error,
    listing,
    raised_by,
    snapshot,
)

QUEUE_CLASSES: dict[str, type] = {"blocking": Queue, "asyncio": AsyncQueue, "trio": TrioQueue}
BROKER_CLASSES: dict[str, type] = {"blocking": Broker, "asyncio": AsyncBroker, "trio": TrioBroker}


@pytest.fixture
def loaded(make_broker: MakeBroker) -> tuple[Facade, list[int]]:
    """A broker with pending messages, its WAL holding recent commits."""
    broker = make_broker()
    ids = broker.write_many("q", ["a", "b", "c"])
    broker.write("other", "x")
    return broker, ids


def refused(target: Target, broker: Facade, error: type[BrokerError], call: Callable[[], Any], match: str) -> None:
    """``call`` (or the first item of the stream it returns) raises ``error``
    matching ``match``; the file is untouched and the broker still works."""
    before = snapshot(target)
    with pytest.raises(error, match=match):
        result = call()
        if isinstance(result, Iterator):
            next(result)
    assert snapshot(target) == before
    broker.assert_idle()
    assert broker.peek("other") is not None


# ------------------------------------------------------- limits beyond SQLite
@pytest.mark.parametrize("limit", [2**63, 2**64 + 5, 10**40])
def test_limits_beyond_sqlite_integers_are_refused(
    loaded: tuple[Facade, list[int]], target: Target, limit: int
) -> None:
    broker, _ = loaded
    queue = broker.queue("q")
    for call in (
        lambda: broker.claim_many("q", limit),
        lambda: broker.peek_many("q", limit),
        lambda: broker.move_many("q", "dst", limit),
        lambda: queue.claim_many(limit),
        lambda: queue.peek_many(limit),
        lambda: queue.move_many("dst", limit),
        lambda: queue.read_many(limit),
    ):
        refused(target, broker, InvalidInputError, call, r"limit must be <= 2\*\*63-1")
    for call in (
        lambda: broker.stream("q", commit_interval=limit),
        lambda: broker.stream_read("q", all_messages=True, commit_interval=limit),
        lambda: queue.stream(commit_interval=limit),
        lambda: queue.messages(commit_interval=limit),
    ):
        refused(target, broker, InvalidInputError, call, r"commit_interval must be <= 2\*\*63-1")
    assert broker.peek_many("q", 10) == broker.peek_many("q", 2**63 - 1)


def test_largest_limit_is_accepted(loaded: tuple[Facade, list[int]]) -> None:
    broker, ids = loaded
    largest = 2**63 - 1
    assert broker.peek_many("q", largest) == [Message("a", ids[0]), Message("b", ids[1]), Message("c", ids[2])]
    assert broker.claim_many("q", largest) == [Message("a", ids[0]), Message("b", ids[1]), Message("c", ids[2])]
    more = broker.write_many("q", ["d", "e"])
    assert broker.move_many("q", "dst", largest) == [Message("d", more[0]), Message("e", more[1])]
    assert list(broker.stream("dst", commit_interval=largest)) == [Message("d", more[0]), Message("e", more[1])]
    broker.write("q", "f")
    assert broker.queue("q").read_many(largest) == ["f"]


# ---------------------------------------------------------------- write_many
@pytest.mark.parametrize("bodies", [None, 5, 1.5, object()], ids=["None", "int", "float", "object"])
def test_write_many_of_a_non_iterable_is_a_type_error(
    loaded: tuple[Facade, list[int]], target: Target, bodies: object
) -> None:
    broker, _ = loaded
    name = type(bodies).__name__
    for call in (lambda: broker.write_many("q", bodies), lambda: broker.queue("q").write_many(bodies)):
        refused(target, broker, InvalidTypeError, call, f"write_many takes an iterable of str bodies, not {name}")
    error = raised_by(lambda: broker.write_many("q", bodies))
    assert isinstance(error, TypeError)


def test_write_many_reads_a_generator_once(broker: Facade) -> None:
    ids = broker.write_many("q", (body for body in ["a", "b"]))
    assert broker.claim_many("q", 5) == [Message("a", ids[0]), Message("b", ids[1])]


# --------------------------------------------------------------------- paths
@pytest.mark.sqlite_only("SQLite paths that name no file")
@pytest.mark.parametrize("path", ["", ":memory:"])
def test_paths_that_name_no_file_are_refused_at_construction(
    make_broker: MakeBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    monkeypatch.chdir(tmp_path)
    error = expect_error(raised_by(lambda: make_broker(path)), InvalidInputError, "needs a database file on disk")
    assert not isinstance(error, InvalidTypeError)
    assert repr(path) in str(error)
    assert listing(tmp_path) == []


@pytest.mark.sqlite_only("the path's type is checked before any backend is chosen: once is enough")
@pytest.mark.parametrize("path", [None, 42, b"broker.db"], ids=["None", "int", "bytes"])
def test_path_of_the_wrong_type_is_a_type_error(
    adapter: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: object
) -> None:
    monkeypatch.chdir(tmp_path)
    # The constructor refuses it (make_broker(None) would mean "the default file").
    raised = raised_by(lambda: BROKER_CLASSES[adapter](path, config=QUIET))
    error = expect_error(raised, InvalidTypeError, "path must be a str or an os.PathLike of str")
    assert isinstance(error, TypeError)
    assert listing(tmp_path) == []


@pytest.mark.sqlite_only("an os.PathLike file path")
def test_pathlike_is_accepted(make_broker: MakeBroker, db_path: Path) -> None:
    broker = make_broker(db_path)
    assert broker.path == os.fspath(db_path)
    assert broker.write("q", "x") > 0


# aiosqlite stops the worker of a connection that failed to open without waiting
# for it; the worker's last call_soon_threadsafe can then meet the closed loop.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.sqlite_only("a file in a missing directory")
def test_missing_directory_error_names_the_path(make_broker: MakeBroker, tmp_path: Path) -> None:
    path = tmp_path / "missing" / "broker.db"
    error = expect_error(raised_by(lambda: make_broker(path)), DatabaseError)
    assert str(path) in str(error)
    assert f"the directory {tmp_path / 'missing'} does not exist" in str(error)
    assert listing(tmp_path) == []


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.sqlite_only("a directory given as the database file")
def test_directory_path_error_names_the_path(make_broker: MakeBroker, tmp_path: Path) -> None:
    error = expect_error(raised_by(lambda: make_broker(tmp_path)), DatabaseError)
    assert f"cannot open {tmp_path}" in str(error)
    assert "it is a directory" in str(error)
    assert listing(tmp_path) == []


# --------------------------------------------------------------- message IDs
ARABIC_INDIC = "".join(chr(0x0660 + d) for d in range(10))
FULLWIDTH = "".join(chr(0xFF10 + d) for d in range(10))
SPELLINGS: dict[str, Callable[[str], str]] = {
    "leading-space": lambda text: f" {text}",
    "trailing-space": lambda text: f"{text} ",
    "newline": lambda text: f"{text}\n",
    "tab": lambda text: f"\t{text}",
    "no-break-space": lambda text: f"\u00a0{text}",
    "arabic-indic": lambda text: text.translate(str.maketrans("0123456789", ARABIC_INDIC)),
    "fullwidth": lambda text: text.translate(str.maketrans("0123456789", FULLWIDTH)),
    "one-non-ascii-digit": lambda text: text[:-1] + ARABIC_INDIC[int(text[-1])],
    "plus-sign": lambda text: "+" + text[1:],
    "underscore": lambda text: text[:5] + "_" + text[6:],
}


@pytest.mark.parametrize("form", list(SPELLINGS))
def test_only_19_ascii_digits_spell_an_id(loaded: tuple[Facade, list[int]], target: Target, form: str) -> None:
    """Stricter than SimpleBroker 8.7.2, which strips spaces and folds non-ASCII digits."""
    broker, ids = loaded
    queue = broker.queue("q")
    spelled = SPELLINGS[form](f"{ids[1]:019d}")
    for call in (
        lambda: broker.claim("q", message_id=spelled),
        lambda: broker.peek("q", message_id=spelled),
        lambda: broker.move("q", "dst", message_id=spelled),
        lambda: broker.delete_messages("q", [spelled]),
        lambda: broker.read("q", exact_timestamp=spelled),
        lambda: queue.read(message_id=spelled),
        lambda: queue.peek(message_id=spelled),
        lambda: queue.delete(message_id=spelled),
    ):
        refused(target, broker, MessageIdError, call, "expected exactly 19 ASCII digits")
    assert broker.peek("q", message_id=f"{ids[1]:019d}") == Message("b", ids[1])
    assert broker.claim("q", message_id=str(ids[1])) == Message("b", ids[1])


# -------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("SYNC_MODE", "BROKER_SYNC_MODE"),  # SimpleBroker's unprefixed name
        ("BROKER_SYNCMODE", "BROKER_SYNC_MODE"),
        ("BROKER_sync_mode", "BROKER_SYNC_MODE"),
        ("BROKER_BUSY_TIMEOUT_MS", "BROKER_BUSY_TIMEOUT"),
        ("TIMEOUT", None),
    ],
)
def test_unknown_key_in_a_config_mapping_is_refused(
    make_broker: MakeBroker, target: Target, key: str, hint: str | None
) -> None:
    raised = raised_by(lambda: make_broker(config={"BROKER_AUTO_VACUUM": "0", key: "OFF"}))
    error = expect_error(raised, ConfigError, f"invalid configuration {key}='OFF'")
    assert error.key == key
    assert ("did you mean" in str(error)) == (hint is not None)
    if hint is not None:
        assert f"did you mean {hint}?" in str(error)
    assert not target.exists()


def test_simplebroker_keys_are_accepted_in_a_mapping(make_broker: MakeBroker, target: Target) -> None:
    """One mapping may configure both programs: SimpleBroker's other settings pass."""
    shared = {
        "BROKER_SYNC_MODE": "NORMAL",
        "BROKER_AUTO_VACUUM": "0",
        "BROKER_READ_COMMIT_INTERVAL": "5",
        "BROKER_DEFAULT_DB_NAME": "app.db",
        "BROKER_DEBUG": "1",
        "BROKER_LOGGING_ENABLED": "0",
        "BROKER_BACKEND": "sqlite",
        "BROKER_JITTER_FACTOR": "0.1",
    }
    broker = make_broker(config=shared)
    if target.backend == "sqlite":  # the PRAGMA BROKER_SYNC_MODE sets
        assert broker.pragma("synchronous") == [1]
    assert broker.write("q", "x") > 0


def test_environment_stays_lenient(make_broker: MakeBroker, target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_SYNCMODE", "bogus")
    monkeypatch.setenv("SYNC_MODE", "bogus")
    monkeypatch.setenv("BROKER_AUTO_VACUUM", "0")
    broker = make_broker(config=None)
    if target.backend == "sqlite":  # the PRAGMA of the default BROKER_SYNC_MODE
        assert broker.pragma("synchronous") == [2]
    assert broker.write("q", "x") > 0


INTEGER_KEYS = [
    "BROKER_BUSY_TIMEOUT",
    "BROKER_CACHE_MB",
    "BROKER_WAL_AUTOCHECKPOINT",
    "BROKER_MAX_MESSAGE_SIZE",
    "BROKER_AUTO_VACUUM",
    "BROKER_AUTO_VACUUM_INTERVAL",
    "BROKER_VACUUM_BATCH_SIZE",
    "BROKER_GENERATOR_BATCH_SIZE",
]


@pytest.mark.parametrize("key", INTEGER_KEYS)
@pytest.mark.parametrize("value", [2**63, str(2**63), "9" * 5000, -(2**63) - 1], ids=["int", "str", "huge", "low"])
def test_integer_config_beyond_sqlite_is_refused(make_broker: MakeBroker, target: Target, key: str, value: Any) -> None:
    error = expect_error(raised_by(lambda: make_broker(config={key: value})), ConfigError, key)
    assert error.key == key
    assert "an integer" in error.expected
    assert not target.exists()


@pytest.mark.parametrize(
    ("key", "largest"),
    [("BROKER_BUSY_TIMEOUT", 2**31 - 1), ("BROKER_WAL_AUTOCHECKPOINT", 2**31 - 1), ("BROKER_CACHE_MB", 2**21 - 1)],
)
@pytest.mark.sqlite_only("SQLite's PRAGMAs read these settings as 32-bit integers")
def test_32_bit_pragmas_are_bounded_where_sqlite_reads_them(
    make_broker: MakeBroker, db_path: Path, key: str, largest: int
) -> None:
    """SQLite parses these PRAGMAs as 32-bit ints: one past the bound is refused, the bound applies."""
    error = expect_error(raised_by(lambda: make_broker(config={key: largest + 1})), ConfigError, key)
    assert f"<= {largest}" in error.expected
    assert not db_path.exists()
    broker = make_broker(config={**QUIET, key: largest})
    pragma = {"BROKER_BUSY_TIMEOUT": "busy_timeout", "BROKER_WAL_AUTOCHECKPOINT": "wal_autocheckpoint"}
    if key in pragma:
        assert set(broker.pragma(pragma[key])) == {largest}
    else:
        assert set(broker.pragma("cache_size")) == {-largest * 1024}
    assert broker.write("q", "x") > 0


def test_vacuum_batch_size_at_the_bound_works(make_broker: MakeBroker) -> None:
    broker = make_broker(config={**QUIET, "BROKER_VACUUM_BATCH_SIZE": 2**63 - 1})
    broker.write_many("q", ["a", "b"])
    broker.claim_many("q", 2)
    assert broker.vacuum() == 2


# -------------------------------------------------------- queue constructors


@pytest.mark.parametrize("not_a_broker", ["x.db", Path("x.db"), None, 42], ids=["str", "Path", "None", "int"])
def test_queue_needs_a_broker_not_a_path(adapter: str, not_a_broker: object) -> None:
    target = not_a_broker
    queue_class, broker_class = QUEUE_CLASSES[adapter], BROKER_CLASSES[adapter]
    raised = raised_by(lambda: queue_class("tasks", target))
    error = expect_error(raised, InvalidTypeError, f"broker must be a broker object \\({broker_class.__name__}\\)")
    assert type(target).__name__ in str(error)
    assert isinstance(error, TypeError)
    if isinstance(target, str | Path):
        assert f"open one first (for example {broker_class.__name__}(path))" in str(error)


def test_queue_needs_its_own_adapters_broker(adapter: str, broker: Facade) -> None:
    assert broker.queue("q").target.broker is broker.target
    for other in QUEUE_CLASSES:
        if other != adapter:
            raised = raised_by(functools.partial(QUEUE_CLASSES[other], "q", broker.target))
            expect_error(raised, InvalidTypeError, f"not {type(broker.target).__name__}")


# ------------------------------------------------------- TrioBroker defaults
@pytest.mark.sqlite_only("the default target is the file .broker.db")
def test_trio_broker_has_the_same_defaults_as_async_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BROKER_AUTO_VACUUM", "0")
    monkeypatch.setenv("BROKER_MAX_MESSAGE_SIZE", "5")  # config=None reads the environment

    async def main() -> None:
        async with TrioBroker() as broker:
            assert broker.path == ".broker.db"
            assert broker.pool_size == 4
            assert broker.config.max_message_size == 5
        async with TrioBroker(tmp_path / "named.db") as broker:
            assert await broker.write("q", "x") > 0
            assert await TrioQueue("q", broker).read() == "x"

    trio.run(main)
    assert listing(tmp_path) == [".broker.db", "named.db"]


# ------------------------------------------- item 9: waiting for a connection
def test_asyncio_pool_waiter_gets_broker_closed_error(target: Target) -> None:
    """A task waiting for the only pooled connection when the broker closes."""

    async def main() -> tuple[BaseException | None, BaseException | None]:
        broker = AsyncBroker(target.location, pool_size=1, config=target.configure(QUIET))
        await broker.open()
        entered, release = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with broker.transaction():
                await broker.write("q", "held")
                entered.set()
                await release.wait()

        holder = asyncio.create_task(hold())
        await entered.wait()
        waiter = asyncio.create_task(broker.write("q", "waiting"))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not waiter.done()  # parked on the pool: the one connection is held
        closing = asyncio.create_task(broker.close())
        for _ in range(20):
            await asyncio.sleep(0)
        release.set()
        await asyncio.wait_for(closing, 10)
        done, _ = await asyncio.wait([waiter, holder], timeout=10)
        assert done == {waiter, holder}
        return waiter.exception(), holder.exception()

    waited, held = asyncio.run(main())
    assert waited is not None, "the waiting write succeeded after close()"
    expect_error(waited, BrokerClosedError, "closed")  # not aiosqlitepool's PoolClosedError
    # What the transaction holding the connection sees is close()'s business (item 6), not this test's.
    assert not isinstance(held, PoolClosedError), repr(held)


def test_trio_pool_waiter_gets_broker_closed_error(target: Target) -> None:
    async def main() -> tuple[BaseException | None, BaseException | None]:
        broker = TrioBroker(target.location, pool_size=1, config=target.configure(QUIET))
        await broker.open()
        entered, release = trio.Event(), trio.Event()
        errors: dict[str, BaseException | None] = {}

        async def hold() -> None:
            try:
                async with broker.transaction():
                    await broker.write("q", "held")
                    entered.set()
                    await release.wait()
                errors["holder"] = None
            except Exception as exc:  # close()'s business (item 6), not this test's
                errors["holder"] = exc

        async def wait() -> None:
            await entered.wait()
            try:
                await broker.write("q", "waiting")
                errors["waiter"] = None
            except BrokerError as exc:
                errors["waiter"] = exc

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(hold)
                nursery.start_soon(wait)
                await entered.wait()
                await trio.testing.wait_all_tasks_blocked()
                assert "waiter" not in errors  # parked: the one connection is held
                nursery.start_soon(broker.close)
                await trio.testing.wait_all_tasks_blocked()
                release.set()
        return errors["waiter"], errors.get("holder")

    waited, _ = trio.run(main)
    assert waited is not None, "the waiting write succeeded after close()"
    expect_error(waited, BrokerClosedError, "closed")


@pytest.mark.parametrize("message_ids", [None, 5, "1750000000000004096", 3.5])
def test_delete_messages_of_a_non_iterable_is_a_type_error(broker: Facade, message_ids: object) -> None:
    broker.write("q", "kept")
    error = raised_by(lambda: broker.delete_messages("q", message_ids))
    assert isinstance(error, InvalidTypeError), repr(error)
    assert "message_ids must be an iterable of IDs" in str(error)
    assert [m.body for m in broker.peek_many("q", 5)] == ["kept"]
