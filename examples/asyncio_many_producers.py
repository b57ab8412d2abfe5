"""Many producers and consumers at once: group commit and shared claims.

100 producer tasks each write 20 messages while 100 consumer tasks wait for
them with ``await orders.get()``. Nothing special is asked for: writes
waiting at the same moment share one transaction (one fsync), a burst of
messages is claimed for many waiting consumers in one transaction, yet every
``await`` returns only after its own commit.

Shutdown is a sentinel: once every producer has finished, ``main`` writes one
``stop`` per consumer. Claims take the oldest message first, so a consumer
only gets a ``stop`` once every order is taken.

    python examples/asyncio_many_producers.py [path]    # default: .broker.db
"""

from __future__ import annotations

import asyncio
import sys
import time
from itertools import pairwise

from sansio_broker.adapters.asyncio import AsyncQueue, async_broker

PRODUCERS = 100
PER_PRODUCER = 20
CONSUMERS = 100
STOP = "stop"


async def main(path: str) -> None:
    async with async_broker(path) as broker:
        orders = AsyncQueue("orders", broker)
        await orders.delete()  # start from an empty queue
        total = PRODUCERS * PER_PRODUCER

        async def produce(n: int) -> list[int]:
            return [await orders.write(f"order {n}-{i}") for i in range(PER_PRODUCER)]

        async def consume() -> list[str]:
            taken: list[str] = []
            while (body := await orders.get()) != STOP:  # waits until a message arrives
                assert body is not None  # no timeout: get() returns None only when one passes
                taken.append(body)
            return taken

        start = time.perf_counter()
        consumers = [asyncio.create_task(consume()) for _ in range(CONSUMERS)]
        written = await asyncio.gather(*(produce(n) for n in range(PRODUCERS)))
        await orders.write_many([STOP] * CONSUMERS)  # after every order: one per consumer
        taken = [body for bodies in await asyncio.gather(*consumers) for body in bodies]
        elapsed = time.perf_counter() - start

        ids = [i for ids in written for i in ids]
        assert len(set(ids)) == total, "every write got its own ID"
        assert all(a < b for batch in written for a, b in pairwise(batch)), "FIFO per producer"
        assert await orders.size() == 0, "every stop taken by exactly one consumer"
        assert sorted(taken) == sorted(f"order {n}-{i}" for n in range(PRODUCERS) for i in range(PER_PRODUCER))
        print(f"{PRODUCERS} producers wrote {total} messages, {CONSUMERS} consumers took each exactly once")
        print(f"{2 * total / elapsed:,.0f} durable operations/s (writes + claims) in {elapsed:.2f} s")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else ".broker.db"))
