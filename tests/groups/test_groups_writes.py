"""Concurrent writers (issue 5, items 1 and 2), on the asyncio, trio and blocking adapters.

However the adapters group writes that wait at the same moment, every caller
gets its own ID, each producer's IDs increase in the order it wrote, the file
holds exactly the messages whose IDs were returned, a write is visible to
anyone the moment it returns, and reading back returns ID order. A write with
bad input fails alone, with the documented error, and nothing of it lands.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import pytest

from sansio_broker import (
    BrokerError,
    DatabaseError,
    InvalidTypeError,
    MessageError,
    MessageTypeError,
    QueueNameError,
    QueueNameTypeError,
)
from sansio_broker.adapters.blocking import Broker
from tests.groups.groups_support import QUIET, AsyncKit, Written, check_read_back, check_written, run_threads
from tests.support.rawdb import connect

ASYNC_PRODUCERS = 100
ASYNC_PER_PRODUCER = 20
THREADS = 8
PER_THREAD = 100
QUEUES = [f"q{k}" for k in range(5)]


def committed(raw: Any, ident: int) -> tuple[str, str] | None:
    """(queue, body) of ``ident`` as a separate plain-sqlite3 reader sees it now."""
    row = raw.execute("SELECT queue, body FROM messages WHERE ts = ?", (ident,)).fetchone()
    return None if row is None else tuple(row)


# ------------------------------------------------- item 1: async single writes
@pytest.mark.parametrize("pool_size", [None, 1], ids=["default_pool", "pool_1"])
def test_concurrent_writes_get_distinct_ids_and_all_land(kit: AsyncKit, db_path: Path, pool_size: int | None) -> None:
    producers: list[Written] = [[] for _ in range(ASYNC_PRODUCERS)]
    not_visible: list[int] = []

    async def main() -> None:
        async with kit.open(db_path, pool_size=pool_size) as broker:
            with connect(db_path) as raw:

                async def produce(n: int) -> None:
                    for i in range(ASYNC_PER_PRODUCER):
                        body = f"p{n}-{i}"
                        ident = await broker.write("q", body)
                        producers[n].append(("q", body, ident))
                        # Returned means committed: another connection sees it now.
                        if n % 10 == 0 and committed(raw, ident) != ("q", body):
                            not_visible.append(ident)

                await kit.gather([lambda n=n: produce(n) for n in range(ASYNC_PRODUCERS)])
            check_written(db_path, producers)
            check_read_back(await broker.claim_all("q"), producers, "q")

    kit.run(main)
    assert not not_visible, f"{len(not_visible)} write(s) returned before another connection could see them"
    assert sum(map(len, producers)) == ASYNC_PRODUCERS * ASYNC_PER_PRODUCER


def test_concurrent_write_and_write_many_mixed(kit: AsyncKit, db_path: Path) -> None:
    """``write``, ``write_many`` (of 0 to 6 bodies) and ``Queue.write`` at once."""
    producers: list[Written] = [[] for _ in range(60)]

    async def main() -> None:
        async with kit.open(db_path) as broker:
            queue = kit.queue("q", broker)

            async def produce(n: int) -> None:
                rng = random.Random(n)
                for i in range(15):
                    kind = rng.choice(["write", "many", "queue"])
                    if kind == "many":
                        bodies = [f"p{n}-{i}.{j}" for j in range(rng.randint(0, 6))]
                        ids = await broker.write_many("q", bodies)
                        assert len(ids) == len(bodies)
                        producers[n] += [("q", b, ident) for b, ident in zip(bodies, ids, strict=True)]
                    else:
                        body = f"p{n}-{i}"
                        ident = await (broker.write("q", body) if kind == "write" else queue.write(body))
                        producers[n].append(("q", body, ident))

            await kit.gather([lambda n=n: produce(n) for n in range(len(producers))])
            check_written(db_path, producers)
            check_read_back(await broker.claim_all("q"), producers, "q")

    kit.run(main)


def test_concurrent_writes_to_several_queues(kit: AsyncKit, db_path: Path) -> None:
    """Writers spread over five queues at once: each message lands in its own queue."""
    producers: list[Written] = [[] for _ in range(ASYNC_PRODUCERS)]

    async def main() -> None:
        async with kit.open(db_path) as broker:

            async def produce(n: int) -> None:
                for i in range(ASYNC_PER_PRODUCER):
                    queue = QUEUES[(n + i) % len(QUEUES)]
                    if i % 7 == 6:
                        bodies = [f"p{n}-{i}a", f"p{n}-{i}b"]
                        ids = await broker.write_many(queue, bodies)
                        producers[n] += [(queue, b, ident) for b, ident in zip(bodies, ids, strict=True)]
                    else:
                        body = f"p{n}-{i}"
                        producers[n].append((queue, body, await broker.write(queue, body)))

            await kit.gather([lambda n=n: produce(n) for n in range(ASYNC_PRODUCERS)])
            check_written(db_path, producers)
            assert sorted(await broker.list_queues()) == QUEUES
            # Read every queue back, all at once.
            read = await kit.gather([lambda q=q: broker.claim_all(q) for q in QUEUES])
            for queue, messages in zip(QUEUES, read, strict=True):
                check_read_back(messages, producers, queue)

    kit.run(main)


# ------------------------------------------------ item 1: blocking threads
def test_blocking_threads_get_distinct_ids_and_all_land(db_path: Path) -> None:
    producers: list[Written] = [[] for _ in range(THREADS)]
    not_visible: list[int] = []

    with Broker(db_path, config=QUIET) as broker:

        def produce(n: int, barrier: threading.Barrier) -> None:
            barrier.wait()
            with connect(db_path) as raw:
                for i in range(PER_THREAD):
                    body = f"t{n}-{i}"
                    ident = broker.write("q", body)
                    producers[n].append(("q", body, ident))
                    if committed(raw, ident) != ("q", body):
                        not_visible.append(ident)

        run_threads(THREADS, produce)
        check_written(db_path, producers)
        check_read_back(broker.claim_all("q"), producers, "q")
    assert not not_visible, f"{len(not_visible)} write(s) returned before another connection could see them"


def test_blocking_threads_mixed_writes_to_several_queues(db_path: Path) -> None:
    producers: list[Written] = [[] for _ in range(THREADS)]

    with Broker(db_path, config=QUIET) as broker:

        def produce(n: int, barrier: threading.Barrier) -> None:
            rng = random.Random(n)
            barrier.wait()
            for i in range(PER_THREAD // 2):
                queue = rng.choice(QUEUES)
                if rng.random() < 0.3:
                    bodies = [f"t{n}-{i}.{j}" for j in range(rng.randint(0, 5))]
                    ids = broker.write_many(queue, bodies)
                    producers[n] += [(queue, b, ident) for b, ident in zip(bodies, ids, strict=True)]
                else:
                    body = f"t{n}-{i}"
                    producers[n].append((queue, body, broker.write(queue, body)))

        run_threads(THREADS, produce)
        check_written(db_path, producers)
        for queue in QUEUES:
            check_read_back(broker.claim_all(queue), producers, queue)


# ------------------------------------------------- item 2: bad input fails alone
MAX_SIZE = 64
SMALL = {**QUIET, "BROKER_MAX_MESSAGE_SIZE": str(MAX_SIZE)}

# (what, queue, body, the documented error)
BAD_WRITES: list[tuple[str, Any, Any, type[Exception]]] = [
    ("too large", "q", "x" * (MAX_SIZE + 1), MessageError),
    ("too large in UTF-8", "q", "é" * (MAX_SIZE // 2 + 1), MessageError),
    ("bytes body", "q", b"bytes", MessageTypeError),
    ("int body", "q", 42, MessageTypeError),
    ("None body", "q", None, MessageTypeError),
    ("lone surrogate", "q", "a\ud800b", MessageError),
    ("space in queue name", "no spaces", "x", QueueNameError),
    ("queue name starts with a hyphen", "-q", "x", QueueNameError),
    ("empty queue name", "", "x", QueueNameError),
    ("queue name too long", "q" * 513, "x", QueueNameError),
    ("queue name not a str", 7, "x", QueueNameTypeError),
]
# Bodies right at the limit are good.
EDGE_GOOD = ["y" * MAX_SIZE, "é" * (MAX_SIZE // 2)]

# (what, queue, bodies, the documented error); the good bodies must not land either.
BAD_BATCHES: list[tuple[str, Any, Any, type[Exception]]] = [
    ("one too large", "q", ["batch0-a", "x" * (MAX_SIZE + 1), "batch0-b"], MessageError),
    ("one bytes", "q", ["batch1-a", b"batch1-b"], MessageTypeError),
    ("one lone surrogate", "q", ["batch2-a", "batch2-\udfff"], MessageError),
    ("bad queue name", "bad name", ["batch3-a"], QueueNameError),
    ("a str, not a list", "q", "batch4", InvalidTypeError),
]


def check_error(what: str, exc: BaseException | None, expected: type[Exception]) -> None:
    assert exc is not None, f"{what}: no error raised"
    assert isinstance(exc, expected) and isinstance(exc, BrokerError), f"{what}: {exc!r}, expected {expected.__name__}"
    # Value errors and type errors stay apart (SimpleBroker's conventions).
    assert isinstance(exc, TypeError) == issubclass(expected, TypeError), f"{what}: {exc!r}"


def plan(n: int, per_producer: int) -> list[tuple[str, Any, Any, type[Exception] | None]]:
    """Producer ``n``'s writes: good ones, with a bad one at a rotating spot for most producers."""
    steps: list[tuple[str, Any, Any, type[Exception] | None]] = [
        ("good", "q", f"p{n}-{i}", None) for i in range(per_producer)
    ]
    if n % 4 != 0:  # three producers in four write something bad
        what, queue, body, error = BAD_WRITES[n % len(BAD_WRITES)]
        steps.insert(n % per_producer, (what, queue, body, error))
    if n % 9 == 0:
        steps.insert(1, ("good edge", "q", EDGE_GOOD[(n // 9) % 2], None))
    return steps


def test_bad_writes_fail_alone_among_concurrent_writers(kit: AsyncKit, db_path: Path) -> None:
    producers: list[Written] = [[] for _ in range(100)]
    failures: list[tuple[str, BaseException | None, type[Exception]]] = []

    async def main() -> None:
        async with kit.open(db_path, config=SMALL) as broker:

            async def produce(n: int) -> None:
                for what, queue, body, error in plan(n, 5):
                    try:
                        ident = await broker.write(queue, body)
                    except BrokerError as exc:
                        if error is None:
                            raise
                        failures.append((what, exc, error))
                        continue
                    if error is not None:
                        failures.append((what, None, error))  # it should have failed
                        continue
                    producers[n].append((queue, body, ident))

            await kit.gather([lambda n=n: produce(n) for n in range(len(producers))])
            check_read_back(await broker.peek_many("q", 10_000), producers, "q")

    kit.run(main)
    assert len(failures) == 75
    for what, exc, expected in failures:
        check_error(what, exc, expected)
    check_written(db_path, producers)  # exact: nothing of a bad write landed
    assert sum(map(len, producers)) == 100 * 5 + 12


def test_bad_write_many_fails_alone_among_concurrent_writers(kit: AsyncKit, db_path: Path) -> None:
    producers: list[Written] = [[] for _ in range(60)]
    failures: list[tuple[str, BaseException | None, type[Exception]]] = []

    async def main() -> None:
        async with kit.open(db_path, config=SMALL) as broker:

            async def good(n: int) -> None:
                for i in range(10):
                    if i % 3 == 2:
                        bodies = [f"p{n}-{i}a", f"p{n}-{i}b"]
                        ids = await broker.write_many("q", bodies)
                        producers[n] += [("q", b, ident) for b, ident in zip(bodies, ids, strict=True)]
                    else:
                        producers[n].append(("q", f"p{n}-{i}", await broker.write("q", f"p{n}-{i}")))

            async def bad(k: int) -> None:
                await kit.sleep(0.001 * k)
                what, queue, bodies, error = BAD_BATCHES[k % len(BAD_BATCHES)]
                try:
                    await broker.write_many(queue, bodies)
                except BrokerError as exc:
                    failures.append((what, exc, error))
                else:
                    failures.append((what, None, error))

            await kit.gather(
                [lambda n=n: good(n) for n in range(len(producers))] + [lambda k=k: bad(k) for k in range(20)]
            )

    kit.run(main)
    assert len(failures) == 20
    for what, exc, expected in failures:
        check_error(what, exc, expected)
    check_written(db_path, producers)  # exact: no body of a failed batch landed


def test_blocking_bad_writes_fail_alone_among_threads(db_path: Path) -> None:
    producers: list[Written] = [[] for _ in range(THREADS)]
    failures: list[tuple[str, BaseException | None, type[Exception]]] = []
    lock = threading.Lock()

    with Broker(db_path, config=SMALL) as broker:

        def produce(n: int, barrier: threading.Barrier) -> None:
            steps: list[tuple[str, Any, Any, type[Exception] | None]] = [
                ("good", "q", f"t{n}-{i}", None) for i in range(40)
            ]
            # Every thread writes every kind of bad message, and one bad batch.
            for k, (what, queue, body, error) in enumerate(BAD_WRITES):
                steps.insert(3 * k + n % 3, (what, queue, body, error))
            steps.insert(20 + n, ("bad batch", "q", [f"t{n}-batch", "x" * (MAX_SIZE + 1)], MessageError))
            steps.insert(5 + n, ("good edge", "q", EDGE_GOOD[n % 2], None))
            barrier.wait()
            for what, queue, body, error in steps:
                try:
                    if what == "bad batch":
                        broker.write_many(queue, body)
                        ident = None
                    else:
                        ident = broker.write(queue, body)
                except BrokerError as exc:
                    if error is None:
                        raise
                    with lock:
                        failures.append((what, exc, error))
                    continue
                if error is not None:
                    with lock:
                        failures.append((what, None, error))
                    continue
                assert ident is not None
                producers[n].append((queue, body, ident))

        run_threads(THREADS, produce)
        check_read_back(broker.peek_many("q", 10_000), producers, "q")
    assert len(failures) == THREADS * (len(BAD_WRITES) + 1)
    for what, exc, expected in failures:
        check_error(what, exc, expected)
    check_written(db_path, producers)


# ------------------------------- item 2: a write the database itself refuses
POISON_TRIGGER = (
    "CREATE TRIGGER poison BEFORE INSERT ON messages WHEN NEW.body LIKE 'poison%' "
    "BEGIN SELECT RAISE(ABORT, 'poisoned body'); END"
)


def poison(path: Path) -> None:
    """Create the file, then make SQLite refuse any body starting with "poison": an
    error only the database sees, inside whatever transaction carries the write."""
    with Broker(path, config=QUIET):
        pass
    with connect(path) as raw:
        raw.execute(POISON_TRIGGER)


def test_a_write_the_database_refuses_fails_alone(kit: AsyncKit, db_path: Path) -> None:
    poison(db_path)
    producers: list[Written] = [[] for _ in range(100)]
    refused: list[tuple[str, BaseException]] = []

    async def main() -> None:
        async with kit.open(db_path) as broker:

            async def produce(n: int) -> None:
                for i in range(5):
                    body = f"poison-{n}-{i}" if (n + i) % 7 == 0 else f"p{n}-{i}"
                    batch = i == 3 and n % 5 == 0  # a write_many holding a poisoned body
                    try:
                        if batch:
                            bodies = [f"p{n}-{i}a", body, f"p{n}-{i}b"]
                            ids = await broker.write_many("q", bodies)
                            producers[n] += [("q", b, ident) for b, ident in zip(bodies, ids, strict=True)]
                        else:
                            producers[n].append(("q", body, await broker.write("q", body)))
                    except BrokerError as exc:
                        refused.append((body, exc))

            await kit.gather([lambda n=n: produce(n) for n in range(len(producers))])

    kit.run(main)
    expected = sorted(f"poison-{n}-{i}" for n in range(100) for i in range(5) if (n + i) % 7 == 0)
    assert sorted(body for body, _ in refused) == expected, "exactly the poisoned writes must fail"
    assert all(isinstance(exc, DatabaseError) for _, exc in refused), {type(e).__name__ for _, e in refused}
    check_written(db_path, producers)  # exact: no body of a refused write_many landed


def test_blocking_a_write_the_database_refuses_fails_alone(db_path: Path) -> None:
    poison(db_path)
    producers: list[Written] = [[] for _ in range(THREADS)]
    refused: list[str] = []

    with Broker(db_path, config=QUIET) as broker:

        def produce(n: int, barrier: threading.Barrier) -> None:
            barrier.wait()
            for i in range(50):
                body = f"poison-{n}-{i}" if (n + i) % 7 == 0 else f"t{n}-{i}"
                try:
                    producers[n].append(("q", body, broker.write("q", body)))
                except DatabaseError:
                    refused.append(body)

        run_threads(THREADS, produce)
    assert sorted(refused) == sorted(f"poison-{n}-{i}" for n in range(THREADS) for i in range(50) if (n + i) % 7 == 0)
    check_written(db_path, producers)
