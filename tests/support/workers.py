"""Worker processes that start together, and the loop they drain a queue with.

The test side starts every worker, waits until each has printed ``ready``
(it has opened the database), releases them all at once with ``go`` on
stdin, and collects the JSON result each prints as its last line of output.
The worker side (a script run in the subprocess) uses :func:`wait_for_go`,
:func:`mark_done` and :func:`drain`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

DEADLINE_SECONDS = 60.0
# The checkout root: on a worker's ``PYTHONPATH``, so its script imports ``tests.support``.
CHECKOUT_ROOT = str(Path(__file__).resolve().parents[2])


# ------------------------------------------------------------- the test side
def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent's environment without PYTHONWARNINGS or BROKER_* settings, plus ``extra``.

    ``PYTHONPATH`` is the checkout root alone (whatever the parent's was), so a
    worker script imports the test helpers as ``tests.support...``.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("BROKER_")}
    env.pop("PYTHONWARNINGS", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONPATH"] = CHECKOUT_ROOT
    env.update(extra or {})
    return env


def start_workers(
    commands: Sequence[list[str]], cwd: Path, env: Mapping[str, str], timeout: float
) -> list[subprocess.Popen[str]]:
    """Start every worker, wait until each has opened the file, then release all at once."""
    procs = [
        subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(env),
            cwd=cwd,
        )
        for cmd in commands
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stderr is not None
            line = proc.stdout.readline()
            if line.strip() != "ready":
                proc.wait(timeout=timeout)
                raise AssertionError(f"worker {proc.args} did not start: {line!r}\n{proc.stderr.read()}")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
    except BaseException:
        _kill_unfinished(procs)
        raise
    return procs


def finish_workers(procs: Sequence[subprocess.Popen[str]], timeout: float) -> list[tuple[Any, str]]:
    """Wait for every worker; returns ``(json result, stderr)`` for each, in order."""
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, f"worker {proc.args} exit {proc.returncode}\n{out[-2000:]}\n{err}"
            results.append((json.loads(out.strip().splitlines()[-1]), err))
    finally:
        _kill_unfinished(procs)
    return results


def run_workers(
    commands: Sequence[list[str]], cwd: Path, env: Mapping[str, str], timeout: float
) -> list[tuple[Any, str]]:
    """:func:`start_workers`, then :func:`finish_workers`."""
    return finish_workers(start_workers(commands, cwd, env, timeout), timeout)


def _kill_unfinished(procs: Sequence[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ----------------------------------------------------------- the worker side
def wait_for_go() -> None:
    """Report ``ready`` and block until the test says ``go``."""
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        sys.exit(3)


def mark_done(done_dir: str, tag: str) -> None:
    """Leave the marker ``<done_dir>/<tag>``: every write of this worker has committed."""
    with open(os.path.join(done_dir, tag), "w"):
        pass


def drain(
    take: Callable[[], list[list[Any]]], done_dir: str | None = None, upstream: int = 0, pause: float = 0
) -> list[list[Any]]:
    """Call ``take`` until it finds nothing, and return everything it took.

    With ``done_dir``, an empty look ends it only once ``upstream`` markers
    exist there (every upstream writer has committed) and one more look
    finds nothing. ``pause`` is slept after each look that took something.
    """
    got: list[list[Any]] = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        taken = take()
        got.extend(taken)
        if taken:
            if pause:
                time.sleep(pause)
            continue
        if done_dir is None:
            return got
        if len(os.listdir(done_dir)) >= upstream:
            # Everything upstream committed before its marker: one more
            # empty look means the source is empty for good.
            taken = take()
            got.extend(taken)
            if not taken:
                return got
            continue
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up after {DEADLINE_SECONDS}s with {len(got)} messages")
        time.sleep(0.001)
