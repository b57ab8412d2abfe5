"""Calls that wait, run beside a contract facade, so one test body covers every adapter.

The contract facade (``tests/contract/contract_support.py``) runs the calls of
an async adapter one at a time in a single runner task: a ``get`` through it
would hold the runner until a message came, and nothing else could write. So
a call that waits is *started* here instead, in a task (or thread) of its own:

- blocking: a thread of its own;
- asyncio: a task in the facade's loop (``run_coroutine_threadsafe``);
- trio: a task in the facade's run (``trio.from_thread.run`` from a helper thread).

:func:`start` returns a ``concurrent.futures.Future`` of the call's result;
:func:`outcome` waits for it with a generous hang guard. ``call`` is a
zero-argument function of the adapter's own objects (``facade.target``,
``queue.target``): it returns the result on the blocking adapter and an
awaitable on the async ones, and it is called in the task that awaits it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import trio

from tests.contract.contract_support import Facade, QueueFacade
from tests.support import internals

# "Does not hang" bound for one call that should end (a failure, never a duration measured).
HANG = 20.0
# How long a test gives a call that should do nothing more (a watch it left) to do it anyway.
SETTLE = 0.1

Future = concurrent.futures.Future

_loops: weakref.WeakKeyDictionary[Facade, Any] = weakref.WeakKeyDictionary()


def _runtime_handle(facade: Facade) -> Any:
    """The facade's asyncio loop or trio token, read once from inside its runner."""
    if facade not in _loops:
        probe = asyncio.get_running_loop if facade.adapter == "asyncio" else trio.lowlevel.current_trio_token
        _loops[facade] = facade._call(probe)
    return _loops[facade]


def _in_thread(function: Callable[[], Any], name: str) -> Future[Any]:
    future: Future[Any] = Future()

    def run() -> None:
        try:
            result = function()
        except BaseException as exc:  # handed to the test, whatever it is
            future.set_exception(exc)
        else:
            future.set_result(result)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


async def _awaited(call: Callable[[], Any]) -> Any:
    return await call()


def start(facade: Facade, call: Callable[[], Any]) -> Future[Any]:
    """Run ``call()`` concurrently with the test, in its own thread (blocking) or task (async)."""
    if facade.adapter == "blocking":
        return _in_thread(call, "waiting-test-caller")
    handle = _runtime_handle(facade)
    if facade.adapter == "asyncio":
        return asyncio.run_coroutine_threadsafe(_awaited(call), handle)
    return _in_thread(lambda: trio.from_thread.run(_awaited, call, trio_token=handle), "waiting-test-trio-caller")


def outcome(future: Future[Any], timeout: float = HANG) -> Any:
    """The started call's result (or its exception, raised); a hang fails the test."""
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        raise AssertionError(f"a started call did not end within {timeout} s") from None


def run(facade: Facade, call: Callable[[], Any]) -> Any:
    """``call()`` to its end in a task of its own (for calls that may wait, or must not)."""
    return outcome(start(facade, call))


def error_of(facade: Facade, call: Callable[[], Any]) -> BaseException:
    """The exception ``call()`` raises (failing if it returns, or hangs)."""
    future = start(facade, call)
    try:
        result = outcome(future)
    except AssertionError:
        raise
    except BaseException as exc:
        return exc
    raise AssertionError(f"returned {result!r} instead of raising")


def waiters(facade: Facade) -> int:
    """How many callers wait on the facade's broker now (read from the test's thread)."""
    while True:
        try:
            return internals.waiting(facade.target)
        except RuntimeError:  # the wait lists changed size under the look: look again
            continue


def still_waiting(facade: Facade, *futures: Future[Any]) -> bool:
    """Once the broker reports a waiter for each of ``futures``: none of them has ended.

    Each started ``get``, ``broker.get`` or ``watch`` is one waiter once it waits
    (a getter in its queue's FIFO, or a listener), so the test can write knowing
    the order they arrived in. A call that never reaches its wait fails the test.
    """
    deadline = time.monotonic() + HANG
    while waiters(facade) < len(futures):
        ended = [f for f in futures if f.done()]
        if ended:
            raise AssertionError(f"{len(ended)} call(s) ended instead of waiting: {_ending(ended[0])}")
        if time.monotonic() > deadline:
            raise AssertionError(f"only {waiters(facade)} of {len(futures)} calls reached their wait in {HANG} s")
        time.sleep(0.001)
    return not any(future.done() for future in futures)


def _ending(future: Future[Any]) -> str:
    exc = future.exception()
    return repr(exc) if exc is not None else f"returned {future.result()!r}"


# ------------------------------------------------------------------ watching
def _collect_blocking(queue: Any, count: int, kwargs: dict[str, Any], method: str = "watch") -> list[Any]:
    got: list[Any] = []
    if count == 0:
        return got
    with getattr(queue, method)(**kwargs) as stream:
        for body in stream:
            got.append(body)
            if len(got) == count:
                break
    return got


async def _collect_async(queue: Any, count: int, kwargs: dict[str, Any], method: str = "watch") -> list[Any]:
    got: list[Any] = []
    if count == 0:
        return got
    async with getattr(queue, method)(**kwargs) as stream:
        async for body in stream:
            got.append(body)
            if len(got) == count:
                break
    return got


def watch(queue: QueueFacade, count: int, method: str = "watch", **kwargs: Any) -> Future[list[Any]]:
    """Start ``for body in queue.watch(**kwargs)`` (or ``method``), leaving the loop after ``count`` items.

    The future's result is the items seen, in order (fewer if the watch ended first).
    """
    facade = queue.owner
    target = queue.target
    if facade.adapter == "blocking":
        return _in_thread(lambda: _collect_blocking(target, count, kwargs, method), "waiting-test-watcher")
    return start(facade, lambda: _collect_async(target, count, kwargs, method))
