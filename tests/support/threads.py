"""The threads an adapter starts, so a test can check none outlives its broker."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

# Names of the worker threads of aiosqlite and of the trio adapter, and of the
# blocking adapter's auto-vacuum thread.
ADAPTER_THREAD_MARKERS = ("_connection_worker_thread", "sansio-broker-trio-worker", "sansio-broker-vacuum")


def adapter_threads(markers: Iterable[str] = ADAPTER_THREAD_MARKERS) -> set[threading.Thread]:
    """Threads whose name carries one of ``markers`` that are alive now."""
    marks = tuple(markers)
    return {t for t in threading.enumerate() if t.is_alive() and any(mark in t.name for mark in marks)}


def threads_left(
    before: set[threading.Thread], timeout: float = 5.0, markers: Iterable[str] = ADAPTER_THREAD_MARKERS
) -> set[threading.Thread]:
    """Such threads started since ``before`` still alive after ``timeout`` seconds."""
    marks = tuple(markers)
    deadline = time.monotonic() + timeout
    while True:
        left = adapter_threads(marks) - before
        if not left or time.monotonic() > deadline:
            return left
        for thread in left:
            thread.join(0.05)
