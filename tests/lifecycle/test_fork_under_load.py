"""Item 7 of issue 9: ``fork()`` while other threads write.

A parent with three threads writing and reading in a loop forks 20 times from
its main thread; every child writes and reads with the inherited ``Broker``
and must exit 0 within a few seconds (a watchdog kills a child that takes
more than 10 s: a failure). The parent keeps working throughout. The whole
scenario runs in a subprocess: forking pytest itself, threads and all, is
fragile.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.lifecycle.lifecycle_support import run_worker

FORKS = 20


@pytest.mark.slow
def test_twenty_forks_while_three_threads_write(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    finished = run_worker("fork-load", tmp_path, FORKS, seed, cwd=tmp_path, timeout=90)
    assert finished.clean_exit, f"the forking parent: {finished.exit()}\n{finished.tail()}"
    (report,) = finished.reports
    failed = {index: outcome for index, outcome in report["outcomes"].items() if outcome != "ok"}
    errors = {
        index: error.strip().splitlines()[-1][:300] if error.strip() else ""
        for index, error in report["child_errors"].items()
    }
    assert not failed, (
        f"{len(failed)} of {FORKS} forked children failed (seed {seed}): {failed}\nlast lines of their errors: {errors}"
    )
    assert not report["parent_errors"], f"the parent's threads failed: {report['parent_errors']}"
    assert not report["threads_alive"], f"parent threads {report['threads_alive']} hung"
    assert all(n > 0 for n in report["parent_progress_after_forks"]), (
        f"a parent thread stopped working after the forks: {report['parent_progress_after_forks']}"
    )
    for key in ("lost", "duplicates", "unexpected"):
        assert not report[key], f"{key}: {report[key][:10]}"
