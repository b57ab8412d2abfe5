"""The facade itself: an async adapter's calls all run in one task, as a blocking test's run in one thread.

Without this, a transaction or an open stream batch would not mean what it
means to a user of the adapter, and the contract tests would prove nothing.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.contract.contract_support import BRIDGE_THREAD_PREFIX, AsyncFacade, Target, adapter_threads, open_facade
from tests.support import internals


def held_by(facade: AsyncFacade) -> dict[object, Any]:
    return internals.held_by_task(facade.target)


@pytest.mark.parametrize("adapter", ["asyncio", "trio"])
def test_every_call_runs_in_the_one_runner_task(adapter: str, target: Target) -> None:
    with open_facade(adapter, target) as facade:
        assert isinstance(facade, AsyncFacade)
        runner = facade._call(lambda: internals.current_task(facade.target))
        assert runner is not None
        facade.write("q", "a")
        assert facade._call(lambda: internals.current_task(facade.target)) is runner
        assert held_by(facade) == {}
        with facade.transaction():
            # The transaction's connection is held for the runner task, and used by its calls.
            (connection,) = held_by(facade).values()
            assert list(held_by(facade)) == [runner]
            facade.write("q", "b")
            assert facade._call(lambda: connection.session.in_transaction) is True
        assert held_by(facade) == {}
        stream = facade.stream("q", commit_interval=5)
        assert next(stream).body == "a"
        assert list(held_by(facade)) == [runner]  # the open batch, held for the same task
        stream.close()
        assert held_by(facade) == {}


@pytest.mark.parametrize("adapter", ["blocking", "asyncio", "trio"])
def test_shutdown_stops_every_thread(adapter: str, target: Target) -> None:
    before = adapter_threads()
    with open_facade(adapter, target) as facade:
        facade.write("q", "a")
        started = adapter_threads() - before
        if adapter != "blocking":
            assert any(t.name.startswith(BRIDGE_THREAD_PREFIX) for t in started)
    for thread in started:
        thread.join(5)
    assert not any(t.is_alive() for t in started)
    with pytest.raises(RuntimeError):
        facade.write("q", "after shutdown")
