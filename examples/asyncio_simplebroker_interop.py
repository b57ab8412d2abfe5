"""Our asyncio adapter and SimpleBroker on one file, in both directions.

sansio-broker writes SimpleBroker's files (schema v6) and allocates message
IDs exactly as SimpleBroker does, in the same transaction as the insert, so
the two programs can share a database, even at the same time: what one
writes the other reads, with the same message IDs, in one strict order.

Each side can also *wait* for the other: our ``get_message()`` is woken by
SimpleBroker's writes (our broker's watcher sees every other connection's
commit, within milliseconds), and SimpleBroker's ``QueueWatcher`` is woken
by ours, on its own polling schedule.

SimpleBroker's ``Queue`` is blocking, so its calls run in a one-thread
executor (its persistent connection stays on that thread) and never block
the event loop. Needs the ``simplebroker`` package (8.x); without it this
prints that it is skipped and exits 0.

Run it from anywhere: ``python examples/asyncio_simplebroker_interop.py [path/to/db]``
(default ``.broker.db`` in the current directory, which is also the ``broker``
CLI's default: try ``broker list --stats`` after).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

from sansio_broker import Message
from sansio_broker.adapters.asyncio import AsyncQueue, async_broker

T = TypeVar("T")


async def main(path: str = ".broker.db") -> None:
    try:
        import simplebroker
    except ImportError:
        async with async_broker(path):  # still creates (or checks) the file
            pass
        print("simplebroker is not installed: interop example skipped")
        return

    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="simplebroker") as sb_thread:

        async def blocking(call: Callable[[], T]) -> T:
            return await loop.run_in_executor(sb_thread, call)

        async with async_broker(path, pool_size=2) as broker:
            to_sb = AsyncQueue("asyncio_interop.to_sb", broker)
            from_sb = AsyncQueue("asyncio_interop.from_sb", broker)
            watched = AsyncQueue("asyncio_interop.watched", broker)
            for queue in (to_sb, from_sb, watched):
                await queue.delete()  # start empty, so a second run prints the same
            sb_in = await blocking(lambda: simplebroker.Queue(to_sb.name, db_path=path, persistent=True))
            sb_out = await blocking(lambda: simplebroker.Queue(from_sb.name, db_path=path, persistent=True))
            try:
                print(f"simplebroker {simplebroker.__version__} and sansio-broker on {path}")

                # We write; SimpleBroker reads.
                ours = [await to_sb.write("hello from asyncio"), *await to_sb.write_many(["one", "two"])]
                received = await blocking(lambda: sb_in.read_many(10, with_timestamps=True))  # [(body, id)]
                for (body, ident), written in zip(received, ours, strict=True):
                    print(f"asyncio wrote ID {written}, SimpleBroker read {body!r} with ID {ident}")
                print("same IDs:", [ident for _, ident in received] == ours)

                # SimpleBroker writes; we wait for it.
                async def receive(count: int) -> list[Message]:
                    claimed = []
                    for _ in range(count):
                        message = await from_sb.get_message(timeout=30)  # waits; 30 s: a hang guard
                        assert message is not None, "nothing arrived within 30 s"
                        print(f"asyncio got {message.body!r} with ID {message.id}")
                        claimed.append(message)
                    return claimed

                receiver = asyncio.create_task(receive(4))  # waits: nothing written yet
                theirs = [await blocking(partial(sb_out.write, f"hello from SimpleBroker {n}")) for n in range(2)]
                ours_now = await from_sb.write("and one from asyncio in between")
                theirs.append(await blocking(lambda: sb_out.write("SimpleBroker again")))
                ids = [message.id for message in await receiver]
                print("same IDs:", ids == sorted([*theirs, ours_now]))
                print("one strict order across both programs:", ids == sorted(set(ids)) and ids[0] > ours[-1])

                # We write; SimpleBroker's QueueWatcher (a polling thread) wakes up for it.
                seen: asyncio.Future[tuple[str, int]] = loop.create_future()

                def deliver(body: str, ident: int) -> None:  # on the event loop
                    if not seen.done():
                        seen.set_result((body, ident))

                def handler(body: str, ident: int) -> None:  # runs on the watcher's thread
                    loop.call_soon_threadsafe(deliver, body, ident)

                watcher = simplebroker.QueueWatcher(watched.name, handler, db=path)
                watcher.start()
                try:
                    written_id = await watched.write("wake up, SimpleBroker")
                    body, ident = await asyncio.wait_for(seen, 30)  # 30 s: a hang guard
                    print(f"SimpleBroker's QueueWatcher got {body!r}, same ID: {ident == written_id}")
                finally:
                    await loop.run_in_executor(None, watcher.stop)
            finally:
                await blocking(sb_in.close)
                await blocking(sb_out.close)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:2]))
