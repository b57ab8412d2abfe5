"""Cancelled readers and writers lose nothing (issue 5, item 4), asyncio and trio.

Under load (writers writing, 100 readers claiming), a thousand reader
operations are cancelled at random moments: ``task.cancel()`` and
``asyncio.timeout`` with tiny random delays on asyncio; ``trio.move_on_after``
and a cancelled nursery scope on trio. Afterwards every message written is
either handed to exactly one reader that was not cancelled, or still pending
in the file: never claimed without being handed over, never handed over twice.

The strict promise (claimed rows == messages handed over) also covers a
reader cancelled while its claim's COMMIT ran (``CommitOutcomeUnknown``): the
group-commit design hands that message to another reader or puts it back.
A companion test checks the weaker promise, claimed-but-not-handed-over
messages bounded by the ``CommitOutcomeUnknown`` count.

Cancelled writers: a write that raised plain cancellation is not in the file;
one that raised ``CommitOutcomeUnknown`` may or may not be (a ``write_many``
all or nothing); one that returned an ID is, with its body.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from sansio_broker.adapters.asyncio import AsyncQueue, async_broker
from sansio_broker.adapters.asyncio import CommitOutcomeUnknown as AsyncioOutcomeUnknown
from sansio_broker.adapters.trio import CommitOutcomeUnknown as TrioOutcomeUnknown
from sansio_broker.adapters.trio import TrioQueue, trio_broker
from tests.groups.groups_support import QUIET, run_asyncio, run_trio
from tests.support.rawdb import rows

CANCELS = 1000  # reader operations actually cancelled per test
READERS = 100
WRITERS = 10
PER_WRITER = 50
PREFILL = 500
# Cancellation delays: at once, within a claim's time, within a wait for the pool.
DELAYS: list[Callable[[random.Random], float]] = [
    lambda rng: 0.0,
    lambda rng: rng.uniform(0, 0.001),
    lambda rng: rng.uniform(0, 0.005),
    lambda rng: rng.uniform(0, 0.03),
]


# ------------------------------------------------------------------ ledgers
@dataclass
class ReadLedger:
    """What the readers got: (body, id or None for Queue.read) per hand-over."""

    handed: list[tuple[str, int | None]] = field(default_factory=list)
    cancelled: int = 0  # plain cancellations of a claim in progress
    unknown: int = 0  # CommitOutcomeUnknown
    empty: int = 0

    @property
    def cancels(self) -> int:
        return self.cancelled + self.unknown

    def record(self, got: tuple[str, int | None] | None) -> None:
        if got is None:
            self.empty += 1
        else:
            self.handed.append(got)


def check_reads(path: Path, written: dict[int, str], ledger: ReadLedger, *, strict: bool) -> set[int]:
    """Against the file: every written message is there, pending or claimed; each
    handed-over one is claimed, once; claimed but not handed over is none
    (``strict``) or at most one per CommitOutcomeUnknown. Returns the handed IDs."""
    ids_by_body = {body: ident for ident, body in written.items()}
    assert len(ids_by_body) == len(written), "bodies must be unique"
    handed = [ident if ident is not None else ids_by_body[body] for body, ident in ledger.handed]
    twice = [ident for ident, n in Counter(handed).items() if n > 1]
    assert not twice, f"{len(twice)} message(s) handed to two readers, e.g. {twice[:3]}"
    assert all(written[i] == b for i, (b, _) in zip(handed, ledger.handed, strict=True)), "a body differs"
    state = {ts: (body, claimed) for q, body, ts, claimed in rows(path) if q == "q"}
    assert {ts: body for ts, (body, _) in state.items()} == written, "the file does not hold exactly what was written"
    claimed = {ts for ts, (_, c) in state.items() if c}
    assert set(handed) <= claimed, "a message handed over is still pending in the file"
    lost = claimed - set(handed)
    detail = (
        f"{len(lost)} message(s) claimed in the file but handed to no reader; readers saw "
        f"{ledger.unknown} CommitOutcomeUnknown, {ledger.cancelled} plain cancellations, "
        f"{len(handed)} hand-overs"
    )
    if strict:
        assert not lost, detail
    else:
        assert len(lost) <= ledger.unknown, detail
    return set(handed)


@dataclass
class WriteLedger:
    returned: dict[int, str] = field(default_factory=dict)
    cancelled: list[list[str]] = field(default_factory=list)  # bodies of each plainly cancelled call
    unknown: list[list[str]] = field(default_factory=list)  # bodies of each CommitOutcomeUnknown call


def check_writes(path: Path, ledger: WriteLedger, *, strict: bool) -> dict[int, str]:
    """Returned writes are in the file with their IDs; a write_many landed all or
    nothing; nothing else is in the file. ``strict``: no plainly cancelled write
    is in the file either. Returns the file's rows ``{id: body}``."""
    stored = {body: ts for q, body, ts, _ in rows(path) if q == "q"}
    for ident, body in ledger.returned.items():
        assert stored.get(body) == ident, f"{body!r} was returned as {ident} but the file has {stored.get(body)}"
    for bodies in ledger.unknown + ledger.cancelled:
        present = [b in stored for b in bodies]
        assert all(present) or not any(present), f"a write_many landed in part: {bodies}"
    landed_cancelled = [b for bodies in ledger.cancelled for b in bodies if b in stored]
    if strict:
        assert not landed_cancelled, (
            f"{len(landed_cancelled)} message(s) of writes that raised plain cancellation are in the file "
            f"(of {sum(map(len, ledger.cancelled))} cancelled, {sum(map(len, ledger.unknown))} unknown), "
            f"e.g. {landed_cancelled[:3]}"
        )
    allowed = {*ledger.returned.values(), *(b for bodies in ledger.unknown + ledger.cancelled for b in bodies)}
    extra = set(stored) - allowed
    assert not extra, f"{len(extra)} row(s) in the file from no write at all"
    return {ts: body for body, ts in stored.items()}


# ------------------------------------------------------------------ asyncio
async def asyncio_reader_stress(path: Path, seed: int) -> tuple[dict[int, str], ReadLedger]:
    rng = random.Random(seed)
    ledger = ReadLedger()
    written: dict[int, str] = {}
    async with async_broker(path, config=QUIET) as broker:
        queue = AsyncQueue("q", broker)
        bodies = [f"pre-{i}" for i in range(PREFILL)]
        written.update(zip(await broker.write_many("q", bodies), bodies, strict=True))
        writers_left = WRITERS

        async def writer(n: int) -> None:
            nonlocal writers_left
            for i in range(PER_WRITER):
                body = f"w{n}-{i}"
                written[await broker.write("q", body)] = body
                await asyncio.sleep(rng.uniform(0, 0.002))
            writers_left -= 1

        async def once(use_read: bool) -> tuple[str, int | None] | None:
            if use_read:
                body = await queue.read()
                return None if body is None else (body, None)
            message = await broker.claim("q")
            return None if message is None else (message.body, message.id)

        async def by_timeout(use_read: bool, delay: float) -> None:
            try:
                async with asyncio.timeout(delay):
                    ledger.record(await once(use_read))  # nothing can cancel between the two
            except TimeoutError as exc:
                if isinstance(exc.__cause__, AsyncioOutcomeUnknown):
                    ledger.unknown += 1
                else:
                    ledger.cancelled += 1
            except AsyncioOutcomeUnknown:
                ledger.unknown += 1

        async def by_task_cancel(use_read: bool, delay: float) -> None:
            async def child() -> None:
                try:
                    got = await once(use_read)
                except AsyncioOutcomeUnknown:
                    ledger.unknown += 1
                    raise
                except asyncio.CancelledError:
                    ledger.cancelled += 1
                    raise
                ledger.record(got)

            task = asyncio.create_task(child())
            await asyncio.sleep(0)  # let it start: cancel a claim, not a task that never ran
            if delay:
                await asyncio.sleep(delay)
            task.cancel()
            await asyncio.wait([task])

        async def reader(n: int) -> None:
            # Cancel until CANCELS claims were cancelled, then claim plainly until the writers are done.
            while not (writers_left == 0 and ledger.cancels >= CANCELS):
                use_read = rng.random() < 0.3
                style = rng.random() if ledger.cancels < CANCELS else 0.0
                if style < 0.2:
                    got = await once(use_read)
                    ledger.record(got)
                    if got is None:
                        await asyncio.sleep(0.002)
                elif style < 0.6:
                    await by_timeout(use_read, rng.choice(DELAYS)(rng))
                else:
                    await by_task_cancel(use_read, rng.choice(DELAYS)(rng))

        await asyncio.gather(*(writer(n) for n in range(WRITERS)), *(reader(n) for n in range(READERS)))
        # Settle (the last cancelled operations may still be rolling back), then drain what is left.
        await asyncio.sleep(0.2)
        check_reads(path, written, ledger, strict=False)
        rest = await broker.claim_all("q")
        ledger.handed += [(m.body, m.id) for m in rest]
    assert ledger.cancels >= CANCELS
    assert ledger.cancelled > 0 and len(ledger.handed) > len(rest), "the test must cancel claims and hand some over"
    return written, ledger


async def asyncio_writer_stress(path: Path, seed: int) -> tuple[WriteLedger, ReadLedger]:
    rng = random.Random(seed)
    writes = WriteLedger()
    reads = ReadLedger()
    async with async_broker(path, config=QUIET) as broker:
        writers_left = 40

        async def attempt(bodies: list[str]) -> None:
            """One write or write_many, recording how it ended (no await after the record)."""
            try:
                if len(bodies) == 1:
                    ids = [await broker.write("q", bodies[0])]
                else:
                    ids = await broker.write_many("q", bodies)
            except AsyncioOutcomeUnknown:
                writes.unknown.append(bodies)
                raise
            except asyncio.CancelledError:
                writes.cancelled.append(bodies)
                raise
            writes.returned.update(zip(ids, bodies, strict=True))

        async def writer(n: int) -> None:
            nonlocal writers_left
            for i in range(30):
                bodies = [f"w{n}-{i}"] if rng.random() < 0.7 else [f"w{n}-{i}.{j}" for j in range(3)]
                if rng.random() < 0.3:
                    await attempt(bodies)
                    continue
                delay = rng.choice(DELAYS)(rng)
                if rng.random() < 0.5:
                    try:
                        async with asyncio.timeout(delay):
                            await attempt(bodies)
                    except (TimeoutError, AsyncioOutcomeUnknown):
                        pass
                else:
                    task = asyncio.create_task(attempt(bodies))
                    await asyncio.sleep(0)  # let it start
                    if delay:
                        await asyncio.sleep(delay)
                    task.cancel()
                    await asyncio.wait([task])
            writers_left -= 1

        async def reader() -> None:
            while True:
                done = writers_left == 0
                message = await broker.claim("q")
                reads.record(None if message is None else (message.body, message.id))
                if message is None:
                    if done:
                        return
                    await asyncio.sleep(0.001)

        await asyncio.gather(*(writer(n) for n in range(40)), *(reader() for _ in range(READERS)))
        await asyncio.sleep(0.2)
    assert writes.cancelled and writes.returned, "the test must cancel writes and let others return"
    return writes, reads


@pytest.mark.parametrize("seed", [1, 3, 5])
def test_asyncio_cancelled_readers_hand_over_every_claimed_message(db_path: Path, seed: int) -> None:
    written, ledger = run_asyncio(lambda: asyncio_reader_stress(db_path, seed))
    handed = check_reads(db_path, written, ledger, strict=True)
    assert handed == set(written)


@pytest.mark.parametrize("seed", [2])
def test_asyncio_cancelled_readers_lose_at_most_the_unknown_commits(db_path: Path, seed: int) -> None:
    written, ledger = run_asyncio(lambda: asyncio_reader_stress(db_path, seed))
    check_reads(db_path, written, ledger, strict=False)


def test_asyncio_cancelled_writers_returned_writes_land_and_batches_stay_whole(db_path: Path) -> None:
    writes, reads = run_asyncio(lambda: asyncio_writer_stress(db_path, 3))
    stored = check_writes(db_path, writes, strict=False)
    check_reads(db_path, stored, reads, strict=True)  # readers were never cancelled
    assert {ts for _, _, ts, c in rows(db_path) if c} == set(stored), "a message was never claimed"


def test_asyncio_plainly_cancelled_writes_never_land(db_path: Path) -> None:
    writes, _ = run_asyncio(lambda: asyncio_writer_stress(db_path, 4))
    check_writes(db_path, writes, strict=True)


# --------------------------------------------------------------------- trio
async def trio_reader_stress(path: Path, seed: int) -> tuple[dict[int, str], ReadLedger]:
    rng = random.Random(seed)
    ledger = ReadLedger()
    written: dict[int, str] = {}
    async with trio_broker(path, config=QUIET) as broker:
        queue = TrioQueue("q", broker)
        bodies = [f"pre-{i}" for i in range(PREFILL)]
        written.update(zip(await broker.write_many("q", bodies), bodies, strict=True))
        writers_left = WRITERS

        async def writer(n: int) -> None:
            nonlocal writers_left
            for i in range(PER_WRITER):
                body = f"w{n}-{i}"
                written[await broker.write("q", body)] = body
                await trio.sleep(rng.uniform(0, 0.002))
            writers_left -= 1

        async def once(use_read: bool) -> tuple[str, int | None] | None:
            if use_read:
                body = await queue.read()
                return None if body is None else (body, None)
            message = await broker.claim("q")
            return None if message is None else (message.body, message.id)

        async def by_deadline(use_read: bool, delay: float) -> None:
            try:
                with trio.move_on_after(delay) as scope:
                    ledger.record(await once(use_read))  # no checkpoint between the two
                if scope.cancelled_caught:
                    ledger.cancelled += 1
            except TrioOutcomeUnknown:
                ledger.unknown += 1

        async def by_nursery(delay: float) -> None:
            """Three claimers in a nursery whose scope is cancelled after ``delay``."""

            async def claimer(use_read: bool) -> None:
                while True:
                    try:
                        got = await once(use_read)
                    except trio.Cancelled:
                        ledger.cancelled += 1
                        raise
                    except TrioOutcomeUnknown:
                        ledger.unknown += 1
                        return
                    ledger.record(got)
                    if got is None:
                        await trio.sleep(0.001)

            async with trio.open_nursery() as nursery:
                for k in range(3):
                    nursery.start_soon(claimer, k == 0)
                await trio.sleep(delay)
                nursery.cancel_scope.cancel()

        async def reader(n: int) -> None:
            # Cancel until CANCELS claims were cancelled, then claim plainly until the writers are done.
            while not (writers_left == 0 and ledger.cancels >= CANCELS):
                use_read = rng.random() < 0.3
                style = rng.random() if ledger.cancels < CANCELS else 0.0
                if style < 0.2:
                    got = await once(use_read)
                    ledger.record(got)
                    if got is None:
                        await trio.sleep(0.002)
                elif style < 0.75:
                    await by_deadline(use_read, rng.choice(DELAYS)(rng))
                else:
                    await by_nursery(rng.choice(DELAYS)(rng))

        async with trio.open_nursery() as nursery:
            for n in range(WRITERS):
                nursery.start_soon(writer, n)
            for n in range(READERS):
                nursery.start_soon(reader, n)
        await trio.sleep(0.2)
        check_reads(path, written, ledger, strict=False)
        rest = await broker.claim_all("q")
        ledger.handed += [(m.body, m.id) for m in rest]
    assert ledger.cancels >= CANCELS
    assert ledger.cancelled > 0 and len(ledger.handed) > len(rest), "the test must cancel claims and hand some over"
    return written, ledger


async def trio_writer_stress(path: Path, seed: int) -> tuple[WriteLedger, ReadLedger]:
    rng = random.Random(seed)
    writes = WriteLedger()
    reads = ReadLedger()
    async with trio_broker(path, config=QUIET) as broker:
        writers_left = 40

        async def attempt(bodies: list[str]) -> None:
            """One write or write_many, recording how it ended (no checkpoint after the record)."""
            try:
                if len(bodies) == 1:
                    ids = [await broker.write("q", bodies[0])]
                else:
                    ids = await broker.write_many("q", bodies)
            except TrioOutcomeUnknown:
                writes.unknown.append(bodies)
                return  # a plain error: nothing else to report
            except trio.Cancelled:
                writes.cancelled.append(bodies)
                raise
            writes.returned.update(zip(ids, bodies, strict=True))

        async def in_nursery(bodies: list[str], delay: float) -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(attempt, bodies)
                await trio.sleep(delay)
                nursery.cancel_scope.cancel()

        async def writer(n: int) -> None:
            nonlocal writers_left
            for i in range(30):
                bodies = [f"w{n}-{i}"] if rng.random() < 0.7 else [f"w{n}-{i}.{j}" for j in range(3)]
                if rng.random() < 0.3:
                    await attempt(bodies)
                elif rng.random() < 0.5:
                    with trio.move_on_after(rng.choice(DELAYS)(rng)):
                        await attempt(bodies)
                else:
                    await in_nursery(bodies, rng.choice(DELAYS)(rng))
            writers_left -= 1

        async def reader() -> None:
            while True:
                done = writers_left == 0
                message = await broker.claim("q")
                reads.record(None if message is None else (message.body, message.id))
                if message is None:
                    if done:
                        return
                    await trio.sleep(0.001)

        async with trio.open_nursery() as nursery:
            for n in range(40):
                nursery.start_soon(writer, n)
            for _ in range(READERS):
                nursery.start_soon(reader)
        await trio.sleep(0.2)
    assert writes.cancelled and writes.returned, "the test must cancel writes and let others return"
    return writes, reads


@pytest.mark.parametrize("seed", [1, 3, 5])
def test_trio_cancelled_readers_hand_over_every_claimed_message(db_path: Path, seed: int) -> None:
    written, ledger = run_trio(lambda: trio_reader_stress(db_path, seed))
    handed = check_reads(db_path, written, ledger, strict=True)
    assert handed == set(written)


@pytest.mark.parametrize("seed", [2])
def test_trio_cancelled_readers_lose_at_most_the_unknown_commits(db_path: Path, seed: int) -> None:
    written, ledger = run_trio(lambda: trio_reader_stress(db_path, seed))
    check_reads(db_path, written, ledger, strict=False)


def test_trio_cancelled_writers_returned_writes_land_and_batches_stay_whole(db_path: Path) -> None:
    writes, reads = run_trio(lambda: trio_writer_stress(db_path, 3))
    stored = check_writes(db_path, writes, strict=False)
    check_reads(db_path, stored, reads, strict=True)  # readers were never cancelled
    assert {ts for _, _, ts, c in rows(db_path) if c} == set(stored), "a message was never claimed"


def test_trio_plainly_cancelled_writes_never_land(db_path: Path) -> None:
    writes, _ = run_trio(lambda: trio_writer_stress(db_path, 4))
    check_writes(db_path, writes, strict=True)
