"""Threads: one worker thread per connection, never trio's global thread limiter;
pool_size bounds connections and threads; many ``trio.run`` calls in one process."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pytest
import trio

from sansio_broker.adapters.trio import CommitOutcomeUnknown, TrioBroker, TrioQueue, trio_broker
from tests.async_adapters.trio_support import QUIET, WORKER_NAME, assert_clean, run, threads_left, worker_threads
from tests.support import internals
from tests.support.rawdb import rows


@pytest.mark.parametrize("pool_size", [1, 3, 6])
def test_pool_size_bounds_connections_and_worker_threads_and_no_limiter_is_used(db_path: Path, pool_size: int) -> None:
    before = worker_threads()
    seen_connections: list[int] = []
    seen_threads: list[int] = []
    seen_borrowed: list[int] = []
    limiter = trio.to_thread.current_default_thread_limiter

    def look(broker: TrioBroker) -> None:
        seen_connections.append(len(internals.open_connections(broker)))
        seen_threads.append(len(worker_threads() - before))
        seen_borrowed.append(limiter().borrowed_tokens)

    async def main() -> None:
        async with trio_broker(db_path, pool_size=pool_size, config=QUIET) as broker:
            done = trio.Event()

            async def watch() -> None:
                while not done.is_set():
                    look(broker)
                    await trio.sleep(0)

            async def work(n: int) -> None:
                for i in range(3):
                    await broker.write("q", f"{n}-{i}")
                    look(broker)
                    await broker.peek("q")
                    async with broker.transaction():
                        await broker.claim("q")
                        look(broker)
                    async for _ in broker.stream("q", peek=True):
                        look(broker)
                        break

            async with trio.open_nursery() as watcher:
                watcher.start_soon(watch)
                async with trio.open_nursery() as nursery:
                    for n in range(40):
                        nursery.start_soon(work, n)
                done.set()
            assert await broker.queue_stats("q") == ("q", 0, 120)
            # Each connection has a worker thread of its own, named as the adapter's.
            threads = [internals.worker_thread(c) for c in internals.open_connections(broker)]
            assert len(set(threads)) == len(threads) == len(internals.open_connections(broker))
            assert all(t.name == WORKER_NAME and t.daemon and t.is_alive() for t in threads)
            assert set(threads) == worker_threads() - before
            await assert_clean(broker)

    run(main)
    assert max(seen_connections) <= pool_size
    assert max(seen_threads) <= pool_size
    # The bound is reached: the pool really is used, not one connection for all.
    assert max(seen_connections) == pool_size
    assert set(seen_borrowed) == {0}, "the adapter borrowed from trio's global thread limiter"
    assert not threads_left(before, timeout=2)


def test_operations_neither_wait_for_nor_starve_the_global_thread_limiter(db_path: Path) -> None:
    """With every token of trio's default limiter taken by the user, the broker still works."""

    async def main() -> None:
        limiter = trio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = 1
        release = threading.Event()
        async with trio_broker(db_path, pool_size=2, config=QUIET) as broker, trio.open_nursery() as nursery:
            # The user's own thread holds the only token of the global limiter.
            nursery.start_soon(trio.to_thread.run_sync, release.wait)
            try:
                while limiter.borrowed_tokens < 1:
                    await trio.sleep(0.001)
                with trio.fail_after(10):
                    ids = await broker.write_many("q", ["a", "b"])
                    assert [m.id for m in await broker.claim_many("q", 5)] == ids
                    async with broker.transaction():
                        await broker.write("q", "c")
                    assert [b async for b in TrioQueue("q", broker).stream(commit_interval=2)] == ["c"]
                assert limiter.borrowed_tokens == 1  # still just the user's
            finally:
                release.set()

    run(main)


def test_each_connection_has_its_own_thread_so_a_blocked_one_stalls_nothing_else(db_path: Path) -> None:
    """One connection's worker blocked in a long transaction; the others go on."""

    async def main() -> None:
        async with trio_broker(db_path, pool_size=3, config=QUIET) as broker:
            await broker.write("q", "x")
            holding, finish = trio.Event(), trio.Event()

            async def holder() -> None:
                async with broker.transaction():
                    await broker.write("held", "x")
                    holding.set()
                    await finish.wait()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(holder)
                await holding.wait()
                with trio.fail_after(5):
                    for _ in range(20):
                        assert (await broker.peek("q")) is not None
                        assert await broker.queue_exists("q")
                finish.set()
            await assert_clean(broker)

    run(main)


def test_twenty_trio_runs_in_sequence_leak_no_thread(tmp_path: Path) -> None:
    before = worker_threads()
    counts: list[int] = []

    async def one_run(n: int) -> None:
        path = tmp_path / ("shared.db" if n % 2 else f"own{n}.db")
        async with trio_broker(path, pool_size=3, config=QUIET) as broker:
            queue = TrioQueue("q", broker)
            async with trio.open_nursery() as nursery:
                for i in range(6):
                    nursery.start_soon(queue.write, f"run{n}-{i}")
            got = [b async for b in queue.stream(commit_interval=2)]
            assert sorted(got) == sorted(f"run{n}-{i}" for i in range(6))
            async with broker.transaction():
                await broker.write("log", f"run {n}")
            with trio.move_on_after(0.001), contextlib.suppress(CommitOutcomeUnknown):
                await broker.claim_all("log")  # a cancelled operation in every run too

    for n in range(20):
        run(one_run, n)
        counts.append(len(threads_left(before, timeout=2)))
    assert counts == [0] * 20
    assert len([b for _, b, _, _ in rows(tmp_path / "shared.db", "log")]) == 10


def test_a_broker_is_usable_only_in_its_own_run_and_a_new_run_opens_afresh(db_path: Path) -> None:
    async def first() -> TrioBroker:
        async with trio_broker(db_path, config=QUIET) as broker:
            await broker.write("q", "from run 1")
            return broker

    async def second(old: TrioBroker) -> list[str]:
        with pytest.raises(Exception):  # noqa: B017 - closed; which error is the contract suite's business
            await old.write("q", "through a closed broker")
        async with trio_broker(db_path, config=QUIET) as broker:
            return await broker.read("q", all_messages=True)

    old = run(first)
    assert run(second, old) == ["from run 1"]
