"""The in-process change signals (adapters/_signals.py): identity, semantics, threads, interrupts, fork.

Real files in ``tmp_path``, real threads; timeouts only guard against hangs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from sansio_broker.adapters import _signals
from sansio_broker.adapters._signals import FileSignal, Subscription, signal_for

HANG_GUARD = 30.0  # seconds; never reached unless something hangs


class Recorder:
    """A subscriber that remembers every hint it got (thread-safe: list.append is atomic)."""

    def __init__(self) -> None:
        self.hints: list[frozenset[str] | None] = []

    def __call__(self, queues: frozenset[str] | None) -> None:
        self.hints.append(queues)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "broker.db"
    path.write_bytes(b"")
    return path


@pytest.fixture(autouse=True)
def _own_registry() -> Iterator[None]:
    """Each test starts from an empty registry (inode numbers of deleted tmp files are reused)."""
    saved = dict(_signals._REGISTRY)
    _signals._REGISTRY.clear()
    try:
        yield
    finally:
        _signals._REGISTRY.clear()
        _signals._REGISTRY.update(saved)


def subscriber_count(signal: FileSignal) -> int:
    return len(signal._subscribers)


# ============================================================ identity
def test_same_file_by_other_paths_gives_the_same_signal(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    link = tmp_path / "link.db"
    link.symlink_to(db)
    monkeypatch.chdir(tmp_path)
    first = signal_for(db)
    assert signal_for(str(db)) is first
    assert signal_for(link) is first
    assert signal_for("broker.db") is first  # relative
    (tmp_path / "sub").mkdir()
    assert signal_for("sub/../broker.db") is first


def test_different_files_give_different_signals(db: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    other.write_bytes(b"")
    assert signal_for(db) is not signal_for(other)


def test_a_file_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        signal_for(tmp_path / "missing.db")


def test_threads_asking_at_once_for_a_new_file_get_one_signal(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    path.write_bytes(b"")
    barrier = threading.Barrier(8)
    found: list[FileSignal] = []

    def ask() -> None:
        barrier.wait(HANG_GUARD)
        found.append(signal_for(path))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG_GUARD)
    assert len(found) == 8
    assert all(signal is found[0] for signal in found)


# ============================================================ semantics
def test_changed_reaches_every_subscriber_until_cancelled(db: Path) -> None:
    signal = signal_for(db)
    a, b = Recorder(), Recorder()
    sub_a = signal.subscribe(a)
    sub_b = signal.subscribe(b)
    assert isinstance(sub_a, Subscription)

    signal.changed(["q1", "q2"])
    signal.changed(None)
    signal.changed()
    signal.changed("single")  # one name, not its characters
    signal.changed(iter(["gen"]))
    expected = [frozenset({"q1", "q2"}), None, None, frozenset({"single"}), frozenset({"gen"})]
    assert a.hints == expected
    assert b.hints == expected

    sub_a.cancel()
    sub_a.cancel()  # idempotent
    signal.changed(["q3"])
    assert a.hints == expected
    assert b.hints == [*expected, frozenset({"q3"})]
    sub_b.cancel()
    assert subscriber_count(signal) == 0


def test_one_callable_may_subscribe_twice(db: Path) -> None:
    signal = signal_for(db)
    wake = Recorder()
    first = signal.subscribe(wake)
    second = signal.subscribe(wake)
    signal.changed(["q"])
    assert wake.hints == [frozenset({"q"})] * 2
    first.cancel()
    signal.changed(["r"])
    assert wake.hints[-1] == frozenset({"r"})
    assert len(wake.hints) == 3
    second.cancel()


def test_changed_with_no_subscriber_does_nothing(db: Path) -> None:
    signal = signal_for(db)
    signal.changed(["q"])
    signal.changed(None)
    assert subscriber_count(signal) == 0


def test_a_raising_subscriber_is_logged_and_the_others_still_called(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    signal = signal_for(db)
    before, after = Recorder(), Recorder()

    def broken(queues: frozenset[str] | None) -> None:
        raise RuntimeError("subscriber bug")

    subs = [signal.subscribe(before), signal.subscribe(broken), signal.subscribe(after)]
    with caplog.at_level(logging.ERROR, logger="sansio_broker"):
        signal.changed(["q"])  # does not raise
    assert before.hints == [frozenset({"q"})]
    assert after.hints == [frozenset({"q"})]
    failures = [r for r in caplog.records if r.name == "sansio_broker" and r.exc_info]
    assert len(failures) == 1
    exc_info = failures[0].exc_info
    assert exc_info is not None
    assert isinstance(exc_info[1], RuntimeError)
    for sub in subs:
        sub.cancel()


def test_unreadable_queues_become_the_broadest_hint(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    signal = signal_for(db)
    wake = Recorder()
    sub = signal.subscribe(wake)

    def broken_queues() -> Iterator[str]:
        yield "q"
        raise ValueError("bad iterable")

    with caplog.at_level(logging.ERROR, logger="sansio_broker"):
        signal.changed(broken_queues())
    assert wake.hints == [None]
    assert any(r.exc_info for r in caplog.records if r.name == "sansio_broker")
    sub.cancel()


def test_subscribe_and_cancel_during_changed_are_harmless(db: Path) -> None:
    """A subscriber that subscribes another and cancels a third, from inside changed()."""
    signal = signal_for(db)
    late, victim = Recorder(), Recorder()
    made: list[Subscription] = []
    victim_sub: list[Subscription] = []

    def meddler(queues: frozenset[str] | None) -> None:
        if not made:
            made.append(signal.subscribe(late))
            victim_sub[0].cancel()

    subs = [signal.subscribe(meddler)]
    victim_sub.append(signal.subscribe(victim))
    signal.changed(["q"])  # the snapshot was taken first: the victim gets this one hint
    assert victim.hints == [frozenset({"q"})]
    assert late.hints == []  # a new subscriber may miss the hint in flight
    signal.changed(["r"])
    assert victim.hints == [frozenset({"q"})]
    assert late.hints == [frozenset({"r"})]
    for sub in [*subs, *made]:
        sub.cancel()


# ============================================================ threads
def test_eight_threads_subscribing_cancelling_and_signalling_at_once(db: Path) -> None:
    signal = signal_for(db)
    rounds = 2000
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []
    keepers: list[Recorder] = []
    keeper_subs: list[Subscription] = []

    def work(index: int) -> None:
        try:
            keeper = Recorder()
            keepers.append(keeper)
            barrier.wait(HANG_GUARD)
            for n in range(rounds):
                transient = signal.subscribe(Recorder())
                if n == rounds // 2:
                    keeper_subs.append(signal.subscribe(keeper))
                signal.changed([f"q{index}"] if n % 3 else None)
                transient.cancel()
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG_GUARD)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert subscriber_count(signal) == 8  # every transient one cancelled, every keeper still there

    signal.changed(["final"])
    for keeper in keepers:
        assert keeper.hints[-1] == frozenset({"final"})
    for sub in keeper_subs:
        sub.cancel()
    assert subscriber_count(signal) == 0


# ============================================================ interrupts
MODULE_FILE = str(Path(_signals.__file__).resolve())


class LineInterrupter:
    """Raises KeyboardInterrupt at the k-th ``line`` event executed in adapters/_signals.py (this thread)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.count = 0
        self.fired = False
        self._ours: dict[object, bool] = {}

    def _global(self, frame: FrameType, event: str, arg: object) -> Any:
        code = frame.f_code
        ours = self._ours.get(code)
        if ours is None:
            ours = self._ours[code] = str(Path(code.co_filename).resolve()) == MODULE_FILE
        return self._local if ours else None

    def _local(self, frame: FrameType, event: str, arg: object) -> Any:
        if event == "line" and not self.fired:
            self.count += 1
            if self.count == self.k:
                self.fired = True
                raise KeyboardInterrupt
        return self._local

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        previous = sys.gettrace()
        sys.settrace(self._global)
        try:
            yield
        finally:
            sys.settrace(previous)


def interrupted_at_every_line(call: Callable[[], object]) -> Iterator[tuple[int, bool]]:
    """Runs ``call`` with an interrupt at line k = 1, 2, ... until a run completes.

    Yields ``(k, fired)`` after each run, so the caller checks the state it left.
    """
    for k in range(1, 1000):
        interrupter = LineInterrupter(k)
        with contextlib.suppress(KeyboardInterrupt), interrupter.active():
            call()
        yield k, interrupter.fired
        if not interrupter.fired:
            return
    raise AssertionError("the call never completed")


def still_works(signal: FileSignal) -> None:
    """A fresh subscribe + changed is delivered, and the subscription cancels cleanly."""
    before = subscriber_count(signal)
    wake = Recorder()
    sub = signal.subscribe(wake)
    signal.changed(["check"])
    assert wake.hints == [frozenset({"check"})]
    sub.cancel()
    assert subscriber_count(signal) == before


def test_an_interrupt_at_any_line_of_subscribe(db: Path) -> None:
    signal = signal_for(db)
    made: list[Subscription] = []
    runs = 0
    for _k, fired in interrupted_at_every_line(lambda: made.append(signal.subscribe(Recorder()))):
        runs += 1
        # Either registered and handed back, or neither: no subscription without a token.
        assert subscriber_count(signal) == len(made)
        assert len(made) == (0 if fired else 1)
        still_works(signal)
    assert runs > 2  # the interrupt did land inside subscribe
    made[0].cancel()
    assert subscriber_count(signal) == 0


def test_an_interrupt_at_any_line_of_cancel(db: Path) -> None:
    signal = signal_for(db)
    runs = 0
    current = [signal.subscribe(Recorder())]  # the subscription the next run cancels
    for _k, fired in interrupted_at_every_line(lambda: current[0].cancel()):
        runs += 1
        if fired:
            assert subscriber_count(signal) == 1  # not cancelled: nothing half done
            still_works(signal)
            current[0].cancel()  # the retry a clean-up makes
            assert subscriber_count(signal) == 0
            current[0] = signal.subscribe(Recorder())  # for the next k
        else:
            assert subscriber_count(signal) == 0
            still_works(signal)
    assert runs >= 2


def test_an_interrupt_at_any_line_of_changed(db: Path) -> None:
    signal = signal_for(db)
    wakes = [Recorder() for _ in range(3)]
    subs = [signal.subscribe(wake) for wake in wakes]
    runs = 0
    for _k, fired in interrupted_at_every_line(lambda: signal.changed(["q"])):
        runs += 1
        got = [len(wake.hints) for wake in wakes]
        # An interrupt skips the subscribers not yet called, never calls one twice.
        assert got == sorted(got, reverse=True)
        assert all(n <= 1 for n in got)
        if not fired:
            assert got == [1, 1, 1]
        for wake in wakes:
            wake.hints.clear()
        still_works(signal)
        for wake in wakes:  # still_works' changed reached them too
            assert wake.hints == [frozenset({"check"})]
            wake.hints.clear()
    assert runs > 3
    for sub in subs:
        sub.cancel()


def test_an_interrupt_at_any_line_of_signal_for(tmp_path: Path) -> None:
    for k in range(1, 1000):
        path = tmp_path / f"new{k}.db"  # a file not yet in the registry
        path.write_bytes(b"")
        got: list[FileSignal] = []
        interrupter = LineInterrupter(k)
        with contextlib.suppress(KeyboardInterrupt), interrupter.active():
            got.append(signal_for(path))
        found = signal_for(path)
        assert got in ([], [found])  # one signal per file, whatever was cut short
        assert signal_for(str(path)) is found
        still_works(found)
        if not interrupter.fired:
            assert k > 2
            return
    raise AssertionError("signal_for never completed")


# ============================================================ fork
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")
def test_the_child_of_a_fork_forgets_the_parents_subscribers(db: Path) -> None:
    signal = signal_for(db)
    parent_wake = Recorder()
    sub = signal.subscribe(parent_wake)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        code = 1
        try:
            report: dict[str, object] = {"registry_empty": not _signals._REGISTRY}
            signal.changed(["from-child"])  # the inherited object: must wake nobody
            report["parent_wake_called"] = bool(parent_wake.hints)
            fresh = signal_for(db)
            report["fresh_is_new"] = fresh is not signal
            child_wake = Recorder()
            child_sub = fresh.subscribe(child_wake)
            fresh.changed(["q"])
            report["child_hints"] = [sorted(h) if h is not None else None for h in child_wake.hints]
            child_sub.cancel()
            os.write(write_end, json.dumps(report).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        chunks = []
        while chunk := os.read(read_end, 65536):
            chunks.append(chunk)
    finally:
        os.close(read_end)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert json.loads(b"".join(chunks)) == {
        "registry_empty": True,
        "parent_wake_called": False,
        "fresh_is_new": True,
        "child_hints": [["q"]],
    }
    # The parent is untouched.
    assert signal_for(db) is signal
    signal.changed(["parent"])
    assert parent_wake.hints == [frozenset({"parent"})]
    sub.cancel()
