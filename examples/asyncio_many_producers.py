"""Many producers and consumers at once: group commit and shared claims.

100 producer tasks each write 20 messages while 100 consumer tasks claim
until every message is taken. Nothing special is asked for: writes waiting
at the same moment share one transaction (one fsync), and so do claims on
the same queue, yet every ``await`` returns only after its own commit.

    python examples/asyncio_many_producers.py [path]    # default: .broker.db
"""

from __future__ import annotations

import asyncio
import sys
import time
from itertools import pairwise

from sansio_broker.adapters.asyncio import async_broker

PRODUCERS = 100
PER_PRODUCER = 20
CONSUMERS = 100


async def main(path: str) -> None:
    async with async_broker(path) as broker:
        await broker.delete("orders")  # start from an empty queue
        total = PRODUCERS * PER_PRODUCER
        done_writing = asyncio.Event()

        async def produce(n: int) -> list[int]:
            return [await broker.write("orders", f"order {n}-{i}") for i in range(PER_PRODUCER)]

        async def consume() -> list[str]:
            taken: list[str] = []
            while True:
                message = await broker.claim("orders")
                if message is not None:
                    taken.append(message.body)
                elif done_writing.is_set() and (await broker.queue_stats("orders")).pending == 0:
                    return taken
                else:
                    await asyncio.sleep(0.001)  # caught up with the producers

        start = time.perf_counter()
        consumers = [asyncio.create_task(consume()) for _ in range(CONSUMERS)]
        written = await asyncio.gather(*(produce(n) for n in range(PRODUCERS)))
        done_writing.set()
        taken = [body for bodies in await asyncio.gather(*consumers) for body in bodies]
        elapsed = time.perf_counter() - start

        ids = [i for ids in written for i in ids]
        assert len(set(ids)) == total, "every write got its own ID"
        assert all(a < b for batch in written for a, b in pairwise(batch)), "FIFO per producer"
        assert sorted(taken) == sorted(f"order {n}-{i}" for n in range(PRODUCERS) for i in range(PER_PRODUCER))
        print(f"{PRODUCERS} producers wrote {total} messages, {CONSUMERS} consumers took each exactly once")
        print(f"{2 * total / elapsed:,.0f} durable operations/s (writes + claims) in {elapsed:.2f} s")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else ".broker.db"))
