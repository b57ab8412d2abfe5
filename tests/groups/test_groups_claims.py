"""Concurrent readers (issue 5, item 3), on the asyncio, trio and blocking adapters.

However the adapters serve claims that wait at the same moment, every
message goes to exactly one reader with its body, nothing is lost, the file
shows every message claimed and none pending, each reader receives
increasing IDs (oldest first), and no reader is told "empty" while a message
is still pending.
"""

from __future__ import annotations

import threading
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from sansio_broker import Message
from sansio_broker.adapters.blocking import Broker, Queue
from tests.groups.groups_support import QUIET, AsyncKit, check_claimed_exactly_once, run_threads

READERS = 100
MESSAGES = 2000


class EmptyWatch:
    """With no writers, once any claim has returned "empty", no claim started
    after that may return a message (the "empty" would have been a lie)."""

    def __init__(self) -> None:
        self.empty_seen = False
        self.lies = 0

    def started(self) -> bool:
        return self.empty_seen

    def ended(self, started_after_empty: bool, got: object) -> None:
        if got is None:
            self.empty_seen = True
        elif started_after_empty:
            self.lies += 1


def check_each_reader_oldest_first(per_reader: list[list[Message]]) -> None:
    for n, got in enumerate(per_reader):
        ids = [m.id for m in got]
        assert all(a < b for a, b in pairwise(ids)), f"reader {n} received IDs out of order: {ids[:10]}"


async def claim_until_empty(kit: AsyncKit, broker: Any, queue: str, style: int, watch: EmptyWatch) -> list[Message]:
    """Claim one message at a time until told the queue is empty.

    ``style`` picks the call: ``broker.claim``, ``Queue.claim``, or
    ``Queue.read`` (a body, mapped back to its message by the caller).
    """
    q = kit.queue(queue, broker)
    got: list[Message] = []
    while True:
        after_empty = watch.started()
        if style == 0:
            message = await broker.claim(queue)
        elif style == 1:
            message = await q.claim()
        else:
            body = await q.read()
            message = None if body is None else Message(body, -1)
        watch.ended(after_empty, message)
        if message is None:
            return got
        got.append(message)


def resolve(got: list[Message], ids_by_body: dict[str, int]) -> list[Message]:
    """Give ``Queue.read`` results (bodies only) their IDs back; bodies are unique."""
    return [m if m.id != -1 else Message(m.body, ids_by_body[m.body]) for m in got]


@pytest.mark.parametrize("pool_size", [None, 1], ids=["default_pool", "pool_1"])
def test_concurrent_claims_hand_each_message_to_one_reader(kit: AsyncKit, db_path: Path, pool_size: int | None) -> None:
    watch = EmptyWatch()

    async def main() -> None:
        async with kit.open(db_path, pool_size=pool_size) as broker:
            bodies = [f"m{i}" for i in range(MESSAGES)]
            written = dict(zip(await broker.write_many("q", bodies), bodies, strict=True))
            ids_by_body = {b: i for i, b in written.items()}
            per_reader = await kit.gather(
                [lambda n=n: claim_until_empty(kit, broker, "q", n % 3, watch) for n in range(READERS)]
            )
            per_reader = [resolve(got, ids_by_body) for got in per_reader]
            check_claimed_exactly_once(db_path, [m for got in per_reader for m in got], written, "q")
            check_each_reader_oldest_first(per_reader)
            assert await broker.claim("q") is None

    kit.run(main)
    assert watch.lies == 0, f"{watch.lies} claim(s) got a message after another was told the queue was empty"


def test_concurrent_claims_on_two_queues(kit: AsyncKit, db_path: Path) -> None:
    """Readers of two queues at once: each gets only its own queue's messages, each once."""
    watches = {"qa": EmptyWatch(), "qb": EmptyWatch()}

    async def main() -> None:
        async with kit.open(db_path) as broker:
            written = {}
            for queue in watches:
                bodies = [f"{queue}-{i}" for i in range(MESSAGES // 2)]
                written[queue] = dict(zip(await broker.write_many(queue, bodies), bodies, strict=True))
            ids_by_body = {b: i for w in written.values() for i, b in w.items()}
            readers = [("qa" if n % 2 else "qb", n % 3) for n in range(READERS)]
            per_reader = await kit.gather(
                [lambda q=q, s=s: claim_until_empty(kit, broker, q, s, watches[q]) for q, s in readers]
            )
            per_reader = [resolve(got, ids_by_body) for got in per_reader]
            for queue in watches:
                mine = [m for (q, _), got in zip(readers, per_reader, strict=True) if q == queue for m in got]
                check_claimed_exactly_once(db_path, mine, written[queue], queue)
            check_each_reader_oldest_first(per_reader)

    kit.run(main)
    assert all(w.lies == 0 for w in watches.values()), "a claim was told 'empty' while its queue had messages"


def test_claims_by_id_race_claims_of_the_oldest(kit: AsyncKit, db_path: Path) -> None:
    """Claims of one exact ID race plain claims: still each message exactly once."""

    async def main() -> None:
        async with kit.open(db_path) as broker:
            bodies = [f"m{i}" for i in range(600)]
            written = dict(zip(await broker.write_many("q", bodies), bodies, strict=True))
            targets = sorted(written)
            per_reader: list[list[Message]] = [[] for _ in range(READERS)]

            async def by_id(n: int) -> None:
                for ident in targets[n::50]:  # from the oldest on: the plain claimers want these too
                    message = await broker.claim("q", message_id=ident)
                    assert message is None or message == Message(written[ident], ident), message
                    if message is not None:
                        per_reader[n].append(message)

            async def oldest(n: int) -> None:
                while (message := await broker.claim("q")) is not None:
                    per_reader[n].append(message)

            await kit.gather([lambda n=n: by_id(n) if n < 50 else oldest(n) for n in range(READERS)])
            check_claimed_exactly_once(db_path, [m for got in per_reader for m in got], written, "q")
            check_each_reader_oldest_first(per_reader)

    kit.run(main)


def test_concurrent_writers_and_claimers_deliver_exactly_once(kit: AsyncKit, db_path: Path) -> None:
    """Claims and writes grouped at the same time: every written message is claimed once."""

    async def main() -> None:
        async with kit.open(db_path) as broker:
            written: dict[int, str] = {}
            per_reader: list[list[Message]] = [[] for _ in range(80)]
            writers_left = 20

            async def write(n: int) -> None:
                nonlocal writers_left
                for i in range(50):
                    body = f"w{n}-{i}"
                    written[await broker.write("q", body)] = body
                writers_left -= 1

            async def claim(n: int) -> None:
                while True:
                    done = writers_left == 0  # before looking: an empty look after it is final
                    message = await broker.claim("q")
                    if message is not None:
                        per_reader[n].append(message)
                    elif done:
                        return
                    else:
                        await kit.sleep(0.001)

            await kit.gather([lambda n=n: write(n) for n in range(20)] + [lambda n=n: claim(n) for n in range(80)])
            assert len(written) == 1000
            check_claimed_exactly_once(db_path, [m for got in per_reader for m in got], written, "q")
            check_each_reader_oldest_first(per_reader)

    kit.run(main)


# ------------------------------------------------------------- blocking
def blocking_claims(db_path: Path, queues: list[str], per_queue: int) -> None:
    """8 threads on one shared Broker claim until empty; threads alternate queues."""
    watches = {q: EmptyWatch() for q in queues}
    lock = threading.Lock()
    with Broker(db_path, config=QUIET) as broker:
        written = {}
        for queue in queues:
            bodies = [f"{queue}-{i}" for i in range(per_queue)]
            written[queue] = dict(zip(broker.write_many(queue, bodies), bodies, strict=True))
        per_reader: list[list[Message]] = [[] for _ in range(8)]
        readers = [queues[n % len(queues)] for n in range(8)]

        def claim(n: int, barrier: threading.Barrier) -> None:
            queue = readers[n]
            q = Queue(queue, broker)
            ids_by_body = {b: i for i, b in written[queue].items()}
            barrier.wait()
            while True:
                with lock:
                    after_empty = watches[queue].started()
                if n % 2:
                    message = broker.claim(queue)
                else:
                    body = q.read()
                    message = None if body is None else Message(body, ids_by_body[body])
                with lock:
                    watches[queue].ended(after_empty, message)
                if message is None:
                    return
                per_reader[n].append(message)

        run_threads(8, claim)
    for queue in queues:
        mine = [m for q, got in zip(readers, per_reader, strict=True) if q == queue for m in got]
        check_claimed_exactly_once(db_path, mine, written[queue], queue)
    check_each_reader_oldest_first(per_reader)
    assert all(w.lies == 0 for w in watches.values()), "a claim was told 'empty' while its queue had messages"


def test_blocking_threads_claim_each_message_once(db_path: Path) -> None:
    blocking_claims(db_path, ["q"], 800)


def test_blocking_threads_claim_from_two_queues(db_path: Path) -> None:
    blocking_claims(db_path, ["qa", "qb"], 400)
