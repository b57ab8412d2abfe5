"""State shared by every connection of one broker, hammered from threads.

The core imports no threading and takes no lock: its shared counters step
atomically in C (see :class:`BrokerCore`). Sessions (one per connection) are
never shared: each thread here has its own, as each connection does.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sansio_broker import Config, validation
from sansio_broker import core as core_module
from sansio_broker.commands import Begin, Command, Commit, ReadClock, Rollback
from sansio_broker.driver import BrokerCore
from sansio_broker.testing import run_with
from tests.core.core_testkit import TICK, FakeDb

THREADS = 8


@pytest.fixture(autouse=True)
def _switch_often() -> Iterator[None]:
    """Make threads switch as often as possible, so races have a chance."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def _hammer(work: Callable[[int], None]) -> None:
    """Run ``work(thread_index)`` on THREADS threads at once; re-raise the first failure."""
    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            start.wait()
            work(index)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


class SharedDb:
    """One FakeDb behind SQLite's write lock: a transaction holds ``lock``
    from BEGIN to COMMIT/ROLLBACK, so connections take turns, as in SQLite."""

    def __init__(self) -> None:
        self.db = FakeDb()
        self.lock = threading.Lock()

    def __call__(self, command: Command) -> Any:
        if isinstance(command, Begin):
            self.lock.acquire()
        elif isinstance(command, ReadClock):
            self.db.now += TICK  # the clock moves on
        answer = self.db(command)
        if isinstance(command, Commit | Rollback):
            self.lock.release()
        return answer


def test_writes_from_many_threads_get_distinct_ids_and_every_count() -> None:
    core = BrokerCore(Config(auto_vacuum=False))
    shared = SharedDb()
    per_thread = 150
    ids: list[list[int]] = [[] for _ in range(THREADS)]

    def work(index: int) -> None:
        session = core.session()  # one connection per thread
        for n in range(per_thread):
            if n % 3:
                ids[index].append(run_with(session.write(f"q{index}", f"{index}-{n}"), shared)[0])
            else:
                ids[index].extend(run_with(session.write_many("q", ["a", "b"]), shared)[0])

    _hammer(work)
    every = [i for mine in ids for i in mine]
    total = THREADS * (per_thread + per_thread // 3)
    assert len(every) == total
    assert len(set(every)) == total  # distinct
    assert all(mine == sorted(mine) for mine in ids)  # each connection's IDs grow
    assert sorted(row[2] for row in shared.db.inserted) == sorted(every)
    assert core.mutations == total  # no count lost
    assert core.last_id == max(every) == shared.db.last_ts


def test_mutation_counts_from_many_threads_are_not_lost() -> None:
    core = BrokerCore(Config(auto_vacuum=False))
    rounds = 500

    def work(index: int) -> None:
        for n in range(rounds):
            core.record_mutations(1 + (n + index) % 3)

    _hammer(work)
    assert core.mutations == sum(1 + (n + i) % 3 for i in range(THREADS) for n in range(rounds))


def test_one_auto_vacuum_check_runs_at_a_time() -> None:
    core = BrokerCore(Config(auto_vacuum_interval=1))
    guard = threading.Lock()
    running: list[int] = []
    most = [0]
    taken = [0]

    def work(index: int) -> None:
        for _ in range(500):
            core.record_mutations(1)
            if core.take_auto_vacuum():
                with guard:
                    running.append(index)
                    most[0] = max(most[0], len(running))
                    taken[0] += 1
                core.checked_vacuum(0, 10)
                with guard:
                    running.remove(index)
                core.auto_vacuum_ended()

    _hammer(work)
    assert most[0] == 1
    assert taken[0] >= 1


def test_caches_filled_from_many_threads_stay_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_module, "PLAIN_CLAIM_CACHE_SIZE", 4)
    monkeypatch.setattr(validation, "_valid_names", set())
    core = BrokerCore()

    def work(index: int) -> None:
        for n in range(3_000):
            name = f"t{index}.q{n % 50}"
            assert validation.check_queue_name(name) == name
            statement = core.plain_claim(name)
            assert statement.params == (name, 1)

    _hammer(work)
    assert len(core._plain_claims) <= 4 + THREADS  # bounded, give or take racing inserts


# ------------------------------------------- counting, without threads
def test_counting_and_scheduling() -> None:
    core = BrokerCore(Config(auto_vacuum_interval=2))
    core.record_mutations(0)
    core.record_mutations(-1)  # nothing to count
    assert core.mutations == 0
    core.record_mutations(3)
    assert core.mutations == 3
    core.checked_vacuum(0, 10)
    assert (core.mutations, core.next_vacuum_check) == (1, 2)
    assert core.take_auto_vacuum() is False
    core.record_mutations(1)
    assert core.take_auto_vacuum() is True
    assert core.take_auto_vacuum() is False  # taken: one check at a time
    core.vacuum_check_failed()
    assert (core.mutations, core.next_vacuum_check) == (0, 2)
    core.auto_vacuum_ended()
    core.auto_vacuum_ended()  # giving it back twice leaves one token
    core.record_mutations(2)
    assert core.take_auto_vacuum() is True
    assert core.take_auto_vacuum() is False


def test_a_full_plain_claim_cache_is_replaced_not_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_module, "PLAIN_CLAIM_CACHE_SIZE", 2)
    core = BrokerCore()
    core.plain_claim("a")
    core.plain_claim("b")
    before = core._plain_claims
    core.plain_claim("c")
    # A thread still holding the old dict finds it intact.
    assert sorted(before) == ["a", "b"]
    assert list(core._plain_claims) == ["c"]
