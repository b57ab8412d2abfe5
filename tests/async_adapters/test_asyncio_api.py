"""The asyncio adapter's documented example runs.

Opening, closing, config and the pool's bound, on both runtimes, are in
test_async_api.py; every operation, for every adapter, is in tests/contract/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sansio_broker.adapters.asyncio import AsyncQueue, async_broker
from tests.async_adapters.asyncio_support import run


def test_the_documented_example_runs(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The module docstring's usage, with the default relative path."""
    monkeypatch.chdir(db_path.parent)
    printed: list[object] = []

    async def main() -> None:
        async with async_broker("app.db", pool_size=10) as broker:
            queue = AsyncQueue("tasks", broker)
            await queue.write("hello")
            printed.append(await queue.read())
            # The original example's quick start.
            for i in range(3):
                await queue.write(f"task {i}")
            printed.append(await queue.size())
            printed.append(await queue.read_all())
            async for message in queue.stream(peek=True):
                printed.append(message)
            printed.append(await broker.list_queues())
            printed.append(await broker.get_queue_stats())

    run(main())
    assert printed == ["hello", 3, ["task 0", "task 1", "task 2"], ["tasks"], [("tasks", 0, 4)]]
    assert (db_path.parent / "app.db").exists()
