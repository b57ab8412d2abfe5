"""One synchronous facade over every adapter, so each contract test is written once.

``open_facade(adapter, path, config)`` gives an object with the blocking
``Broker``'s method names for ``"blocking"``, ``"asyncio"`` and ``"trio"``:

- blocking: the calls go straight to a :class:`Broker`.
- asyncio / trio: the broker lives in an event loop in a helper thread
  (``asyncio.run`` / ``trio.run``). One long-lived task in that loop, the
  *runner*, opens the broker (``async_broker`` / ``trio_broker``) and then
  executes the calls submitted from the test one at a time (a thread-safe
  hand-off: ``call_soon_threadsafe`` into an ``asyncio.Queue``, or a trio
  token's ``run_sync_soon`` into a memory channel). Every call therefore
  runs in the same task, as every call of a blocking test runs in the same
  thread: ``with facade.transaction():`` and an open stream batch keep their
  per-task meaning. Stream iterators are plain generators whose items are
  ``__anext__`` calls run by the runner; closing the generator (``close()``,
  ``break`` out of a ``for`` over it, dropping it) runs ``aclose()`` there.

A hang in the adapter fails the call after :data:`CALL_TIMEOUT` seconds
instead of hanging the run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import inspect
import math
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from sansio_broker import Config, Message
from sansio_broker.adapters._pooled import left_open
from tests.support import internals, threads
from tests.support.contract import MAGIC, V6_DDL
from tests.support.rawdb import connect, query
from tests.support.rawdb import rows as _raw_rows

ADAPTERS = ("blocking", "asyncio", "trio")

# Settings that keep tests independent of automatic vacuum unless they test it.
QUIET = {"BROKER_AUTO_VACUUM": "0"}
# Generous "does not hang" bound for one call through the bridge.
CALL_TIMEOUT = 30.0

# The thread names of everything an adapter or the bridge starts; none may outlive a test.
BRIDGE_THREAD_PREFIX = "contract-bridge-"
ADAPTER_THREAD_MARKERS = (*threads.ADAPTER_THREAD_MARKERS, BRIDGE_THREAD_PREFIX)

# What the facade forwards, with the blocking adapter's names and semantics.
BROKER_CALLS = frozenset(
    {
        "write",
        "write_many",
        "broadcast",
        "claim",
        "claim_many",
        "claim_all",
        "peek",
        "peek_many",
        "move",
        "move_many",
        "move_all",
        "delete",
        "delete_messages",
        "list_queues",
        "get_queue_stats",
        "queue_stats",
        "queue_exists",
        "vacuum",
        "read",
        "get",
        "add_alias",
        "remove_alias",
        "list_aliases",
        "resolve_queue",
        "rename_queue",
        "insert_messages",
        "load",
        "find_message_ids",
        "has_pending",
        "status",
        "return_messages",
    }
)
BROKER_STREAMS = frozenset({"stream", "stream_read", "dump"})
QUEUE_CALLS = frozenset(
    {
        "write",
        "write_many",
        "read",
        "read_all",
        "read_many",
        "claim",
        "claim_many",
        "peek",
        "peek_many",
        "size",
        "stats",
        "exists",
        "move_to",
        "move_many",
        "move_all",
        "delete",
        "find_message_ids",
        "has_pending",
        "insert_messages",
    }
)
QUEUE_STREAMS = frozenset({"stream", "messages"})

_DEFAULT: Any = object()


# ================================================================ known bugs
class ErrorInExceptionGroup(AssertionError):
    """The expected error arrived, but wrapped in an ExceptionGroup."""


# A known product bug: mark the tests that meet it with ``@known_bugs(adapter=(reason, raises))``,
# "bug: ..." as the reason and the failure the bug causes as ``raises``, so that the
# test xfails (strictly) for that adapter only, and only by that failure.


def known_bugs(**bugs: tuple[str, type[BaseException]]) -> pytest.MarkDecorator:
    """Parametrize ``adapter`` over every adapter, ``adapter=(reason, raises)`` a strict xfail."""
    params = []
    for a in ADAPTERS:
        if a in bugs:
            reason, raises = bugs[a]
            params.append(pytest.param(a, marks=pytest.mark.xfail(strict=True, reason=reason, raises=raises)))
        else:
            params.append(a)
    return pytest.mark.parametrize("adapter", params)


def raised_by(call: Callable[[], Any]) -> BaseException:
    """The exception ``call()`` raises (failing if it returns)."""
    try:
        call()
    except BaseException as exc:
        return exc
    raise AssertionError(f"{call} raised nothing")


def expect_error(exc: BaseException, error: type[BaseException], match: str | None = None) -> Any:
    """``exc`` is an ``error`` (whose text matches ``match``); returned.

    An ExceptionGroup holding only such errors fails with :class:`ErrorInExceptionGroup`.
    """
    leaves = [exc]
    while any(isinstance(e, BaseExceptionGroup) for e in leaves):
        leaves = [leaf for e in leaves for leaf in (e.exceptions if isinstance(e, BaseExceptionGroup) else [e])]
    for leaf in leaves:
        if not isinstance(leaf, error):
            raise AssertionError(f"expected {error.__name__}, got {leaf!r}") from exc
        if match is not None and not re.search(match, str(leaf)):
            raise AssertionError(f"{str(leaf)!r} does not match {match!r}") from exc
    if leaves != [exc]:
        raise ErrorInExceptionGroup(f"{error.__name__} arrived wrapped: {exc!r}") from exc
    return exc


# ===================================================================== facades
class Facade:
    """A broker of any adapter, driven by plain synchronous calls.

    Every name in :data:`BROKER_CALLS` and :data:`BROKER_STREAMS` is
    forwarded with its arguments unchanged (source and destination of the
    moves are passed positionally: the adapters name them differently).
    """

    adapter: str
    target: Any  # the adapter's own broker object

    def __getattr__(self, name: str) -> Any:
        if name in BROKER_CALLS:
            return functools.partial(self._invoke, self.target, name)
        if name in BROKER_STREAMS:
            return functools.partial(self._stream, self.target, name)
        raise AttributeError(f"the contract facade has no {name!r}")

    @property
    def path(self) -> str:
        return self.target.path  # type: ignore[no-any-return]

    @property
    def config(self) -> Any:
        return self.target.config

    def queue(self, name: Any) -> QueueFacade:
        """The adapter's queue class on this broker (``Queue``, ``AsyncQueue``, ``TrioQueue``)."""
        return QueueFacade(self, self._queue_class()(name, self.target))

    # --- what each adapter provides -------------------------------------------
    def _queue_class(self) -> Callable[[Any, Any], Any]:
        raise NotImplementedError

    def _invoke(self, target: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def _stream(self, target: Any, name: str, *args: Any, **kwargs: Any) -> Iterator[Any]:
        raise NotImplementedError

    def transaction(self) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        """The adapter's own close (the loop of an async adapter keeps running)."""
        raise NotImplementedError

    def shutdown(self) -> None:
        """Close, and stop every thread the facade started."""
        raise NotImplementedError

    def sqlite_connections(self) -> list[Any]:
        """Every sqlite3 connection the adapter has open now."""
        raise NotImplementedError

    def pragma(self, name: str) -> list[Any]:
        """``PRAGMA name`` on every connection the adapter has open."""
        raise NotImplementedError

    def assert_idle(self) -> None:
        """Nothing held: no transaction or stream batch open, every connection back in its pool."""
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    def assert_clean(self) -> None:
        """Idle, and (unless closed) still working: a probe message goes in and out."""
        self.assert_idle()
        if not self.closed:
            probe = self.write("_probe", "p")
            assert self.claim("_probe", message_id=probe) == Message("p", probe)


class QueueFacade:
    """The adapter's queue object, with synchronous calls."""

    def __init__(self, owner: Facade, target: Any) -> None:
        self.owner = owner
        self.broker = owner
        self.target = target
        self.name: str = target.name
        assert target.broker is owner.target

    def __getattr__(self, name: str) -> Any:
        if name in QUEUE_CALLS:
            return functools.partial(self.owner._invoke, self.target, name)
        if name in QUEUE_STREAMS:
            return functools.partial(self.owner._stream, self.target, name)
        raise AttributeError(f"the contract queue facade has no {name!r}")


class BlockingFacade(Facade):
    adapter = "blocking"

    def __init__(self, path: str | os.PathLike[str], config: Any) -> None:
        from sansio_broker.adapters.blocking import Broker

        self.target = Broker(path, config=config)

    def _queue_class(self) -> Callable[[Any, Any], Any]:
        from sansio_broker.adapters.blocking import Queue

        return Queue

    def _invoke(self, target: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(target, name)(*args, **kwargs)
        finally:  # housekeeping (auto-vacuum) runs in the background: tests see its effect
            self.target.wait_background()

    def _stream(self, target: Any, name: str, *args: Any, **kwargs: Any) -> Iterator[Any]:
        return getattr(target, name)(*args, **kwargs)  # type: ignore[no-any-return]

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self.target.transaction() as entered:
            yield self if entered is self.target else entered

    def close(self) -> None:
        self.target.close()

    def shutdown(self) -> None:
        self.target.close()

    def sqlite_connections(self) -> list[Any]:
        return internals.sqlite_connections(self.target)

    def pragma(self, name: str) -> list[Any]:
        return [c.execute(f"PRAGMA {name}").fetchone()[0] for c in self.sqlite_connections()]

    @property
    def closed(self) -> bool:
        return internals.unusable(self.target)

    def assert_idle(self) -> None:
        for connection in internals.open_connections(self.target):
            assert not left_open(connection), "a transaction or stream batch is still open"


class _Stop:
    """The runner's signal to leave: close the broker and end the loop."""


class AsyncFacade(Facade):
    """An async adapter's broker behind a runner task in a loop in a helper thread."""

    def __init__(self, path: str | os.PathLike[str], config: Any) -> None:
        self._submit: Callable[[Any], None] | None = None
        self._ready: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._close_error: BaseException | None = None
        self._stopped = False
        self._thread = threading.Thread(
            target=self._main, args=(path, config), name=f"{BRIDGE_THREAD_PREFIX}{self.adapter}", daemon=True
        )
        self._thread.start()
        try:
            self.target = self._ready.result(CALL_TIMEOUT)
        except BaseException:
            self._stopped = True
            self._thread.join(CALL_TIMEOUT)
            raise

    # --- the loop thread ---------------------------------------------------------
    def _main(self, path: str | os.PathLike[str], config: Any) -> None:
        raise NotImplementedError

    def _opener(self, path: str | os.PathLike[str], config: Any) -> Any:
        raise NotImplementedError

    async def _serve(self, path: str | os.PathLike[str], config: Any, receive: Callable[[], Awaitable[Any]]) -> None:
        """The runner: open the broker, run each submitted call to its end, close."""
        try:
            async with self._opener(path, config) as broker:
                self._ready.set_result(broker)
                while not isinstance(job := await receive(), _Stop):
                    function, future = job
                    try:
                        result = function()
                        if inspect.iscoroutine(result):
                            result = await result
                    except BaseException as exc:  # handed to the caller, whatever it is
                        future.set_exception(exc)
                    else:
                        future.set_result(result)
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            else:
                self._close_error = exc

    # --- the test's thread ---------------------------------------------------------
    def _call(self, function: Callable[[], Any]) -> Any:
        """Run ``function()`` in the runner task (and await it there if it returns a coroutine)."""
        if self._stopped or self._submit is None:
            raise RuntimeError("the contract facade was shut down")
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._submit((function, future))
        try:
            return future.result(CALL_TIMEOUT)
        except concurrent.futures.TimeoutError:
            raise AssertionError(f"a call through the {self.adapter} bridge hung for {CALL_TIMEOUT} s") from None

    def _invoke(self, target: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return self._call(lambda: getattr(target, name)(*args, **kwargs))
        finally:  # housekeeping (auto-vacuum) runs in the background: tests see its effect
            if not self.closed:
                self._call(self.target.wait_background)

    def _stream(self, target: Any, name: str, *args: Any, **kwargs: Any) -> Iterator[Any]:
        source = self._call(lambda: getattr(target, name)(*args, **kwargs))
        return self._iterate(source)

    def _iterate(self, source: Any) -> Iterator[Any]:
        try:
            while True:
                more, item = self._call(lambda: _next_item(source))
                if not more:
                    return
                yield item
        finally:
            if not self._stopped:
                self._call(source.aclose)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        manager = self._call(self.target.transaction)
        entered = self._call(manager.__aenter__)
        try:
            yield self if entered is self.target else entered
        except BaseException as exc:
            raised = exc
            if not self._call(lambda: manager.__aexit__(type(raised), raised, raised.__traceback__)):
                raise
        else:
            self._call(lambda: manager.__aexit__(None, None, None))

    def close(self) -> None:
        self._call(self.target.close)

    def shutdown(self) -> None:
        if self._stopped:
            return
        assert self._submit is not None
        self._submit(_Stop())
        self._stopped = True
        self._thread.join(CALL_TIMEOUT)
        assert not self._thread.is_alive(), f"the {self.adapter} bridge did not stop"
        if self._close_error is not None:
            raise self._close_error

    def pragma(self, name: str) -> list[Any]:
        return self._call(lambda: [c.execute(f"PRAGMA {name}").fetchone()[0] for c in self.sqlite_connections()])

    @property
    def closed(self) -> bool:
        return self._stopped or internals.is_closed(self.target)

    def assert_idle(self) -> None:
        self._call(self._settle_and_check)

    async def _settle_and_check(self) -> None:
        await self._settle()
        self._check_idle()

    async def _settle(self) -> None:
        raise NotImplementedError

    def _check_idle(self) -> None:
        raise NotImplementedError


async def _next_item(source: Any) -> tuple[bool, Any]:
    try:
        return True, await source.__anext__()
    except StopAsyncIteration:
        return False, None


class AsyncioFacade(AsyncFacade):
    adapter = "asyncio"

    def _main(self, path: str | os.PathLike[str], config: Any) -> None:
        async def main() -> None:
            loop = asyncio.get_running_loop()
            jobs: asyncio.Queue[Any] = asyncio.Queue()
            self._submit = lambda job: loop.call_soon_threadsafe(jobs.put_nowait, job)
            await self._serve(path, config, jobs.get)

        asyncio.run(main())

    def _opener(self, path: str | os.PathLike[str], config: Any) -> Any:
        from sansio_broker.adapters.asyncio import async_broker

        return async_broker(path, config=config)

    def _queue_class(self) -> Callable[[Any, Any], Any]:
        from sansio_broker.adapters.asyncio import AsyncQueue

        return AsyncQueue

    def sqlite_connections(self) -> list[Any]:
        return internals.sqlite_connections(self.target)

    def _pooled(self) -> list[Any]:
        return internals.open_connections(self.target)

    def _all_idle(self) -> bool:
        broker = self.target
        return not internals.cleaning_up(broker) and internals.idle_connections(broker) == len(self._pooled())

    async def _settle(self) -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            for _ in range(3):  # let scheduled callbacks and background clean-up start
                await asyncio.sleep(0)
            if self._all_idle():
                return
            await asyncio.sleep(0.005)

    def _check_idle(self) -> None:
        broker = self.target
        assert not internals.held_by_task(broker), internals.held_by_task(broker)
        assert not any(left_open(c) for c in self._pooled()), "a transaction or stream batch is still open"
        assert self._all_idle(), "a connection never went back to the pool"


class TrioFacade(AsyncFacade):
    adapter = "trio"

    def _main(self, path: str | os.PathLike[str], config: Any) -> None:
        import trio

        async def main() -> None:
            send, receive = trio.open_memory_channel[Any](math.inf)
            token = trio.lowlevel.current_trio_token()
            self._submit = lambda job: token.run_sync_soon(send.send_nowait, job)
            await self._serve(path, config, receive.receive)

        trio.run(main)

    def _opener(self, path: str | os.PathLike[str], config: Any) -> Any:
        from sansio_broker.adapters.trio import trio_broker

        return trio_broker(path, config=config)

    def _queue_class(self) -> Callable[[Any, Any], Any]:
        from sansio_broker.adapters.trio import TrioQueue

        return TrioQueue

    def sqlite_connections(self) -> list[Any]:
        return internals.sqlite_connections(self.target)

    def _all_idle(self) -> bool:
        broker = self.target
        return not internals.cleaning_up(broker) and internals.idle_connections(broker) == len(
            internals.open_connections(broker)
        )

    async def _settle(self) -> None:
        import trio

        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            for _ in range(3):  # let run_sync_soon callbacks and background clean-up start
                await trio.sleep(0)
            if self._all_idle():
                return
            await trio.sleep(0.005)

    def _check_idle(self) -> None:
        broker = self.target
        assert not internals.held_by_task(broker), internals.held_by_task(broker)
        assert not any(left_open(c) for c in internals.open_connections(broker)), (
            "a transaction or stream batch is still open"
        )
        assert self._all_idle(), "a connection never went back to the pool"


MakeBroker = Callable[..., Facade]
"""The ``make_broker`` fixture: ``make_broker(path=db_path, config=QUIET)``."""

FACADES: dict[str, type[Facade]] = {"blocking": BlockingFacade, "asyncio": AsyncioFacade, "trio": TrioFacade}


def new_facade(adapter: str, path: Target | str | os.PathLike[str], config: Any = _DEFAULT) -> Facade:
    """A broker of ``adapter`` on ``path`` (a :class:`Target` or a SQLite path);
    ``config=None`` reads ``BROKER_*`` from the environment."""
    config = QUIET if config is _DEFAULT else config
    if not isinstance(path, Target):
        return FACADES[adapter](path, config)  # type: ignore[call-arg]
    with path.environment(config):
        return FACADES[adapter](path.location, path.configure(config))  # type: ignore[call-arg]


@contextmanager
def open_facade(adapter: str, path: Target | str | os.PathLike[str], config: Any = _DEFAULT) -> Iterator[Facade]:
    facade = new_facade(adapter, path, config)
    try:
        yield facade
    finally:
        facade.shutdown()


# ===================================================================== threads
def adapter_threads() -> set[threading.Thread]:
    """Threads started by an adapter or by the bridge that are alive now."""
    return threads.adapter_threads(ADAPTER_THREAD_MARKERS)


def threads_left(before: set[threading.Thread], timeout: float = 5.0) -> set[threading.Thread]:
    """Such threads started since ``before`` still alive after ``timeout`` seconds."""
    return threads.threads_left(before, timeout, ADAPTER_THREAD_MARKERS)


# ================================================================ file helpers
def bodies(messages: list[Message]) -> list[str]:
    return [m.body for m in messages]


def claimed_flags(path: Target | str | os.PathLike[str], queue: str = "q") -> list[int]:
    """The ``claimed`` column of one queue as stored, in ID order."""
    return [claimed for *_, claimed in rows(path, queue)]


def snapshot(path: Target | str | os.PathLike[str]) -> Any:
    """Bytes of the database file and its WAL (``None`` when the WAL does not exist);
    of a PostgreSQL target, every stored row."""
    if isinstance(path, PostgresTarget):
        return path.snapshot()
    path = Path(path.location if isinstance(path, Target) else path)
    wal = Path(f"{path}-wal")
    return {
        "db": path.read_bytes() if path.exists() else None,
        "wal": wal.read_bytes() if wal.exists() else None,
    }


def listing(directory: str | os.PathLike[str]) -> list[str]:
    return sorted(os.listdir(directory))


def normalized_schema(path: str | os.PathLike[str]) -> dict[tuple[str, str], str | None]:
    """``(type, name) -> sql`` from sqlite_master, whitespace collapsed."""
    with connect(path) as conn:
        found = conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
    return {(t, n): (None if s is None else re.sub(r"\s+", " ", s).strip()) for t, n, s in found}


def build_db(
    path: str | os.PathLike[str],
    ddl: tuple[str, ...] = V6_DDL,
    *,
    magic: str | None = MAGIC,
    schema_version: object = 6,
    last_ts: int | None = None,
    messages: tuple[tuple[str, str, int, int], ...] = (),
    journal_mode: str | None = None,
) -> None:
    """Create a database file as another program would, with the sqlite3 module."""
    with connect(path) as conn:
        if journal_mode is not None:
            conn.execute(f"PRAGMA journal_mode={journal_mode}")
        for statement in ddl:
            conn.execute(statement)
        if magic is not None:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('magic', ?)", (magic,))
        if schema_version is not None:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (schema_version,))
        if last_ts is not None:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'last_ts'", (last_ts,))
        for queue, body, ts, claimed in messages:
            conn.execute(
                "INSERT INTO messages (queue, body, ts, claimed) VALUES (?, ?, ?, ?)", (queue, body, ts, claimed)
            )


# ===================================================================== targets
class Target:
    """Where a contract test's broker lives: a SQLite file or a PostgreSQL schema.

    The same test body runs on either: it opens brokers with
    ``make_broker()`` / ``new_facade(adapter, target)`` and looks at what is
    stored with :func:`rows`, :func:`meta`, :func:`stored_aliases` and
    :func:`snapshot`, read with the backend's own client (sqlite3, psycopg),
    never through the broker under test.
    """

    backend: str
    location: str | os.PathLike[str]  # what the broker is opened on

    def configure(self, config: Any) -> Any:
        """``config`` as this target needs it (PostgreSQL: with the test's schema)."""
        return config

    @contextmanager
    def environment(self, config: Any) -> Iterator[None]:
        """While a broker opens: what ``config=None`` must find in the environment."""
        yield

    def rows(self, queue: str | None = None) -> list[tuple[str, str, int, int]]:
        """Every stored row ``(queue, body, ts, claimed)`` in ID order, of one queue or all."""
        raise NotImplementedError

    def meta(self) -> dict[str, Any]:
        """``last_ts``, ``alias_version``, ``magic``, ``schema_version`` (SQLite: every meta key)."""
        raise NotImplementedError

    def aliases(self) -> list[tuple[str, str]]:
        """Stored ``(alias, target)`` rows, by alias."""
        raise NotImplementedError

    def exists(self) -> bool:
        """Whether the broker's storage exists (the file; the schema)."""
        raise NotImplementedError

    def snapshot(self) -> Any:
        """Everything stored, to compare before and after a call that must change nothing."""
        raise NotImplementedError

    def storage_size(self) -> int:
        """Bytes the storage takes (SQLite: page_count * page_size; PostgreSQL, as
        simplebroker-pg counts: the total size of the schema's three tables)."""
        raise NotImplementedError

    def insert_row(self, queue: str, body: str, ts: int, claimed: int = 0) -> None:
        """A row written by another program, past the broker (no ID allocation, no notification)."""
        raise NotImplementedError

    def set_last_ts(self, value: int) -> None:
        """``meta.last_ts`` set by another program."""
        raise NotImplementedError


class SqliteTarget(Target):
    backend = "sqlite"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.location = self.path = Path(path)

    def __repr__(self) -> str:
        return f"SqliteTarget({str(self.path)!r})"

    def rows(self, queue: str | None = None) -> list[tuple[str, str, int, int]]:
        return rows(self.path, queue)

    def meta(self) -> dict[str, Any]:
        return _raw_meta(self.path)

    def aliases(self) -> list[tuple[str, str]]:
        return query(self.path, "SELECT alias, target FROM queue_aliases ORDER BY alias")  # type: ignore[return-value]

    def exists(self) -> bool:
        return self.path.exists()

    def snapshot(self) -> Any:
        return snapshot(self.path)

    def storage_size(self) -> int:
        ((pages, size),) = query(self.path, "SELECT * FROM pragma_page_count(), pragma_page_size()")
        return int(pages * size)

    def insert_row(self, queue: str, body: str, ts: int, claimed: int = 0) -> None:
        with connect(self.path) as conn:
            conn.execute(
                "INSERT INTO messages (queue, body, ts, claimed) VALUES (?, ?, ?, ?)", (queue, body, ts, claimed)
            )

    def set_last_ts(self, value: int) -> None:
        with connect(self.path) as conn:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'last_ts'", (value,))


class PostgresTarget(Target):
    """A schema of the test's own on the shared server (created by the broker, dropped after the test)."""

    backend = "postgres"

    def __init__(self, dsn: str, schema: str) -> None:
        self.location = self.dsn = dsn
        self.schema = schema

    def __repr__(self) -> str:
        return f"PostgresTarget(schema={self.schema!r})"

    def configure(self, config: Any) -> Any:
        if config is None:
            return None  # read from the environment, where environment() put the schema
        if isinstance(config, Config):
            return dataclasses.replace(config, backend_schema=self.schema)
        if isinstance(config, Mapping) and "BROKER_BACKEND_SCHEMA" not in config:
            return {**config, "BROKER_BACKEND_SCHEMA": self.schema}
        return config  # a bad config, or one naming a schema: the test's own

    @contextmanager
    def environment(self, config: Any) -> Iterator[None]:
        if config is not None or "BROKER_BACKEND_SCHEMA" in os.environ:
            yield
            return
        os.environ["BROKER_BACKEND_SCHEMA"] = self.schema
        try:
            yield
        finally:
            os.environ.pop("BROKER_BACKEND_SCHEMA", None)

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        from tests.support import pgserver

        return pgserver.admin_query(self.dsn, sql.replace("{s}", f'"{self.schema}"'), params)

    def rows(self, queue: str | None = None) -> list[tuple[str, str, int, int]]:
        select = "SELECT queue, body, ts, claimed::int FROM {s}.messages"
        if queue is None:
            return self._query(f"{select} ORDER BY ts")  # type: ignore[return-value]
        return self._query(f"{select} WHERE queue = %s ORDER BY ts", (queue,))  # type: ignore[return-value]

    def meta(self) -> dict[str, Any]:
        ((last_ts, alias_version, magic, version),) = self._query(
            "SELECT last_ts, alias_version, magic, schema_version FROM {s}.meta"
        )
        return {"last_ts": last_ts, "alias_version": alias_version, "magic": magic, "schema_version": version}

    def aliases(self) -> list[tuple[str, str]]:
        return self._query("SELECT alias, target FROM {s}.aliases ORDER BY alias")  # type: ignore[return-value]

    def exists(self) -> bool:
        return bool(self._query("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)))

    def snapshot(self) -> Any:
        if not self._query("SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = 'meta'", (self.schema,)):
            return {"schema": self.exists()}
        return {"messages": self.rows(), "meta": self.meta(), "aliases": self.aliases()}

    def storage_size(self) -> int:
        ((size,),) = self._query(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class AS c"
            " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname IN ('messages', 'meta', 'aliases')",
            (self.schema,),
        )
        return int(size)

    def insert_row(self, queue: str, body: str, ts: int, claimed: int = 0) -> None:
        self._query(
            "INSERT INTO {s}.messages (queue, body, ts, claimed) VALUES (%s, %s, %s, %s)",
            (queue, body, ts, bool(claimed)),
        )

    def set_last_ts(self, value: int) -> None:
        self._query("UPDATE {s}.meta SET last_ts = %s", (value,))


def _raw_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    return dict(query(path, "SELECT key, value FROM meta"))


def rows(where: Target | str | os.PathLike[str], queue: str | None = None) -> list[tuple[str, str, int, int]]:
    """Every stored row ``(queue, body, ts, claimed)`` in ID order, of one queue or all."""
    if isinstance(where, Target):
        return where.rows(queue)
    return _raw_rows(where, queue)


def meta(where: Target | str | os.PathLike[str]) -> dict[str, Any]:
    """The stored meta values by key."""
    return where.meta() if isinstance(where, Target) else _raw_meta(where)


def stored_aliases(where: Target) -> list[tuple[str, str]]:
    return where.aliases()


def alias_version(where: Target) -> int:
    return int(where.meta()["alias_version"])
