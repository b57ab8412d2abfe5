"""The blocking operations are generated from the async ones: they must not drift.

``adapters/_sync_operations.py`` is written by ``tools/unasync.py`` from
``adapters/_async_operations.py``; editing either by hand without running
the tool fails here (and so in CI).
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sansio_broker.adapters import _async_operations, _sync_operations
from sansio_broker.adapters.asyncio import AsyncBroker, AsyncQueue
from sansio_broker.adapters.blocking import Broker, Queue
from sansio_broker.adapters.trio import TrioBroker, TrioQueue

ROOT = Path(__file__).resolve().parents[1]


def test_the_generated_file_matches_its_source() -> None:
    result = subprocess.run(
        [sys.executable, "tools/unasync.py", "--check"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("generated", "edit"),
    [("_sync_operations.py", ("def claim_many", "def claim_lots")), ("_driver.py", ("def settle", "def settled"))],
)
def test_the_check_fails_when_a_generated_file_drifts(tmp_path: Path, generated: str, edit: tuple[str, str]) -> None:
    # A copy of the tool and its files, one generated file edited by hand.
    (tmp_path / "tools").mkdir()
    (tmp_path / "adapters").mkdir()
    (tmp_path / "tools" / "unasync.py").write_text((ROOT / "tools" / "unasync.py").read_text())
    for name in ("_async_operations.py", "_sync_operations.py", "_async_driver.py", "_driver.py"):
        text = (ROOT / "adapters" / name).read_text()
        (tmp_path / "adapters" / name).write_text(text.replace(*edit) if name == generated else text)
    result = subprocess.run(
        [sys.executable, "tools/unasync.py", "--check"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert f"{generated} is out of date" in result.stderr


def test_the_driver_loop_is_the_same_code_in_both_forms() -> None:
    """The generated loop differs from its source only in the async spelling."""
    source = (ROOT / "adapters" / "_async_driver.py").read_text()
    generated = (ROOT / "adapters" / "_driver.py").read_text()
    for name in ("run", "_control", "settle", "rollback_if_open", "committed_claims"):
        assert f"async def {name}(" in source or f"    def {name}(" in source
        assert f"    def {name}(" in generated
    assert "await" not in generated and "asyncio" not in generated


def _public_signatures(cls: type) -> dict[str, tuple[Any, ...]]:
    """Each public method's parameters (name, kind, default) and its return
    type, with the async spelling of a type made plain."""
    signatures: dict[str, tuple[Any, ...]] = {}
    for name, member in inspect.getmembers(cls, callable):
        if name.startswith("_"):
            continue
        signature = inspect.signature(member)
        parameters = tuple((p.name, p.kind, p.default) for p in signature.parameters.values())
        returns = str(signature.return_annotation).replace("Async", "")
        signatures[name] = (parameters, returns)
    return signatures


def test_the_three_adapters_have_the_same_operations_and_parameters() -> None:
    blocking = _public_signatures(Broker)
    for broker in (AsyncBroker, TrioBroker):
        assert _public_signatures(broker) == blocking
    queue = _public_signatures(Queue)
    for queue_class in (AsyncQueue, TrioQueue):
        assert _public_signatures(queue_class) == queue
    # Spot checks of names that once drifted between the adapters.
    assert [p[0] for p in blocking["move"][0][:3]] == ["self", "source_queue", "dest_queue"]
    assert [p[0] for p in queue["move_to"][0][:2]] == ["self", "dest_queue"]


def test_every_async_operation_has_its_blocking_twin() -> None:
    async_ops = {n for n, _ in inspect.getmembers(_async_operations.AsyncOperations) if not n.startswith("__")}
    sync_ops = {n for n, _ in inspect.getmembers(_sync_operations.Operations) if not n.startswith("__")}
    assert async_ops == sync_ops
    assert "write" in sync_ops and "transaction" in sync_ops
