"""What the original async SimpleBroker example got wrong, each fixed here (contract §6.3)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from asyncio_support import QUIET, assert_clean, run, settle
from support.rawdb import connect, meta, query, rows

from sansio_broker import Message, TransactionError
from sansio_broker.adapters.asyncio import AsyncQueue, async_broker


def max_ts(path: Path) -> int:
    return query(path, "SELECT MAX(ts) FROM messages")[0][0]


# -------------------------------------------- IDs inside the insert transaction
def test_write_returns_the_committed_id(db_path: Path) -> None:
    async def main() -> list[int]:
        async with async_broker(db_path, config=QUIET) as broker:
            queue = AsyncQueue("q", broker)
            return [await broker.write("q", "a"), await queue.write("b")]

    first, second = run(main())
    assert isinstance(first, int) and isinstance(second, int)
    assert len(str(first)) == 19 and first < second
    assert [(b, ts) for _, b, ts, _ in rows(db_path)] == [("a", first), ("b", second)]


def test_last_ts_equals_the_highest_id_after_writes(db_path: Path) -> None:
    async def main() -> None:
        async with async_broker(db_path, config=QUIET) as broker:
            await broker.write("q", "one")
            assert meta(db_path)["last_ts"] == max_ts(db_path)
            await broker.write_many("q", [str(i) for i in range(50)])
            assert meta(db_path)["last_ts"] == max_ts(db_path)
            await broker.write("other", "x")
            assert await broker.broadcast("to all") == 2
            assert meta(db_path)["last_ts"] == max_ts(db_path)
            async with broker.transaction():
                await broker.write("q", "in a transaction")
            assert meta(db_path)["last_ts"] == max_ts(db_path)

    run(main())


def test_a_rolled_back_write_does_not_advance_last_ts(db_path: Path) -> None:
    """Allocation commits or rolls back with the insert (the example allocated in autocommit)."""

    async def main() -> None:
        async with async_broker(db_path, config=QUIET) as broker:
            kept = await broker.write("q", "kept")
            with pytest.raises(ZeroDivisionError):
                async with broker.transaction():
                    await broker.write("q", "rolled back")
                    await broker.write_many("q", ["also", "rolled back"])
                    1 / 0  # noqa: B018
            assert meta(db_path)["last_ts"] == kept == max_ts(db_path)
            after = await broker.write("q", "next")
            assert after > kept

    run(main())
    assert [b for _, b, _, _ in rows(db_path)] == ["kept", "next"]


def test_two_brokers_on_one_file_allocate_unique_increasing_ids(db_path: Path) -> None:
    per_task = 15

    async def main() -> list[list[int]]:
        async with (
            async_broker(db_path, pool_size=4, config=QUIET) as first,
            async_broker(db_path, pool_size=4, config=QUIET) as second,
        ):

            async def writer(broker_index: int, n: int) -> list[int]:
                broker = (first, second)[broker_index]
                ids = []
                for i in range(per_task):
                    if i % 5 == 4:
                        ids += await broker.write_many("q", [f"{broker_index}-{n}-{i}a", f"{broker_index}-{n}-{i}b"])
                    else:
                        ids.append(await broker.write("q", f"{broker_index}-{n}-{i}"))
                return ids

            return await asyncio.gather(*(writer(k % 2, k) for k in range(20)))

    per_writer = run(main())
    everything = [i for ids in per_writer for i in ids]
    assert len(everything) == len(set(everything)) == 20 * (per_task + 3)
    for ids in per_writer:
        assert ids == sorted(ids) and len(set(ids)) == len(ids), "IDs of one writer must strictly increase"
    assert sorted(everything) == [ts for _, _, ts, _ in rows(db_path)]
    assert meta(db_path)["last_ts"] == max(everything)


def test_a_clock_regression_does_not_fail_writes(db_path: Path) -> None:
    async def main() -> None:
        async with async_broker(db_path, config=QUIET) as broker:
            await broker.write("q", "before")  # the broker has cached its own high-water mark
            future = ((time.time_ns() + 10_000_000_000) & ~0xFFF) | 7
            with connect(db_path) as conn:
                conn.execute("UPDATE meta SET value = ? WHERE key = 'last_ts'", (future,))
            assert await broker.write("q", "w1") == future + 1
            assert await broker.write("q", "w2") == future + 2
            assert await broker.write_many("q", ["w3", "w4"]) == [future + 3, future + 4]
            assert await AsyncQueue("q", broker).write("w5") == future + 5
        # A fresh broker (no cached value) carries on the same way.
        async with async_broker(db_path, config=QUIET) as broker:
            assert await broker.write("q", "w6") == future + 6
        assert meta(db_path)["last_ts"] == future + 6

    run(main())


# ------------------------------------------------------ move by the public ID
def test_move_by_public_id_moves_a_claimed_message_and_keeps_it_claimed(db_path: Path) -> None:
    async def main() -> None:
        async with async_broker(db_path, config=QUIET) as broker:
            a, b, c = await broker.write_many("src", ["a", "b", "c"])
            assert await broker.claim("src", message_id=b) == Message("b", b)
            # The example matched an internal rowid: small numbers must not match anything.
            assert await broker.move("src", "dst", message_id=2) is None
            assert await broker.move("src", "dst", message_id=b) == Message("b", b)
            assert await AsyncQueue("src", broker).move_to("dst", message_id=c) == Message("c", c)
            assert await broker.move("dst", "src", message_id=b, require_unclaimed=True) is None
            assert await AsyncQueue("src", broker).move_to("dst", message_id=str(a)) == Message("a", a)

    run(main())
    assert rows(db_path) == [
        ("dst", "a", rows(db_path)[0][2], 0),
        ("dst", "b", rows(db_path)[1][2], 1),
        ("dst", "c", rows(db_path)[2][2], 0),
    ]


# ------------------------------------------------ never claim without returning
def test_read_all_messages_returns_every_body_it_claimed(db_path: Path) -> None:
    bodies = [f"m{i}" for i in range(250)]  # more than one generator batch

    async def main() -> None:
        async with async_broker(db_path, config=QUIET) as broker:
            await broker.write_many("q", bodies)
            assert await broker.read("q", all_messages=True) == bodies
            assert await broker.queue_stats("q") == ("q", 0, 250)
            await broker.write_many("r", bodies[:5])
            assert await AsyncQueue("r", broker).read(all_messages=True) == bodies[:5]
            await broker.write_many("s", bodies[:3])
            assert await AsyncQueue("s", broker).read_all() == bodies[:3]
            assert await AsyncQueue("s", broker).read_all() == []

    run(main())
    claimed = query(db_path, "SELECT queue, COUNT(*) FROM messages WHERE claimed = 1 GROUP BY queue ORDER BY queue")
    assert claimed == [("q", 250), ("r", 5), ("s", 3)]
    assert query(db_path, "SELECT COUNT(*) FROM messages WHERE claimed = 0") == [(0,)]


def test_read_all_while_others_write_hands_over_exactly_what_it_claimed(db_path: Path) -> None:
    async def main() -> list[str]:
        async with async_broker(db_path, pool_size=6, config=QUIET) as broker:
            done = asyncio.Event()
            returned: list[str] = []

            async def writer(n: int) -> None:
                for i in range(30):
                    await broker.write("q", f"{n}-{i}")

            async def reader() -> None:
                while not done.is_set():
                    returned.extend(await broker.read("q", all_messages=True))
                    await asyncio.sleep(0)
                returned.extend(await broker.read("q", all_messages=True))

            readers = [asyncio.create_task(reader()) for _ in range(3)]
            await asyncio.gather(*(writer(n) for n in range(5)))
            done.set()
            await asyncio.gather(*readers)
            return returned

    returned = run(main())
    claimed = [b for _, b, _, c in rows(db_path) if c == 1]
    assert len(returned) == len(set(returned)) == 150
    assert sorted(returned) == sorted(claimed)


# ---------------------------------------- stream(commit_interval>1) and writes
def test_a_write_inside_an_at_least_once_batch_fails_at_once(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_BUSY_TIMEOUT", "5000")
    monkeypatch.setenv("BROKER_AUTO_VACUUM", "0")
    elapsed: list[float] = []

    async def main() -> None:
        async with async_broker(db_path) as broker:
            queue = AsyncQueue("jobs", broker)
            await queue.write_many([f"job{i}" for i in range(10)])
            with pytest.raises(TransactionError, match="stream") as info:
                async for _body in queue.stream(commit_interval=5):
                    start = time.monotonic()
                    try:
                        await queue.write("result")
                    finally:
                        elapsed.append(time.monotonic() - start)
            assert "commit_interval=1" in str(info.value) or "transaction()" in str(info.value)
            # The abandoned batch is rolled back (delivered again); the write never landed.
            await settle(broker)
            assert await queue.size() == 10
            assert await queue.read_all() == [f"job{i}" for i in range(10)]
            await assert_clean(broker)

    run(main())
    assert elapsed and elapsed[0] < 1.0
    assert "result" not in [b for _, b, _, _ in rows(db_path)]


@pytest.mark.parametrize("pool_size", [1, 4])
def test_write_after_break_out_of_a_stream_succeeds_and_is_not_rolled_back(db_path: Path, pool_size: int) -> None:
    async def main() -> None:
        async with async_broker(db_path, pool_size=pool_size, config=QUIET) as broker:
            queue = AsyncQueue("jobs", broker)
            await queue.write_many([f"job{i}" for i in range(7)])
            seen = []
            async for body in queue.stream(commit_interval=5):
                seen.append(body)
                break
            assert seen == ["job0"]
            written = await asyncio.wait_for(queue.write("after the break"), 10)
            await asyncio.wait_for(broker.write("elsewhere", "also after"), 10)
            await settle(broker)
            # The write committed on its own: nothing rolled it back.
            assert [(b, ts) for q, b, ts, _ in rows(db_path) if q == "jobs" and b == "after the break"] == [
                ("after the break", written)
            ]
            assert [b for q, b, _, _ in rows(db_path) if q == "elsewhere"] == ["also after"]
            # The abandoned batch is delivered again, in order, followed by the new write.
            again = [b async for b in queue.stream(commit_interval=5)]
            assert again == [*(f"job{i}" for i in range(7)), "after the break"]
            await assert_clean(broker)

    run(main())
