"""At-least-once batches: ``async for body in queue.stream(commit_interval=50)``.

With ``commit_interval=50`` the stream claims 50 messages in one
transaction and commits them only when the loop asks for the 51st, so a
consumer that stops half-way through a batch (``break``, an exception, a
cancellation, a crash) gets that whole batch delivered again: nothing is
lost, some messages may be seen twice. It is much faster than one
transaction per message (``commit_interval=1``, exactly once), and the price
is idempotent processing.

Two more things it shows: while a batch is open it holds the database's
write lock, so a write by the same task inside the loop raises
``TransactionError`` at once (collect results, write them after the loop or
from another task); and ``async with`` closes the stream, rolling back the
open batch, right where the block is left. A bare ``async for ...: break``
works too: the dropped stream is closed in the background.

Run it from anywhere: ``python examples/asyncio_batch_processing.py [path/to/db]``
(default ``.broker.db`` in the current directory).
"""

from __future__ import annotations

import asyncio
import sys

from sansio_broker import TransactionError
from sansio_broker.adapters.asyncio import AsyncQueue, async_broker

MESSAGES = 120
STOP_AFTER = 70  # mid-way through the second batch


async def main(path: str = ".broker.db") -> None:
    async with async_broker(path) as broker:
        events = AsyncQueue("asyncio_batch.events", broker)
        results = AsyncQueue("asyncio_batch.results", broker)
        await events.delete()  # start empty, so a second run prints the same
        await results.delete()
        await events.write_many([f"event {n}" for n in range(MESSAGES)])
        print(f"wrote {MESSAGES} events")

        # First consumer: stops after 70, i.e. 20 messages into batch two.
        first: list[str] = []
        async with events.stream(commit_interval=50) as batches:  # closed on leaving the block
            async for body in batches:
                first.append(body)
                if len(first) == 1:
                    try:
                        await results.write(f"processed {body}")
                    except TransactionError:
                        print("a write inside the batch raised TransactionError (the batch holds the write lock)")
                if len(first) == STOP_AFTER:
                    break  # batch one (50) is committed; batch two (20 seen so far) is rolled back
        print(f"first consumer saw {len(first)} events ({first[0]} .. {first[-1]}) and stopped")
        print("pending after the break:", await events.size())

        # Second consumer: gets the rolled-back batch again, then the rest.
        second = [body async for body in events.stream(commit_interval=50)]
        again = sorted(set(first) & set(second), key=lambda body: int(body.split()[1]))
        print(f"second consumer saw {len(second)} events ({second[0]} .. {second[-1]})")
        lost = MESSAGES - len(set(first) | set(second))
        print(f"delivered twice: {len(again)} ({again[0]} .. {again[-1]}); lost: {lost}")

        # Results are written outside the batches.
        await results.write_many([f"processed {body}" for body in dict.fromkeys(first + second)])
        print("results written after the loops:", await results.size())
        print("pending events now:", await events.size())


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:2]))
