"""Item 8 of issue 9: one connection per thread, kept until ``close()``.

Connections of threads that have ended must be closed, so the descriptors a
process holds stay proportional to its live threads. Both tests run in a
subprocess: its descriptor table is the test's alone, and its RLIMIT_NOFILE
can be lowered.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lifecycle.lifecycle_support import run_worker

THREADS = 1000
CONCURRENT = 4  # live threads at a time
SLACK = 20  # descriptors allowed above the baseline (a few live threads' connections)


@pytest.mark.slow
def test_a_thousand_short_lived_threads_keep_descriptors_bounded(tmp_path: Path) -> None:
    finished = run_worker("short-threads", tmp_path / "broker.db", THREADS, CONCURRENT, cwd=tmp_path, timeout=120)
    assert finished.clean_exit, f"{finished.exit()}\n{finished.tail()}"
    (report,) = finished.reports
    assert report["error_count"] == 0, f"{report['error_count']} threads failed: {report['errors']}"
    limit = report["baseline"] + SLACK
    assert report["peak"] <= limit and report["final"] <= limit, (
        f"after {THREADS} short-lived threads (at most {CONCURRENT} alive) the process held "
        f"{report['final']} descriptors (peak {report['peak']}); baseline {report['baseline']}, limit {limit}"
    )
    for key in ("lost", "duplicates", "unexpected"):
        assert not report[key], f"{key}: {report[key][:10]}"


@pytest.mark.slow
def test_thread_per_request_writes_under_256_descriptors(tmp_path: Path) -> None:
    """``ulimit -n 256``: 400 writes, each from a thread of its own (8 at a time)."""
    finished = run_worker("rlimit-writes", tmp_path / "broker.db", 400, 8, cwd=tmp_path, timeout=120)
    assert finished.clean_exit, f"{finished.exit()}\n{finished.tail()}"
    (report,) = finished.reports
    assert report["error_count"] == 0, f"{report['error_count']} of 400 writes failed: {report['errors']}"
    assert report["stored"] == 400, f"{report['stored']} of 400 stored; missing {report['missing']}"
