"""The trio adapter's surface: the same names and semantics as the asyncio adapter, every method once.

Opening, closing, config and the pool's bound, on both runtimes, are in test_async_api.py.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import trio

from sansio_broker import Message, OutcomeUnknownError
from sansio_broker.adapters.asyncio import AsyncBroker, AsyncQueue
from sansio_broker.adapters.trio import CommitOutcomeUnknown, TrioBroker, TrioQueue, trio_broker
from tests.async_adapters.trio_support import QUIET, run
from tests.support import internals
from tests.support.rawdb import rows


def public(cls: type) -> dict[str, inspect.Signature]:
    """The public methods (not class attributes)."""
    return {
        name: inspect.signature(getattr(cls, name))
        for name in dir(cls)
        if not name.startswith("_") and inspect.isfunction(inspect.getattr_static(cls, name))
    }


# Every public method, each exercised below: a method added to the adapters
# without a smoke test here fails test_same_methods_as_the_asyncio_adapter.
BROKER_METHODS = {
    "open",
    "close",
    "wait_background",
    "transaction",
    "write",
    "write_many",
    "broadcast",
    "claim",
    "claim_many",
    "claim_all",
    "peek",
    "peek_many",
    "stream",
    "move",
    "move_many",
    "move_all",
    "delete",
    "delete_messages",
    "list_queues",
    "get_queue_stats",
    "queue_stats",
    "queue_exists",
    # SimpleBroker's API (issue 12)
    "add_alias",
    "remove_alias",
    "list_aliases",
    "resolve_queue",
    "rename_queue",
    "insert_messages",
    "dump",
    "load",
    "find_message_ids",
    "has_pending",
    "status",
    "generate_id",
    "return_messages",
    "vacuum",
    "read",
    "stream_read",
    "get",
}
QUEUE_METHODS = {
    "write",
    "write_many",
    "read",
    "read_all",
    "read_many",
    "stream",
    "claim",
    "claim_many",
    "peek",
    "peek_many",
    "messages",
    "size",
    "stats",
    "exists",
    "move_to",
    "move_many",
    "move_all",
    "delete",
    "get",
    "get_message",
    "watch",
    "watch_messages",
    "has_pending",
    "find_message_ids",
    "insert_messages",
}


def test_same_methods_as_the_asyncio_adapter() -> None:
    assert set(public(TrioBroker)) == set(public(AsyncBroker)) == BROKER_METHODS
    assert set(public(TrioQueue)) == set(public(AsyncQueue)) == QUEUE_METHODS
    for name, signature in public(AsyncBroker).items():
        assert public(TrioBroker)[name] == signature, name
    for name, signature in public(AsyncQueue).items():
        assert public(TrioQueue)[name] == signature, name
    for cls, other, names in [(TrioBroker, AsyncBroker, BROKER_METHODS), (TrioQueue, AsyncQueue, QUEUE_METHODS)]:
        for name in names:
            awaitable = inspect.iscoroutinefunction(getattr(other, name))
            assert inspect.iscoroutinefunction(getattr(cls, name)) == awaitable, name
    # The entry point: trio_broker(path, *, pool_size=..., config=None).
    params = inspect.signature(trio_broker).parameters
    assert list(params) == ["path", "pool_size", "config"]
    assert params["pool_size"].kind is params["config"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["config"].default is None
    # CommitOutcomeUnknown is a plain exception (trio.Cancelled cannot be subclassed).
    assert issubclass(CommitOutcomeUnknown, OutcomeUnknownError)
    assert not issubclass(CommitOutcomeUnknown, trio.Cancelled)


def test_every_broker_method_once(db_path: Path) -> None:
    async def main() -> None:
        async with trio_broker(db_path, pool_size=3, config=QUIET) as b:
            assert await b.open() is b  # already open: a no-op that checks the file
            a1 = await b.write("alpha", "a1")
            a2, a3, a4 = await b.write_many("alpha", (m for m in ["a2", "a3", "a4"]))
            assert a1 < a2 < a3 < a4
            (b1,) = await b.write_many("beta", ["b1"])
            assert await b.list_queues() == ["alpha", "beta"]
            assert await b.queue_exists("alpha") and not await b.queue_exists("gamma")
            assert await b.broadcast("all") == 2
            assert await b.broadcast("only-b", pattern="b*") == 1

            assert await b.peek("alpha") == Message("a1", a1)
            assert await b.peek("alpha", after_timestamp=a1, before_timestamp=a3) == Message("a2", a2)
            assert [m.id for m in await b.peek_many("alpha", 2)] == [a1, a2]
            assert await b.claim("alpha") == Message("a1", a1)
            assert await b.claim("alpha", message_id=a3) == Message("a3", a3)
            assert await b.peek("alpha", message_id=a1, include_claimed=True) == Message("a1", a1)
            assert [m.body for m in await b.claim_many("alpha", 1)] == ["a2"]
            assert [m.body for m in await b.claim_all("alpha")] == ["a4", "all"]
            assert await b.claim("alpha") is None

            assert await b.queue_stats("alpha") == ("alpha", 0, 5)
            assert await b.get_queue_stats() == [("alpha", 0, 5), ("beta", 3, 3)]

            assert await b.move("beta", "gamma") == Message("b1", b1)
            assert [m.body for m in await b.move_many("beta", "gamma", 1)] == ["all"]
            assert await b.move_all("beta", "gamma") == 1

            assert await b.read("gamma", peek=True, all_messages=True) == ["b1", "all", "only-b"]
            assert await b.read("gamma") == ["b1"]
            assert [x async for x in b.stream_read("gamma", peek=True, all_messages=True)] == ["all", "only-b"]
            assert [m.body async for m in b.stream("gamma", commit_interval=2)] == ["all", "only-b"]

            async with b.transaction() as tx:
                assert tx is b
                await b.write("delta", "in a transaction")

            (z1, z2) = await b.write_many("zeta", ["z1", "z2"])
            assert await b.delete_messages("zeta", [z1, str(z2)]) == 2
            assert await b.delete("alpha") == 5
            assert await b.vacuum() == 3  # gamma's three claimed rows
            assert await b.vacuum(compact=True) == 0
            assert await b.delete() == 1
            assert await b.list_queues() == []
            await b.close()
            assert internals.open_connections(b) == []

    run(main)
    assert rows(db_path) == []


def test_every_queue_method_once(db_path: Path) -> None:
    async def main() -> None:
        async with trio_broker(db_path, config=QUIET) as broker:
            q = TrioQueue("tasks", broker)
            assert q.name == "tasks" and q.broker is broker
            assert not await q.exists()
            assert await q.read() is None
            first = await q.write("one")
            ids = [first, *await q.write_many(["two", "three", "four", "five", "six"])]
            assert await q.exists()
            assert await q.size() == 6
            assert await q.stats() == ("tasks", 6, 6)
            assert await q.read_all(peek=True) == ["one", "two", "three", "four", "five", "six"]
            assert await q.peek() == Message("one", first)
            assert [m.id for m in await q.peek_many(2)] == ids[:2]
            assert await q.read() == "one"
            assert await q.claim() == Message("two", ids[1])
            assert [m.body for m in await q.claim_many(1)] == ["three"]
            assert await q.move_to("elsewhere") == Message("four", ids[3])
            assert [m.body for m in await q.move_many("moved", 1)] == ["five"]
            assert await q.move_all("moved") == 1
            moved = TrioQueue("moved", broker)
            assert [b async for b in moved.stream(peek=True)] == ["five", "six"]
            assert [m.body async for m in moved.messages(commit_interval=3)] == ["five", "six"]
            await moved.write_many(["x", "y"])
            assert [b async for b in moved.stream()] == ["x", "y"]
            (k1, _k2) = await q.write_many(["keep-1", "keep-2"])
            assert await q.delete(message_id=k1) is True
            assert await q.delete() is True
            assert not await q.exists()
            assert await TrioQueue("elsewhere", broker).read(all_messages=True) == ["four"]

    run(main)


def test_the_readme_quick_start_runs(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(db_path.parent)
    printed: list[object] = []

    async def main() -> None:
        async with trio_broker("app.db", pool_size=4) as broker:
            queue = TrioQueue("tasks", broker)
            await queue.write("x")
            printed.append(await queue.read())
            await queue.write_many([f"task {n}" for n in range(100)])
            handled = 0
            async for _msg in queue.stream(commit_interval=50):
                handled += 1
            printed.append(handled)

    run(main)
    assert printed == ["x", 100]
