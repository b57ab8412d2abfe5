"""Many tasks on one broker, and two brokers on one file: every message delivered exactly once (asyncio and trio)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from sansio_broker import Message
from tests.async_adapters.kit import QUIET, Kit, assert_clean
from tests.support import internals
from tests.support.rawdb import meta, query, rows

pytestmark = pytest.mark.anyio

WRITERS = 50
CLAIMERS = 50
PER_WRITER = 12
POOL_SIZE = 8


async def test_fifty_writers_and_fifty_claimers_deliver_exactly_once(kit: Kit, db_path: Path) -> None:
    written: list[list[int]] = [[] for _ in range(WRITERS)]
    claimed: list[list[Message]] = [[] for _ in range(CLAIMERS)]
    async with kit.open_broker(db_path, pool_size=POOL_SIZE, config=QUIET) as broker:
        writers_done = anyio.Event()

        async def writer(n: int) -> None:
            queue = kit.Queue("q", broker)
            for i in range(PER_WRITER):
                if i % 4 == 3:
                    written[n] += await queue.write_many([f"w{n}-{i}a", f"w{n}-{i}b"])
                else:
                    written[n].append(await queue.write(f"w{n}-{i}"))

        async def claimer(n: int) -> None:
            while True:
                finished = writers_done.is_set()  # before looking: an empty look after it is final
                if n % 5 == 0:
                    batch = await broker.claim_many("q", 3)
                elif n % 5 == 1:
                    batch = [m async for m in kit.Queue("q", broker).messages()]
                else:
                    message = await broker.claim("q")
                    batch = [] if message is None else [message]
                claimed[n] += batch
                if not batch:
                    if finished:
                        return
                    await anyio.sleep(0.001)

        async with anyio.create_task_group() as claimers:
            for n in range(CLAIMERS):
                claimers.start_soon(claimer, n)
            async with anyio.create_task_group() as writers:
                for n in range(WRITERS):
                    writers.start_soon(writer, n)
            writers_done.set()
        assert len(internals.open_connections(broker)) <= POOL_SIZE
        await assert_clean(broker)

    ids = [i for w in written for i in w]
    assert len(ids) == len(set(ids)) == WRITERS * (PER_WRITER + PER_WRITER // 4)
    for w in written:
        assert w == sorted(w), "IDs of one writer must increase"
    got = [m for c in claimed for m in c]
    counts = Counter(m.id for m in got)
    assert [i for i, n in counts.items() if n > 1] == [], "delivered twice"
    assert set(counts) == set(ids), "lost or invented messages"
    stored = {ts: b for q, b, ts, c in rows(db_path) if q == "q" and c == 1}
    assert {m.id: m.body for m in got} == stored
    assert sum(1 for c in claimed if c) > 1  # the work really was shared
    assert meta(db_path)["last_ts"] == max(ts for _, _, ts, _ in rows(db_path)) >= max(ids)


async def test_two_brokers_in_one_run_and_streams_share_one_queue(kit: Kit, db_path: Path) -> None:
    """Two brokers on one file, consumers with at-least-once batches run to the end: each job once."""
    total = 400
    got: list[str] = []
    async with (
        kit.open_broker(db_path, pool_size=3, config=QUIET) as first,
        kit.open_broker(db_path, pool_size=3, config=QUIET) as second,
    ):

        async def producer(broker: Any, tag: str) -> None:
            for start in range(0, total // 2, 20):
                await broker.write_many("jobs", [f"{tag}{i}" for i in range(start, start + 20)])

        async def consumer(broker: Any) -> None:
            for _ in range(200):
                got.extend([b async for b in kit.Queue("jobs", broker).stream(commit_interval=7)])
                if len(got) >= total:
                    return
                await anyio.sleep(0.002)

        async with anyio.create_task_group() as group:
            group.start_soon(producer, first, "a")
            group.start_soon(producer, second, "b")
            for broker in (first, second, first, second):
                group.start_soon(consumer, broker)
        await assert_clean(first)
        await assert_clean(second)

    assert sorted(got) == sorted([f"a{i}" for i in range(total // 2)] + [f"b{i}" for i in range(total // 2)])
    assert query(db_path, "PRAGMA integrity_check") == [("ok",)]
