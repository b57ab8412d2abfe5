"""Item 6 of issue 9: ``Broker.close()`` while other threads run operations.

``close()`` used to close sqlite3 connections other threads were executing
on, and the process died with a segfault. Each trial runs in a subprocess
(30 trials per subprocess), so a crash fails the test instead of pytest.
After ``close()`` every thread's call must have completed normally or raised
``BrokerClosedError``, and every message must be either received by a thread
or still pending (read by a fresh broker).
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.lifecycle.lifecycle_support import Finished, finish, run_worker, start_worker

TRIALS = 30
BATCHES = 2
SIGINT_RUNS = 10


def _trial_problems(report: dict[str, Any]) -> list[str]:
    trial = f"trial {report['trial']}"
    problems = []
    if report["close_error"]:
        problems.append(f"{trial}: close() raised {report['close_error']}")
    if report["hung"]:
        problems.append(f"{trial}: threads {report['hung']} still running 10 s after close()")
    for n, ending in enumerate(report["endings"]):
        if ending not in (None, "BrokerClosedError"):
            problems.append(f"{trial}: thread {n} ended with an error other than BrokerClosedError:\n{ending}")
    for key, what in [
        ("lost", "messages lost (written or seeded, neither received nor pending)"),
        ("duplicates", "messages delivered twice"),
        ("unexpected", "bodies nobody wrote successfully"),
        ("failed_writes_stored", "writes that raised but were stored"),
    ]:
        if report[key]:
            problems.append(f"{trial}: {len(report[key])} {what}: {report[key][:10]}")
    return problems


@pytest.mark.slow
@pytest.mark.parametrize("batch", range(BATCHES))
def test_close_while_eight_threads_run_a_mixed_workload(tmp_path: Path, batch: int) -> None:
    seed = random.randrange(2**32)
    finished = run_worker("close-load", tmp_path, TRIALS, seed, cwd=tmp_path, timeout=120)
    reports = finished.reports
    assert finished.clean_exit, (
        f"the process running close() under load ended badly: {finished.exit()} during trial "
        f"{len(reports)} of {TRIALS} (seed {seed})\n{finished.tail()}"
    )
    assert len(reports) == TRIALS, finished.tail()
    problems = [problem for report in reports for problem in _trial_problems(report)]
    assert not problems, f"seed {seed}:\n" + "\n".join(problems[:20])
    # The trials did work before the close (the test is not vacuous).
    assert sum(report["operations"] for report in reports) > TRIALS


def _sigint_problem(run: int, finished: Finished) -> str | None:
    if finished.hung or finished.crashed:
        return f"run {run}: {finished.exit()}\n{finished.tail()}"
    last = finished.stderr.rstrip().splitlines()[-1:] or [""]
    if finished.returncode not in (-signal.SIGINT, 130) and not last[0].startswith("KeyboardInterrupt"):
        return f"run {run}: did not end with KeyboardInterrupt: {finished.exit()}\n{finished.tail()}"
    if "UNEXPECTED" in finished.stderr:
        return f"run {run}: a worker thread failed with an error other than BrokerClosedError\n{finished.tail()}"
    return None


@pytest.mark.slow
def test_ctrl_c_on_with_broker_while_threads_work(tmp_path: Path) -> None:
    """A real SIGINT while 8 threads work inside ``with Broker(path) as b:``:
    ``__exit__`` closes the broker under them. The process must end with
    KeyboardInterrupt (the threads with BrokerClosedError), never crash."""
    problems = []
    for run in range(SIGINT_RUNS):
        proc = start_worker("sigint-with", tmp_path / f"run{run}.db", cwd=tmp_path)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() == "ready":
            time.sleep(random.uniform(0.005, 0.1))
            proc.send_signal(signal.SIGINT)
        finished = finish(proc, timeout=20)
        if line.strip() != "ready":
            problems.append(f"run {run}: the worker did not start: {line!r} {finished.exit()}\n{finished.tail()}")
            continue
        problem = _sigint_problem(run, finished)
        if problem is not None:
            problems.append(problem)
    assert not problems, f"{len(problems)} of {SIGINT_RUNS} runs failed:\n" + "\n\n".join(problems[:4])
