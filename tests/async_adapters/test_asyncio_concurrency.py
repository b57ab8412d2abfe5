"""The asyncio and the blocking adapter on one file at the same time (many tasks on one
broker, on both runtimes: test_async_concurrency.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from sansio_broker import Message
from sansio_broker.adapters.asyncio import async_broker
from sansio_broker.adapters.blocking import Broker
from tests.async_adapters.asyncio_support import QUIET, assert_clean, run
from tests.support.rawdb import meta, rows


def test_async_and_blocking_brokers_share_one_file_at_the_same_time(db_path: Path) -> None:
    """Async writes are read by the blocking Broker and blocking writes by the async one, concurrently."""
    count = 150
    from_async: list[Message] = []
    blocking_ids: list[int] = []
    errors: list[BaseException] = []

    with Broker(db_path, config=QUIET) as blocking:
        blocking.write("warmup", "x")  # the file exists before both sides start

        def blocking_side() -> None:
            try:
                deadline = time.monotonic() + 30
                for i in range(count):
                    blocking_ids.append(blocking.write("to_async", f"b{i}"))
                    message = blocking.claim("to_blocking")
                    if message is not None:
                        from_async.append(message)
                while len(from_async) < count and time.monotonic() < deadline:
                    message = blocking.claim("to_blocking")
                    if message is None:
                        time.sleep(0.001)
                    else:
                        from_async.append(message)
            except BaseException as exc:
                errors.append(exc)

        async def async_side() -> tuple[list[int], list[Message]]:
            async with async_broker(db_path, pool_size=4, config=QUIET) as broker:
                received: list[Message] = []

                async def write_all() -> list[int]:
                    return [await broker.write("to_blocking", f"a{i}") for i in range(count)]

                async def read_all() -> None:
                    deadline = time.monotonic() + 30
                    while len(received) < count and time.monotonic() < deadline:
                        message = await broker.claim("to_async")
                        if message is None:
                            await asyncio.sleep(0.001)
                        else:
                            received.append(message)

                async_ids, _ = await asyncio.gather(write_all(), read_all())
                await assert_clean(broker)
                return async_ids, received

        thread = threading.Thread(target=blocking_side)
        thread.start()
        try:
            async_ids, from_blocking = run(async_side())
        finally:
            thread.join(60)
        assert not errors, errors

    assert [m.body for m in from_blocking] == [f"b{i}" for i in range(count)]  # FIFO across adapters
    assert [m.id for m in from_blocking] == blocking_ids
    assert [m.body for m in from_async] == [f"a{i}" for i in range(count)]
    assert [m.id for m in from_async] == async_ids
    everything = async_ids + blocking_ids
    assert len(set(everything)) == len(everything)
    assert meta(db_path)["last_ts"] == max(ts for _, _, ts, _ in rows(db_path))


def test_transactions_of_both_adapters_interleave(db_path: Path) -> None:
    """Claim-and-write transactions from both adapters on one queue: each job done exactly once."""
    jobs = [f"job{i}" for i in range(120)]
    errors: list[BaseException] = []

    with Broker(db_path, config=QUIET) as blocking:
        blocking.write_many("jobs", jobs)

        def blocking_worker() -> None:
            try:
                while True:
                    with blocking.transaction():
                        message = blocking.claim("jobs")
                        if message is None:
                            return
                        blocking.write("done", f"{message.body} blocking")
            except BaseException as exc:
                errors.append(exc)

        async def async_workers() -> None:
            async with async_broker(db_path, pool_size=3, config=QUIET) as broker:

                async def worker() -> None:
                    while True:
                        async with broker.transaction():
                            message = await broker.claim("jobs")
                            if message is None:
                                return
                            await broker.write("done", f"{message.body} async")

                await asyncio.gather(*(worker() for _ in range(3)))
                await assert_clean(broker)

        thread = threading.Thread(target=blocking_worker)
        thread.start()
        try:
            run(async_workers())
        finally:
            thread.join(60)
        assert not errors, errors
        done = [m.body for m in blocking.peek_many("done", 1000)]

    assert sorted(d.split()[0] for d in done) == sorted(jobs)
    assert all(c == 1 for q, _, _, c in rows(db_path) if q == "jobs")
