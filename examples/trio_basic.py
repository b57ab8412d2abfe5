"""The trio adapter: write and read, a nursery of workers, an at-least-once batch.

``trio_broker`` gives every pooled SQLite connection its own worker thread
(never trio's global thread limiter), and each operation is one hop there.
The same operations as the asyncio adapter, under trio:

1. ``write`` returns the new message's ID; ``read`` claims the oldest body.
2. A nursery of workers claims from one queue until it is empty: every
   ``claim`` commits in its own transaction, so no two workers get the same job.
3. ``stream(commit_interval=50)`` hands out bodies in batches of 50, at least
   once: a batch commits when the next one is asked for, and leaving the loop
   early rolls the open batch back, so it is delivered again.

Run it from anywhere: ``python examples/trio_basic.py [path/to/db]``.
Without a path it uses ``.broker.db`` in the current directory, the same
default file SimpleBroker's ``broker`` CLI uses.
"""

from __future__ import annotations

import sys
from collections import Counter
from functools import partial

import trio

from sansio_broker.adapters.trio import TrioQueue, trio_broker

WORKERS = 4
JOBS = 100
EVENTS = 120


async def work(name: str, queue: TrioQueue, done_by: dict[str, list[str]]) -> None:
    while (job := await queue.claim()) is not None:  # Message(body, id), or None once empty
        await trio.sleep(0.001)  # the job's work
        done_by[job.body].append(name)


async def main(path: str = ".broker.db") -> None:
    async with trio_broker(path, pool_size=WORKERS) as broker:
        # 1. Write and read.
        greetings = TrioQueue("trio_basic.greetings", broker)
        await greetings.delete()  # start empty, so a second run prints the same
        first = await greetings.write("hello")
        second = await greetings.write("world")
        print(f"write returned IDs {first} and {second} (increasing: {first < second})")
        print("read(), claimed:", await greetings.read())
        print("read(), claimed:", await greetings.read())
        print("read() on an empty queue:", await greetings.read())

        # 2. A nursery of workers claiming until the queue is empty.
        jobs = TrioQueue("trio_basic.jobs", broker)
        await jobs.delete()
        await jobs.write_many([f"job {n}" for n in range(JOBS)])  # one transaction
        done_by: dict[str, list[str]] = {f"job {n}": [] for n in range(JOBS)}  # job -> workers that did it
        async with trio.open_nursery() as nursery:
            for k in range(WORKERS):
                nursery.start_soon(work, f"worker-{k}", jobs, done_by)
        per_worker = Counter(name for names in done_by.values() for name in names)
        for name in sorted(per_worker):
            print(f"{name} did {per_worker[name]} jobs")
        once = sum(len(names) == 1 for names in done_by.values())
        print(f"{once} of {JOBS} jobs done exactly once; left in the queue: {await jobs.size()}")

        # 3. At least once, in batches of 50.
        events = TrioQueue("trio_basic.events", broker)
        await events.delete()
        await events.write_many([f"event {n}" for n in range(EVENTS)])
        seen: list[str] = []
        async with events.stream(commit_interval=50) as batches:  # closed on leaving the block
            async for body in batches:
                seen.append(body)
                if len(seen) == 70:  # batch one (50) is committed; batch two (20 seen so far) is rolled back
                    break
        print(f"stream(commit_interval=50) stopped after {len(seen)}; pending now: {await events.size()}")
        async for body in events.stream(commit_interval=50):
            seen.append(body)  # handle idempotently: events 50..69 come again
        again = [body for body, count in Counter(seen).items() if count > 1]
        print(f"delivered twice: {len(again)} ({again[0]} .. {again[-1]}); lost: {EVENTS - len(set(seen))}")
        print("pending events now:", await events.size())


if __name__ == "__main__":
    trio.run(partial(main, *sys.argv[1:2]))
