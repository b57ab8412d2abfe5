"""Priorities as separate queues: ``broker.get(levels)`` waits on all of them, highest first.

SimpleBroker queues are strictly FIFO, so priorities are one queue per
level (``tasks.high``, ``tasks.normal``, ``tasks.low``). ``broker.get(LEVELS)``
claims the oldest job of the first level, in the order given, that has one,
and when every level is empty it waits, without polling, until one gets a
job. So an urgent job written while low-priority work is waiting is served
next, ahead of everything already queued below it.

``broker.get(LEVELS, timeout=0)`` makes one try without waiting (``None``:
every level is empty). ``broker.get`` does not take part in the
first-come-first-served order of ``queue.get()`` waiters: if both wait on one
queue, either may get its next job.

Shutdown is a sentinel: the producer's last message is ``stop`` on the lowest
level, so it is served once every level is empty.

Run it from anywhere: ``python examples/asyncio_priority_queues.py [path/to/db]``
(default ``.broker.db`` in the current directory).
"""

from __future__ import annotations

import asyncio
import sys

from sansio_broker.adapters.asyncio import AsyncBroker, AsyncQueue, async_broker

LEVELS = ["tasks.high", "tasks.normal", "tasks.low"]  # highest first
STOP = "stop"


async def consume(broker: AsyncBroker, started: asyncio.Event, idle: asyncio.Event) -> list[str]:
    served: list[str] = []
    while True:
        found = await broker.get(LEVELS, timeout=0)  # one try: None if every level is empty
        if found is None:
            print("(every level is empty: waiting)")
            idle.set()
            found = await broker.get(LEVELS)  # waits for a job on any level
            assert found is not None  # no timeout: None only when one passes
        level, body = found
        if body == STOP:
            return served
        served.append(body)
        print(f"served {body!r:<20} from {level}")
        if len(served) == 2:
            started.set()  # the producer below waits for this
        await asyncio.sleep(0.02)  # the job's work


async def produce_late(broker: AsyncBroker, started: asyncio.Event, idle: asyncio.Event) -> None:
    """An urgent job arrives while the backlog is served; a late one once the consumer waits."""
    await started.wait()
    await AsyncQueue("tasks.high", broker).write("urgent: page on-call")
    print("(wrote 'urgent: page on-call' to tasks.high)")
    await idle.wait()
    await AsyncQueue("tasks.low", broker).write_many(["low: late report", STOP])  # one transaction
    print("(wrote 'low: late report' and the stop sentinel to tasks.low)")


async def main(path: str = ".broker.db") -> None:
    async with async_broker(path, pool_size=3) as broker:
        high, normal, low = (AsyncQueue(name, broker) for name in LEVELS)
        for queue in (high, normal, low):
            await queue.delete()  # start empty, so a second run prints the same

        # A backlog, written lowest priority first: write order does not matter.
        await low.write_many(["low: rebuild index", "low: send digest", "low: clean tmp"])
        await normal.write_many(["normal: resize photo", "normal: send email"])
        await high.write("high: charge card")

        started, idle = asyncio.Event(), asyncio.Event()
        async with asyncio.TaskGroup() as group:
            consumer = group.create_task(consume(broker, started, idle))
            group.create_task(produce_late(broker, started, idle))
        print("order served:", [body.split(":")[0] for body in consumer.result()])


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:2]))
