"""Helpers for the trio-adapter tests: running, watching threads and the pool, forcing races.

There is no pytest-trio: every test is a plain function that hands an inner
async function to :func:`run`, which puts an upper bound on it so a hang
fails the test instead of the whole run. (A hang inside a shielded scope
cannot be bounded that way; scenarios that might hang like that run in a
subprocess with a timeout instead.)
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import trio

from tests.async_adapters import scripts
from tests.async_adapters.kit import (
    HANG_TIMEOUT,
    QUIET,
    Outcomes,
    assert_clean,
    check_claim_accounting,
    open_transactions,
    settle,
    slow_commit,
    wait_for_thread_event,
    warm,
)
from tests.support import internals
from tests.support.threads import adapter_threads
from tests.support.threads import threads_left as support_threads_left

T = TypeVar("T")

WORKER_NAME = "sansio-broker-trio-worker"


def run(fn: Callable[..., Awaitable[T]], *args: Any, timeout: float = HANG_TIMEOUT) -> T:
    """``trio.run(fn, *args)``, failing (not hanging) after ``timeout`` seconds."""

    async def guarded() -> T:
        with trio.fail_after(timeout):
            return await fn(*args)

    return trio.run(guarded)


# ------------------------------------------------------------------ threads
def worker_threads() -> set[threading.Thread]:
    """The trio adapter's connection worker threads that are alive now."""
    return adapter_threads((WORKER_NAME,))


def threads_left(before: set[threading.Thread], timeout: float = 5.0) -> set[threading.Thread]:
    """Worker threads started since ``before`` still alive after ``timeout`` seconds."""
    return support_threads_left(before, timeout, markers=(WORKER_NAME,))


# --------------------------------------------------------------------- pool
# Shared with the merged suite (the pool is watched through tests.support.internals).
busy = internals.busy_after_cancel
patched_handler = internals.patched_handler
__all__ = [
    "QUIET",
    "Outcomes",
    "assert_clean",
    "busy",
    "check_claim_accounting",
    "finish",
    "open_transactions",
    "patched_handler",
    "settle",
    "slow_commit",
    "wait_for_thread_event",
    "warm",
]


# ------------------------------------------------------------- processes
finish = scripts.finish


def start_script(tmp_path: Path, body: str, name: str = "script") -> subprocess.Popen[str]:
    """Run the trio prelude (see :mod:`.scripts`) and ``body`` in a fresh interpreter on ``<tmp_path>/<name>.db``."""
    return scripts.start_script("trio", tmp_path, body, name)
