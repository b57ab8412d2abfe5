"""A worker process of the PostgreSQL multi-process tests: ours or simplebroker-pg's.

    python pg_worker.py PROGRAM ROLE DSN SCHEMA ARGS...

PROGRAM is ``ours`` (the blocking ``Broker``), ``asyncio`` (``async_broker``),
``trio`` (``trio_broker``) or ``sbpg`` (simplebroker 8.7.2's ``Queue`` on a simplebroker-pg 4.7.2
``PostgresRunner``); each opens the one schema of the test. Roles, with
the same ARGS for every program:

    writer  QUEUE TAG COUNT MODE DONE_DIR
    claimer QUEUE DONE_DIR UPSTREAM MODE
    mover   SOURCE TARGET DONE_DIR UPSTREAM MARK_DIR TAG MODE

Auto-vacuum: ``OURS_AUTO_VACUUM`` and ``SBPG_AUTO_VACUUM`` (``1``, the
default, or ``0``: off) for our processes and simplebroker-pg's.

As ``mp_worker.py``: each worker opens the schema, prints ``ready``, waits
for ``go``, works, and prints one JSON line ``[[body, id], ...]`` in the
order it wrote, received or moved the messages. A writer writes
``TAG-<i>`` for i < COUNT and then creates ``DONE_DIR/TAG``; a claimer takes
until UPSTREAM markers exist in DONE_DIR and one more look finds nothing; a
mover moves SOURCE to TARGET likewise and then creates ``MARK_DIR/TAG``.

MODE, ours: writer ``single`` (``write``) or ``many`` (``write_many`` in
chunks); claimer ``claim``, ``claim_many_tx`` (``claim_many`` in a
transaction that also writes the IDs to the queue ``audit``), ``stream``
or ``stream_batch`` (at least once, batches of 5); mover ``one`` or
``many``. simplebroker-pg: writer ``single`` (``Queue.write``); claimer
``one`` (``read_one``) or ``many`` (``read_many(7)``); mover ``one``
(``move_one``) or ``many`` (``move_many(9)``). asyncio and trio: writer
``single`` or ``many``, claimer ``claim`` or ``claim_many`` (7).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from tests.support.workers import DEADLINE_SECONDS, drain, mark_done, wait_for_go

CHUNK = 25
AUTO_VACUUM = os.environ.get("OURS_AUTO_VACUUM", "1") == "1"
SBPG_AUTO_VACUUM = int(os.environ.get("SBPG_AUTO_VACUUM", "1"))
BATCH = 7
MOVE_BATCH = 9


# ---------------------------------------------------------------- ours, blocking
def ours(role: str, dsn: str, schema: str, args: list[str]) -> list[list[Any]]:
    from sansio_broker import Config, Message
    from sansio_broker.adapters.blocking import Broker

    with Broker(dsn, config=Config(backend_schema=schema, auto_vacuum=AUTO_VACUUM)) as broker:
        if role == "writer":
            queue, tag, count, mode, done_dir = args
            bodies = [f"{tag}-{i}" for i in range(int(count))]
            written: list[list[Any]] = []
            wait_for_go()
            if mode == "single":
                written = [[body, broker.write(queue, body)] for body in bodies]
            elif mode == "many":
                for start in range(0, len(bodies), CHUNK):
                    chunk = bodies[start : start + CHUNK]
                    written.extend([b, i] for b, i in zip(chunk, broker.write_many(queue, chunk), strict=True))
            else:
                raise SystemExit(f"unknown writer mode {mode!r}")
            mark_done(done_dir, tag)  # every write has committed
            return written

        if role == "claimer":
            queue, done_dir, upstream, mode = args
            take: Callable[[], list[Message]]
            if mode == "claim":
                take = lambda: [m] if (m := broker.claim(queue)) is not None else []  # noqa: E731
            elif mode == "claim_many_tx":

                def take() -> list[Message]:
                    with broker.transaction():
                        taken = broker.claim_many(queue, BATCH)
                        if taken:
                            broker.write_many("audit", [str(m.id) for m in taken])
                    return taken

            elif mode == "stream":
                take = lambda: list(broker.stream(queue))  # noqa: E731
            elif mode == "stream_batch":
                take = lambda: list(broker.stream(queue, commit_interval=5))  # noqa: E731
            else:
                raise SystemExit(f"unknown claimer mode {mode!r}")
            wait_for_go()
            return drain(lambda: [[m.body, m.id] for m in take()], done_dir, int(upstream))

        if role == "mover":
            source, target, done_dir, upstream, mark_dir, tag, mode = args
            if mode == "one":
                move = lambda: [m] if (m := broker.move(source, target)) is not None else []  # noqa: E731
            elif mode == "many":
                move = lambda: broker.move_many(source, target, MOVE_BATCH)  # noqa: E731
            else:
                raise SystemExit(f"unknown mover mode {mode!r}")
            wait_for_go()
            moved = drain(lambda: [[m.body, m.id] for m in move()], done_dir, int(upstream))
            mark_done(mark_dir, tag)
            return moved
    raise SystemExit(f"unknown role {role!r}")


# ---------------------------------------------------------------- simplebroker-pg
def sbpg(role: str, dsn: str, schema: str, args: list[str]) -> list[list[Any]]:
    from simplebroker import Queue, resolve_config
    from simplebroker_pg import PostgresRunner

    runner = PostgresRunner(dsn, schema=schema)
    queue_name = args[0]
    config = resolve_config(override={"BROKER_AUTO_VACUUM": SBPG_AUTO_VACUUM})
    queue = Queue(queue_name, runner=runner, persistent=True, config=config)
    try:
        queue.peek_one()  # opens the schema (and its pool) before the race, as ours does
        if role == "writer":
            _, tag, count, mode, done_dir = args
            if mode != "single":
                raise SystemExit(f"unknown writer mode {mode!r}")
            bodies = [f"{tag}-{i}" for i in range(int(count))]
            wait_for_go()
            written = [[body, queue.write(body)] for body in bodies]
            mark_done(done_dir, tag)
            return written

        if role == "claimer":
            _, done_dir, upstream, mode = args
            take: Callable[[], list[tuple[str, int]]]
            if mode == "one":
                take = lambda: [m] if (m := queue.read_one(with_timestamps=True)) is not None else []  # noqa: E731
            elif mode == "many":
                take = lambda: queue.read_many(BATCH, with_timestamps=True)  # noqa: E731
            else:
                raise SystemExit(f"unknown claimer mode {mode!r}")
            wait_for_go()
            return drain(lambda: [[b, i] for b, i in take()], done_dir, int(upstream))

        if role == "mover":
            _, target, done_dir, upstream, mark_dir, tag, mode = args
            if mode == "one":
                move = lambda: [m] if (m := queue.move_one(target, with_timestamps=True)) is not None else []  # noqa: E731
            elif mode == "many":
                move = lambda: queue.move_many(target, MOVE_BATCH, with_timestamps=True)  # noqa: E731
            else:
                raise SystemExit(f"unknown mover mode {mode!r}")
            wait_for_go()
            moved = drain(lambda: [[b, i] for b, i in move()], done_dir, int(upstream))
            mark_done(mark_dir, tag)
            return moved
    finally:
        queue.close()
        runner.close()
    raise SystemExit(f"unknown role {role!r}")


# ---------------------------------------------------------------- ours, asyncio and trio
async def ours_async(runtime: str, role: str, dsn: str, schema: str, args: list[str]) -> list[list[Any]]:
    """The writer and claimer roles on ``async_broker`` (asyncio) or ``trio_broker`` (trio)."""
    from sansio_broker import Config

    config = Config(backend_schema=schema, auto_vacuum=AUTO_VACUUM)
    if runtime == "asyncio":
        from sansio_broker.adapters.asyncio import async_broker as open_broker

        sleep = asyncio.sleep

        async def go() -> None:
            await asyncio.get_running_loop().run_in_executor(None, wait_for_go)

    else:
        import trio

        from sansio_broker.adapters.trio import trio_broker as open_broker

        sleep = trio.sleep

        async def go() -> None:
            await trio.to_thread.run_sync(wait_for_go)

    async with open_broker(dsn, pool_size=2, config=config) as broker:
        if role == "writer":
            queue, tag, count, mode, done_dir = args
            bodies = [f"{tag}-{i}" for i in range(int(count))]
            written: list[list[Any]] = []
            await go()
            if mode == "single":
                for body in bodies:
                    written.append([body, await broker.write(queue, body)])
            elif mode == "many":
                for start in range(0, len(bodies), CHUNK):
                    chunk = bodies[start : start + CHUNK]
                    ids = await broker.write_many(queue, chunk)
                    written.extend([b, i] for b, i in zip(chunk, ids, strict=True))
            else:
                raise SystemExit(f"unknown writer mode {mode!r}")
            mark_done(done_dir, tag)
            return written

        if role == "claimer":
            queue, done_dir, upstream, mode = args
            if mode not in ("claim", "claim_many"):
                raise SystemExit(f"unknown claimer mode {mode!r}")

            async def take() -> list[list[Any]]:
                if mode == "claim":
                    m = await broker.claim(queue)
                    return [[m.body, m.id]] if m is not None else []
                return [[m.body, m.id] for m in await broker.claim_many(queue, BATCH)]

            await go()
            # drain()'s loop, awaiting: done once every upstream marker exists and one more look is empty.
            got: list[list[Any]] = []
            deadline = time.monotonic() + DEADLINE_SECONDS
            while True:
                taken = await take()
                got.extend(taken)
                if taken:
                    continue
                if len(os.listdir(done_dir)) >= int(upstream):
                    taken = await take()
                    got.extend(taken)
                    if not taken:
                        return got
                    continue
                if time.monotonic() > deadline:
                    raise SystemExit(f"gave up with {len(got)} messages")
                await sleep(0.001)
    raise SystemExit(f"unknown role {role!r}")


def main(argv: list[str]) -> None:
    import json

    program, role, dsn, schema, *args = argv
    if program == "ours":
        result = ours(role, dsn, schema, args)
    elif program == "sbpg":
        result = sbpg(role, dsn, schema, args)
    elif program == "asyncio":
        result = asyncio.run(ours_async("asyncio", role, dsn, schema, args))
    elif program == "trio":
        import trio

        result = trio.run(ours_async, "trio", role, dsn, schema, args)
    else:
        raise SystemExit(f"unknown program {program!r}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
