"""Priorities as separate queues: a consumer always serves the highest non-empty one.

SimpleBroker queues are strictly FIFO, so priorities are one queue per
level (``tasks.high``, ``tasks.normal``, ``tasks.low``). Before each job the
consumer tries the levels in order and claims from the first that has one,
so an urgent job written while low-priority work is waiting is served next,
ahead of everything already queued below it.

Run it from anywhere: ``python examples/asyncio_priority_queues.py [path/to/db]``
(default ``.broker.db`` in the current directory).
"""

from __future__ import annotations

import asyncio
import sys

from sansio_broker import Message
from sansio_broker.adapters.asyncio import AsyncBroker, AsyncQueue, async_broker

LEVELS = ["high", "normal", "low"]  # highest first


async def next_job(queues: list[AsyncQueue]) -> tuple[str, Message] | None:
    """Claim the oldest job of the highest non-empty level."""
    for queue in queues:
        job = await queue.claim()
        if job is not None:
            return queue.name, job
    return None


async def consume(queues: list[AsyncQueue], producer_done: asyncio.Event, started: asyncio.Event) -> list[str]:
    served: list[str] = []
    while True:
        finished = producer_done.is_set()  # before looking, so an empty look after it is final
        found = await next_job(queues)
        if found is None:
            if finished:
                return served
            await asyncio.sleep(0.005)
            continue
        level, job = found
        served.append(job.body)
        print(f"served {job.body!r:<20} from {level}")
        if len(served) == 2:
            started.set()  # the producer below waits for this
        await asyncio.sleep(0.02)  # the job's work


async def produce_late(broker: AsyncBroker, started: asyncio.Event, producer_done: asyncio.Event) -> None:
    """While the consumer works through the backlog, an urgent job arrives."""
    await started.wait()
    await AsyncQueue("tasks.high", broker).write("urgent: page on-call")
    print("(wrote 'urgent: page on-call' to tasks.high)")
    producer_done.set()


async def main(path: str = ".broker.db") -> None:
    async with async_broker(path, pool_size=3) as broker:
        queues = [AsyncQueue(f"tasks.{level}", broker) for level in LEVELS]
        for queue in queues:
            await queue.delete()  # start empty, so a second run prints the same

        # A backlog, written lowest priority first: write order does not matter.
        await queues[2].write_many(["low: rebuild index", "low: send digest", "low: clean tmp"])
        await queues[1].write_many(["normal: resize photo", "normal: send email"])
        await queues[0].write("high: charge card")

        producer_done, started = asyncio.Event(), asyncio.Event()
        async with asyncio.TaskGroup() as group:
            consumer = group.create_task(consume(queues, producer_done, started))
            group.create_task(produce_late(broker, started, producer_done))
        print("order served:", [body.split(":")[0] for body in consumer.result()])


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:2]))
