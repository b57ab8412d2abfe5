"""What the original async SimpleBroker example got wrong, each fixed here (README, "What changed"): the asyncio cases.

Concurrent tasks, and ``break`` out of an ``async for`` (which leaves the
stream to be closed in the background). The rest, for every adapter, is in
tests/contract/ (IDs and last_ts, move by public ID, read(all_messages=True),
a write inside an at-least-once batch).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sansio_broker.adapters.asyncio import AsyncQueue, async_broker
from tests.async_adapters.asyncio_support import QUIET, assert_clean, run, settle
from tests.support.rawdb import meta, rows


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
