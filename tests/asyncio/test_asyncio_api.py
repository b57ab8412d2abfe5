"""The asyncio adapter's surface: opening, configuration, the pool bound, every operation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from asyncio_support import QUIET, registry, run, worker_threads
from support.rawdb import meta, query, rows

from sansio_broker import BrokerClosedError, ConfigError, InvalidInputError, InvalidTypeError, Message, MessageError
from sansio_broker.adapters.asyncio import AsyncBroker, AsyncQueue, async_broker


# ------------------------------------------------------------------ opening
def test_async_broker_yields_an_open_async_broker(db_path: Path) -> None:
    async def main() -> None:
        async with async_broker(db_path) as broker:
            assert isinstance(broker, AsyncBroker)
            assert broker.pool_size == 10
            # Opened eagerly: the file exists with the v6 schema before any operation.
            assert meta(db_path)["schema_version"] == 6
            assert await broker.list_queues() == []

    run(main())


def test_async_broker_accepts_a_str_path(tmp_path: Path) -> None:
    async def main() -> None:
        async with async_broker(str(tmp_path / "s.db"), pool_size=2) as broker:
            assert await broker.write("q", "x") > 0

    run(main())
    assert [b for _, b, _, _ in rows(tmp_path / "s.db")] == ["x"]


@pytest.mark.parametrize("pool_size", [1, 3])
def test_pool_size_bounds_the_connections_opened_under_load(db_path: Path, pool_size: int) -> None:
    seen: list[int] = []

    async def main() -> None:
        async with async_broker(db_path, pool_size=pool_size, config=QUIET) as broker:
            done = asyncio.Event()

            async def watch() -> None:
                while not done.is_set():
                    seen.append(len(registry(broker)))
                    await asyncio.sleep(0)

            async def work(n: int) -> None:
                for i in range(4):
                    await broker.write("q", f"{n}-{i}")
                    await broker.peek("q")
                    await broker.claim("q")
                    seen.append(len(registry(broker)))

            watcher = asyncio.create_task(watch())
            await asyncio.gather(*(work(n) for n in range(50)))
            done.set()
            await watcher
            assert await broker.queue_stats("q") == (("q", 0, 200))

    run(main())
    assert max(seen) <= pool_size
    # The bound is reached: the pool really is used, not one connection for all.
    assert max(seen) == pool_size


def test_config_none_reads_broker_variables_from_the_environment(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKER_MAX_MESSAGE_SIZE", "8")
    monkeypatch.setenv("BROKER_BUSY_TIMEOUT", "1234")

    async def main() -> None:
        async with async_broker(db_path) as broker:
            assert broker.config.max_message_size == 8
            await broker.write("q", "12345678")
            with pytest.raises(MessageError):
                await broker.write("q", "123456789")
            (connection,) = registry(broker)
            busy = connection.raw_connection.driver.connection.execute("PRAGMA busy_timeout").fetchone()
            assert busy == (1234,)

    run(main())
    assert [b for _, b, _, _ in rows(db_path)] == ["12345678"]


def test_explicit_config_is_used_instead_of_the_environment(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_MAX_MESSAGE_SIZE", "1")
    monkeypatch.setenv("BROKER_BUSY_TIMEOUT", "not a number")

    async def main() -> None:
        async with async_broker(db_path, config={"BROKER_MAX_MESSAGE_SIZE": "100"}) as broker:
            assert broker.config.max_message_size == 100
            await broker.write("q", "longer than one byte")

    run(main())


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("BROKER_BUSY_TIMEOUT", "soon"),
        ("BROKER_BUSY_TIMEOUT", "-1"),
        ("BROKER_SYNC_MODE", "SOMETIMES"),
        ("BROKER_MAX_MESSAGE_SIZE", "0"),
        ("BROKER_VACUUM_THRESHOLD", "150"),
    ],
)
def test_invalid_config_raises_config_error_naming_the_key(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, value: str
) -> None:
    before = worker_threads()

    async def open_with(config: dict[str, str] | None) -> None:
        async with async_broker(db_path, config=config):
            raise AssertionError("opened with an invalid configuration")

    with pytest.raises(ConfigError, match=key) as info:
        run(open_with({key: value}))
    assert info.value.key == key

    monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=key) as info:
        run(open_with(None))
    assert info.value.key == key
    with pytest.raises(ConfigError, match=key):
        AsyncBroker(db_path)
    # Refused before any connection or file exists.
    assert not db_path.exists()
    assert worker_threads() <= before


@pytest.mark.parametrize(
    ("pool_size", "error"), [(0, InvalidInputError), (-2, InvalidInputError), ("3", InvalidTypeError)]
)
def test_invalid_pool_size_is_refused(db_path: Path, pool_size: object, error: type[Exception]) -> None:
    async def main() -> None:
        async with async_broker(db_path, pool_size=pool_size):  # type: ignore[arg-type]
            raise AssertionError("opened")

    with pytest.raises(error, match="pool_size"):
        run(main())
    assert not db_path.exists()


def test_operations_after_close_raise_broker_closed(db_path: Path) -> None:
    async def main() -> None:
        async with async_broker(db_path) as broker:
            await broker.write("q", "a")
        await broker.close()  # idempotent
        with pytest.raises(BrokerClosedError):
            await broker.write("q", "b")
        with pytest.raises(BrokerClosedError):
            await broker.claim("q")
        with pytest.raises(BrokerClosedError):
            async with broker.transaction():
                pass

    run(main())
    assert [b for _, b, _, _ in rows(db_path)] == ["a"]


# --------------------------------------------------------- every operation
def test_every_broker_operation(db_path: Path) -> None:
    async def main() -> None:
        async with async_broker(db_path, pool_size=3, config=QUIET) as b:
            a1 = await b.write("alpha", "a1")
            assert isinstance(a1, int)
            a2, a3, a4 = await b.write_many("alpha", (m for m in ["a2", "a3", "a4"]))
            assert a1 < a2 < a3 < a4
            assert await b.write_many("alpha", []) == []
            (b1,) = await b.write_many("beta", ["b1"])
            assert await b.list_queues() == ["alpha", "beta"]
            assert await b.queue_exists("alpha") and not await b.queue_exists("gamma")

            # broadcast: every queue, or those matching a glob
            assert await b.broadcast("all") == 2
            assert await b.broadcast("only-b", pattern="b*") == 1
            assert [m.body for m in await b.peek_many("beta", 10)] == ["b1", "all", "only-b"]

            # peeks never claim
            assert await b.peek("alpha") == Message("a1", a1)
            assert await b.peek("alpha", message_id=a3) == Message("a3", a3)
            assert await b.peek("alpha", after_timestamp=a1, before_timestamp=a3) == Message("a2", a2)
            assert [m.id for m in await b.peek_many("alpha", 2)] == [a1, a2]

            # claims
            assert await b.claim("alpha") == Message("a1", a1)
            assert await b.claim("alpha", message_id=a3) == Message("a3", a3)
            assert await b.claim("alpha", message_id=a3) is None  # already claimed
            assert await b.claim("alpha", after_timestamp=a3) == Message("a4", a4)
            assert [m.id for m in await b.peek_many("alpha", 10, include_claimed=True)][:4] == [a1, a2, a3, a4]
            assert await b.peek("alpha", message_id=a1) is None
            assert await b.peek("alpha", message_id=a1, include_claimed=True) == Message("a1", a1)
            assert [m.body for m in await b.claim_many("alpha", 1)] == ["a2"]
            assert [m.body for m in await b.claim_all("alpha")] == ["all"]
            assert await b.claim("alpha") is None
            assert await b.claim_all("alpha") == []

            # stats
            assert await b.queue_stats("alpha") == ("alpha", 0, 5)
            assert await b.get_queue_stats() == [("alpha", 0, 5), ("beta", 3, 3)]

            # moves
            moved = await b.move("beta", "gamma")
            assert moved == Message("b1", b1)
            assert [m.body for m in await b.move_many("beta", "gamma", 1)] == ["all"]
            assert await b.move_all("beta", "gamma") == 1
            assert [m.body for m in await b.peek_many("gamma", 10)] == ["b1", "all", "only-b"]

            # the example's read/stream_read shapes
            assert await b.read("gamma", peek=True) == ["b1"]
            assert await b.read("gamma", peek=True, all_messages=True) == ["b1", "all", "only-b"]
            assert await b.read("gamma") == ["b1"]
            (c1,) = await b.write_many("delta", ["d1"])
            assert await b.read("delta", exact_timestamp=c1) == ["d1"]
            assert await b.read("delta") == []
            assert [x async for x in b.stream_read("gamma", peek=True, all_messages=True)] == ["all", "only-b"]
            assert [x async for x in b.stream_read("gamma")] == ["all"]  # all_messages=False: one
            assert [x async for x in b.stream_read("gamma", all_messages=True, commit_interval=2)] == ["only-b"]

            # Message streams
            await b.write_many("eps", ["e1", "e2", "e3"])
            assert [m.body async for m in b.stream("eps", peek=True)] == ["e1", "e2", "e3"]
            got = [m async for m in b.stream("eps", commit_interval=2)]
            assert [m.body for m in got] == ["e1", "e2", "e3"] and all(isinstance(m, Message) for m in got)

            # delete
            (z1, z2) = await b.write_many("zeta", ["z1", "z2"])
            assert await b.delete_messages("zeta", [z1, str(z2).zfill(19), 12345]) == 2
            assert await b.delete("alpha") == 5
            assert not await b.queue_exists("alpha")

            # vacuum removes claimed rows
            claimed_rows = sum(total - pending for _, pending, total in await b.get_queue_stats())
            assert claimed_rows > 0
            assert await b.vacuum() == claimed_rows
            assert all(pending == total for _, pending, total in await b.get_queue_stats())
            assert await b.vacuum(compact=True) == 0

            await b.write_many("eta", ["h1", "h2"])
            await b.write("theta", "t1")
            assert await b.delete() == 3
            assert await b.list_queues() == []

    run(main())
    assert rows(db_path) == []


def test_every_queue_operation(db_path: Path) -> None:
    async def main() -> None:
        async with async_broker(db_path, config=QUIET) as broker:
            q = AsyncQueue("tasks", broker)
            assert q.name == "tasks" and q.broker is broker
            assert not await q.exists()
            assert await q.read() is None
            assert await q.read(all_messages=True) == []
            first = await q.write("one")
            ids = [first, *await q.write_many(["two", "three", "four", "five", "six"])]
            assert await q.exists()
            assert await q.size() == 6
            assert await q.stats() == ("tasks", 6, 6)

            assert await q.read(peek=True) == "one"
            assert await q.read_all(peek=True) == ["one", "two", "three", "four", "five", "six"]
            assert await q.peek() == Message("one", first)
            assert [m.id for m in await q.peek_many(2)] == ids[:2]
            assert await q.read() == "one"
            assert await q.claim() == Message("two", ids[1])
            assert await q.claim(message_id=ids[3]) == Message("four", ids[3])
            assert await q.peek_many(10, include_claimed=True) == [
                Message(b, i) for b, i in zip(["one", "two", "three", "four", "five", "six"], ids, strict=True)
            ]
            assert await q.size() == 3

            # move_to: the oldest pending, or one by its public ID
            assert await q.move_to("elsewhere") == Message("three", ids[2])
            assert await q.move_to("elsewhere", message_id=ids[5]) == Message("six", ids[5])
            other = AsyncQueue("elsewhere", broker)
            assert await other.read_all() == ["three", "six"]

            await q.write_many(["7", "8", "9"])
            assert [m.body for m in await q.move_many("moved", 2)] == ["five", "7"]
            assert await q.move_all("moved") == 2
            moved = AsyncQueue("moved", broker)
            assert await moved.size() == 4

            # streams: bodies, at most one, at least once in batches, peeked, with IDs
            assert [m async for m in moved.stream(all_messages=False)] == ["five"]
            assert [m async for m in moved.stream(peek=True)] == ["7", "8", "9"]
            assert [m async for m in moved.stream(commit_interval=2)] == ["7", "8", "9"]
            assert await moved.size() == 0
            await moved.write_many(["x", "y"])
            got = [m async for m in moved.messages()]
            assert [m.body for m in got] == ["x", "y"] and got[0].id < got[1].id
            await moved.write("z")
            assert [m.body async for m in moved.messages(peek=True)] == ["z"]
            assert [m.body async for m in moved.messages(commit_interval=3)] == ["z"]

            # delete one message, or the queue
            (k1, _k2) = await q.write_many(["keep-1", "keep-2"])
            assert await q.delete(message_id=k1) is True
            assert await q.delete(message_id=k1) is False
            assert await q.delete() is True
            assert not await q.exists()
            assert await q.delete() is False

    run(main())


def test_the_documented_example_runs(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The module docstring's usage, with the default relative path."""
    monkeypatch.chdir(db_path.parent)
    printed: list[object] = []

    async def main() -> None:
        async with async_broker("app.db", pool_size=10) as broker:
            queue = AsyncQueue("tasks", broker)
            await queue.write("hello")
            printed.append(await queue.read())
            # The original example's quick start.
            for i in range(3):
                await queue.write(f"task {i}")
            printed.append(await queue.size())
            printed.append(await queue.read_all())
            async for message in queue.stream(peek=True):
                printed.append(message)
            printed.append(await broker.list_queues())
            printed.append(await broker.get_queue_stats())

    run(main())
    assert printed == ["hello", 3, ["task 0", "task 1", "task 2"], ["tasks"], [("tasks", 0, 4)]]
    assert (db_path.parent / "app.db").exists()


def test_write_many_commits_in_one_transaction(db_path: Path) -> None:
    async def main() -> None:
        async with async_broker(db_path, config={"BROKER_MAX_MESSAGE_SIZE": "4"}) as broker:
            with pytest.raises(MessageError):
                await broker.write_many("q", ["ok", "ok", "too long"])
            ids = await broker.write_many("q", [str(i) for i in range(500)])
            assert ids == sorted(ids) and len(set(ids)) == 500

    run(main())
    assert query(db_path, "SELECT COUNT(*) FROM messages") == [(500,)]
