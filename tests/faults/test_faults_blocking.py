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
