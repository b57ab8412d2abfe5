"""Fault injection into every operation shape of the blocking adapter.

- ``error``: ``sqlite3.OperationalError("disk I/O error")`` at the k-th command:
  the operation raises ``DatabaseError``, its transaction rolled back.
- ``busy``: ``"database is locked"`` at the k-th command: the core retries, the
  operation succeeds (a transaction block or an at-least-once batch may fail
  with ``BusyError``).
- ``interrupt``: SIGINT (``KeyboardInterrupt``) at the k-th library line
  (``sys.settrace``), in the main thread, where signals land: a claim's
  messages are pending again, a write is stored only if its caller gets
  ``CommitOutcomeUnknown`` (a ``KeyboardInterrupt``), and the broker stays
  usable by every thread. Group shapes are interrupted at every
  ``GROUP_LINE_STRIDE``-th line of the main thread (one of the four callers).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.faults_rigs import BlockingRig
from tests.faults.faults_support import SHAPES, VACUUM_SHAPES, Injector, Shape


@pytest.mark.parametrize("kind", ["error", "busy", "interrupt"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_blocking_faults(shape: Shape, kind: str, tmp_path: Path, injector: Injector) -> None:
    BlockingRig(tmp_path / "faults.db", injector).run(shape, kind)


@pytest.mark.parametrize("shape", VACUUM_SHAPES, ids=str)
def test_blocking_interrupt_with_vacuum_after_every_commit(shape: Shape, tmp_path: Path, injector: Injector) -> None:
    """Auto-vacuum due after every commit: an interrupt anywhere still loses nothing."""
    BlockingRig(tmp_path / "faults.db", injector, config="vacuum").run(shape, "interrupt")


def test_a_getter_in_line_interrupted_at_every_line_leaves_the_line_working(tmp_path: Path) -> None:
    """Ctrl-C at each library line of a main-thread ``get`` that waits in line
    (the queue empty, another thread already waiting): the interrupt reaches
    the caller (or the get ends), no lock or wait list is left half-changed,
    and the thread waiting before it is served as soon as a message comes."""
    import threading

    from sansio_broker.adapters.blocking import Broker, Queue
    from tests.faults.faults_support import LineInterrupter
    from tests.support import internals

    with Broker(tmp_path / "line.db") as broker:
        queue = Queue("q", broker)
        k, lines = 0, None
        while lines is None or k <= lines:
            k += 1
            other: list[str | None] = []
            waiting = threading.Thread(target=lambda got=other: got.append(queue.get(timeout=30)))
            waiting.start()
            while internals.waiting(broker) < 1:
                threading.Event().wait(0.001)
            interrupter = LineInterrupter(k)
            try:
                with interrupter.active():
                    queue.get(timeout=0.01)
            except KeyboardInterrupt:
                pass
            if interrupter.fired is None:  # it ran to its end: every line was tried
                lines = interrupter.count
            queue.write(f"m{k}")  # the thread that waited first gets it
            waiting.join(30)
            assert not waiting.is_alive(), f"k={k} ({interrupter.fired}): the earlier getter was left waiting"
            assert other == [f"m{k}"], (k, interrupter.fired)
            assert internals.waiting(broker) == 0, (k, interrupter.fired)
            assert queue.size() == 0, (k, interrupter.fired)
        assert lines is not None and lines > 20  # the line-by-line walk really went through the wait


def test_a_getter_served_while_it_waits_loses_nothing_when_interrupted_at_any_line(tmp_path: Path) -> None:
    """Ctrl-C at each library line of a main-thread ``get`` that waits and is
    then handed a message (written by another thread once it waits): the
    caller has the message, or it is pending again; never lost, never twice."""
    import threading

    from sansio_broker.adapters.blocking import Broker, Queue
    from tests.faults.faults_support import LineInterrupter
    from tests.support import internals

    with Broker(tmp_path / "served.db") as broker:
        queue = Queue("q", broker)
        k, lines = 0, None
        while lines is None or k <= lines:
            k += 1

            ended = threading.Event()

            def write_once_waiting(k: int = k, ended: threading.Event = ended) -> None:
                while internals.waiting(broker) < 1 and not ended.wait(0.0005):
                    pass
                queue.write(f"m{k}")

            writer = threading.Thread(target=write_once_waiting)
            writer.start()
            interrupter = LineInterrupter(k)
            got: str | None = None
            try:
                with interrupter.active():
                    got = queue.get(timeout=5)
            except KeyboardInterrupt:
                pass
            ended.set()
            writer.join(30)
            if interrupter.fired is None:
                lines = interrupter.count
            left = queue.read(all_messages=True)  # what is pending now
            assert sorted([got] if got is not None else []) + left == [f"m{k}"], (k, interrupter.fired, got, left)
            assert internals.waiting(broker) == 0, (k, interrupter.fired)
        assert lines is not None and lines > 20
