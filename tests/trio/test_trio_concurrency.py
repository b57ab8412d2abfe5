"""Many tasks in nurseries on one broker: every message delivered exactly once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import trio
from support.rawdb import meta, query, rows
from trio_support import QUIET, assert_clean, run

from sansio_broker import Message
from sansio_broker.adapters.trio import TrioBroker, TrioQueue, trio_broker

WRITERS = 50
CLAIMERS = 50
PER_WRITER = 12


def test_fifty_writers_and_fifty_claimers_deliver_exactly_once(db_path: Path) -> None:
    written: list[list[int]] = [[] for _ in range(WRITERS)]
    claimed: list[list[Message]] = [[] for _ in range(CLAIMERS)]

    async def main() -> None:
        async with trio_broker(db_path, pool_size=8, config=QUIET) as broker:
            writers_done = trio.Event()

            async def writer(n: int) -> None:
                queue = TrioQueue("q", broker)
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
                        batch = [m async for m in TrioQueue("q", broker).messages()]
                    else:
                        message = await broker.claim("q")
                        batch = [] if message is None else [message]
                    claimed[n] += batch
                    if not batch:
                        if finished:
                            return
                        await trio.sleep(0.001)

            async with trio.open_nursery() as claimers:
                for n in range(CLAIMERS):
                    claimers.start_soon(claimer, n)
                async with trio.open_nursery() as writers:
                    for n in range(WRITERS):
                        writers.start_soon(writer, n)
                writers_done.set()
            assert len(broker._connections) <= 8
            await assert_clean(broker)

    run(main)
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


def test_two_brokers_in_one_run_and_streams_share_one_queue(db_path: Path) -> None:
    """Two trio brokers on one file, consumers with at-least-once batches run to the end: each job once."""
    total = 400

    async def main() -> list[str]:
        async with (
            trio_broker(db_path, pool_size=3, config=QUIET) as first,
            trio_broker(db_path, pool_size=3, config=QUIET) as second,
        ):
            got: list[str] = []

            async def producer(broker: TrioBroker, tag: str) -> None:
                for start in range(0, total // 2, 20):
                    await broker.write_many("jobs", [f"{tag}{i}" for i in range(start, start + 20)])

            async def consumer(broker: TrioBroker) -> None:
                for _ in range(200):
                    got.extend([b async for b in TrioQueue("jobs", broker).stream(commit_interval=7)])
                    if len(got) >= total:
                        return
                    await trio.sleep(0.002)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(producer, first, "a")
                nursery.start_soon(producer, second, "b")
                for broker in (first, second, first, second):
                    nursery.start_soon(consumer, broker)
            await assert_clean(first)
            await assert_clean(second)
            return got

    got = run(main)
    assert sorted(got) == sorted([f"a{i}" for i in range(total // 2)] + [f"b{i}" for i in range(total // 2)])
    assert query(db_path, "PRAGMA integrity_check") == [("ok",)]
