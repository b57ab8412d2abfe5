"""The asyncio adapter's basic operations: write, read, peek, write_many, read_all, get.

It shows what the original async SimpleBroker example could not: ``write``
returns the new message's ID (allocated in the same transaction as the
insert, so IDs are strictly increasing), ``read(peek=True)`` looks without
claiming, and ``read_all`` hands over *every* pending body in one
transaction instead of claiming them all and returning only the first.
``get()`` waits for a message instead of answering ``None``, as
``asyncio.Queue.get()`` does; a timeout or a cancellation ends the wait and
loses nothing.

Run it from anywhere: ``python examples/asyncio_basic.py [path/to/db]``.
Without a path it uses ``.broker.db`` in the current directory, the same
default file SimpleBroker's ``broker`` CLI uses.
"""

from __future__ import annotations

import asyncio
import sys

from sansio_broker.adapters.asyncio import AsyncQueue, async_broker


async def main(path: str = ".broker.db") -> None:
    async with async_broker(path, pool_size=4) as broker:
        queue = AsyncQueue("asyncio_basic.greetings", broker)
        await queue.delete()  # start empty, so a second run prints the same

        first = await queue.write("hello")
        second = await queue.write("world")
        print(f"write returned IDs {first} and {second} (increasing: {first < second})")

        print("read(peek=True), not claimed:", await queue.read(peek=True))
        print("peek() with its ID:", await queue.peek())
        print("read(), claimed:", await queue.read())
        print("pending now:", await queue.size())

        ids = await queue.write_many(["a", "b", "c"])  # one transaction
        print(f"write_many returned IDs {ids} (increasing, after {second}: {[second, *ids] == sorted([second, *ids])})")
        print("read_all:", await queue.read_all())  # every pending body, claimed together
        print("read() on an empty queue:", await queue.read())

        waiting = asyncio.create_task(queue.get())  # waits: the queue is empty
        await queue.write("late")  # wakes it at once, no polling
        print("get() waited, then claimed:", await waiting)
        print("get(timeout=0.05) on an empty queue:", await queue.get(timeout=0.05))
        try:
            async with asyncio.timeout(0.05):
                await queue.get()
        except TimeoutError:
            print("asyncio.timeout() cancelled a waiting get(); pending now:", await queue.size())
        print("stats:", await queue.stats())


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:2]))
