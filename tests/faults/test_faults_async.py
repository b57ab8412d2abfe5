"""Fault injection into every operation shape of the asyncio and trio adapters.

- ``error``: ``sqlite3.OperationalError("disk I/O error")`` at the k-th command
  (in the connection's worker thread): the caller gets ``DatabaseError``.
- ``busy``: ``"database is locked"`` at the k-th command: retried by the core.
- ``cancel``: the caller's task is cancelled (asyncio: ``task.cancel()``
  through ``call_soon_threadsafe``; trio: its cancel scope, through the trio
  token) while the k-th command runs: requested just before the command runs
  (``before``) or right after its result is ready (``after``), the worker
  waiting until the cancellation has landed; and as the k-th operation's
  answer is handed back (``result``). A claim's messages are pending again
  before the caller sees the plain cancellation; a write is stored only if
  the caller gets the adapter's ``CommitOutcomeUnknown``. Group shapes
  cancel caller ``(k - 1) % 4``.
- ``cancel+close``: a claim cancelled at the k-th point, then ``close()`` at
  once: the give-back must have happened before ``close()`` returns.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.faults_rigs import RIGS
from tests.faults.faults_support import CLAIM_SHAPES, SHAPES, VACUUM_SHAPES, Injector, Shape

ASYNC_ADAPTERS = ("asyncio", "trio")


@pytest.mark.parametrize("kind", ["error", "busy", "cancel"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("adapter", ASYNC_ADAPTERS)
def test_async_faults(adapter: str, shape: Shape, kind: str, tmp_path: Path, injector: Injector) -> None:
    RIGS[adapter](tmp_path / "faults.db", injector).run(shape, kind)


@pytest.mark.parametrize("shape", VACUUM_SHAPES, ids=str)
@pytest.mark.parametrize("adapter", ASYNC_ADAPTERS)
def test_async_cancel_with_vacuum_after_every_commit(
    adapter: str, shape: Shape, tmp_path: Path, injector: Injector
) -> None:
    """Auto-vacuum due after every commit: a cancellation anywhere still loses nothing."""
    RIGS[adapter](tmp_path / "faults.db", injector, config="vacuum").run(shape, "cancel")


@pytest.mark.parametrize("shape", CLAIM_SHAPES, ids=str)
@pytest.mark.parametrize("adapter", ASYNC_ADAPTERS)
def test_async_close_right_after_cancelled_claim(
    adapter: str, shape: Shape, tmp_path: Path, injector: Injector
) -> None:
    RIGS[adapter](tmp_path / "faults.db", injector).run_close(shape)
