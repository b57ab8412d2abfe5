"""Every example runs to completion by itself, on a fresh database."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_on_default_database(example: Path, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(example)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), "an example should show what it did"
    database = tmp_path / ".broker.db"
    assert database.exists(), "examples default to .broker.db in the current directory"
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_blocking_example_output(tmp_path: Path) -> None:
    example = Path(__file__).parent.parent / "examples" / "blocking_basic.py"
    out = subprocess.run(
        [sys.executable, str(example), str(tmp_path / "x.db")], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert "dead letters: ['job 3']" in out
    assert "job 4 done" in out


def run_example(name: str, tmp_path: Path) -> str:
    example = Path(__file__).parent.parent / "examples" / name
    done = subprocess.run(
        [sys.executable, str(example), str(tmp_path / "x.db")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_asyncio_basic_output(tmp_path: Path) -> None:
    out = run_example("asyncio_basic.py", tmp_path)
    assert "(increasing: True)" in out
    write_many_line = next(row for row in out.splitlines() if row.startswith("write_many returned IDs"))
    assert write_many_line.endswith(": True)")
    assert "read(), claimed: hello" in out
    assert "read_all: ['world', 'a', 'b', 'c']" in out
    assert "read() on an empty queue: None" in out
    assert "get() waited, then claimed: late" in out
    assert "get(timeout=0.05) on an empty queue: None" in out
    assert "asyncio.timeout() cancelled a waiting get(); pending now: 0" in out


def test_asyncio_worker_pool_output(tmp_path: Path) -> None:
    out = run_example("asyncio_worker_pool.py", tmp_path)
    assert "200 of 200 jobs done exactly once; 200 done in all" in out
    assert "left in the queue: 0" in out
    counts = [int(line.split()[2]) for line in out.splitlines() if line.startswith("worker-")]
    assert sum(counts) == 200 and 1 <= len(counts) <= 4
    assert "4 waiting workers shared a pool of 2 connections" in out


def test_asyncio_batch_processing_output(tmp_path: Path) -> None:
    out = run_example("asyncio_batch_processing.py", tmp_path)
    assert "raised TransactionError" in out
    assert "pending after the break: 70" in out  # batch one committed, batch two rolled back
    assert "delivered twice: 20 (event 50 .. event 69); lost: 0" in out
    assert "pending events now: 0" in out


def test_asyncio_priority_queues_output(tmp_path: Path) -> None:
    out = run_example("asyncio_priority_queues.py", tmp_path)
    order = out.split("order served: ")[1].strip()
    levels = [level.strip("'") for level in order.strip("[]").split(", ")]
    assert sorted(levels) == sorted(["high", "normal", "normal", "urgent", "low", "low", "low", "low"])
    assert levels[0] == "high"
    # Written while the backlog is served, the urgent job overtakes the low ones
    # (all of them in practice; at least the late one even on a slow machine).
    assert levels.index("urgent") < len(levels) - 1
    # The consumer waited once every level was empty, and the late job woke it.
    assert "(every level is empty: waiting)" in out
    assert out.index("(every level is empty: waiting)") < out.index("served 'low: late report'")
    assert "served 'stop'" not in out


def test_asyncio_dead_letter_queue_output(tmp_path: Path) -> None:
    out = run_example("asyncio_dead_letter_queue.py", tmp_path)
    assert "dead-lettered: [3, 7]" in out
    assert "job 3: failed (bad input in job 3), attempt 3: dead-lettered" in out
    assert "job 5: done on attempt 2" in out
    assert "job 8: worker crashed: rolled back, pending again with attempts=0" in out
    assert "results: 8 jobs done" in out
    assert "pending jobs left: 0" in out
    assert out.count("attempt 3: dead-lettered") == 2  # each failing job settled once, none twice


def test_asyncio_simplebroker_interop_output(tmp_path: Path) -> None:
    pytest.importorskip("simplebroker")
    out = run_example("asyncio_simplebroker_interop.py", tmp_path)
    assert out.count("same IDs: True") == 2
    assert "one strict order across both programs: True" in out
    assert out.count("asyncio got ") == 4  # woken by SimpleBroker's writes and by ours
    assert "SimpleBroker's QueueWatcher got 'wake up, SimpleBroker', same ID: True" in out


def test_trio_basic_output(tmp_path: Path) -> None:
    pytest.importorskip("trio")
    out = run_example("trio_basic.py", tmp_path)
    assert "(increasing: True)" in out
    assert "read(), claimed: hello\nread(), claimed: world\nread() on an empty queue: None" in out
    assert "100 of 100 jobs done exactly once; left in the queue: 0" in out
    counts = [int(line.split()[2]) for line in out.splitlines() if line.startswith("worker-")]
    assert sum(counts) == 100 and 1 <= len(counts) <= 4
    assert "stopped after 70; pending now: 70" in out  # batch one committed, batch two rolled back
    assert "delivered twice: 20 (event 50 .. event 69); lost: 0" in out
    assert "pending events now: 0" in out


def test_blocking_waiting_output(tmp_path: Path) -> None:
    out = run_example("blocking_waiting.py", tmp_path)
    assert "100 of 100 jobs done exactly once; 100 done in all; left: 0" in out
    counts = [int(line.split()[2]) for line in out.splitlines() if line.startswith("worker-")]
    assert sum(counts) == 100 and 1 <= len(counts) <= 4
    assert "get(timeout=0.05) on an empty queue: None" in out
    assert "get(timeout=0) on an empty queue: None" in out
    # watch() on a second broker object got every event, in order, and ended when that broker closed.
    assert "watch() ended: its broker was closed" in out
    assert f"watch() saw {[f'event {n}' for n in range(5)]}; pending now: 0" in out


def test_trio_waiting_output(tmp_path: Path) -> None:
    pytest.importorskip("trio")
    out = run_example("trio_waiting.py", tmp_path)
    assert "100 of 100 jobs done exactly once; 100 done in all; left: 0" in out
    counts = [int(line.split()[2]) for line in out.splitlines() if line.startswith("worker-")]
    assert sum(counts) == 100 and 1 <= len(counts) <= 4
    assert "get(timeout=0.05) on an empty queue: None" in out
    assert "move_on_after cancelled a waiting get(): True; pending: 0" in out
    assert (
        "broker.get got 'normal: resize photo' from trio_waiting.normal\n"
        "broker.get got 'urgent: page on-call' from trio_waiting.urgent\n"
        "broker.get got 'normal: send email' from trio_waiting.normal\n"
    ) in out
    assert "broker.get(timeout=0) with both empty: None" in out


def test_blocking_cross_process_output(tmp_path: Path) -> None:
    out = run_example("blocking_cross_process.py", tmp_path)
    assert "waiting while the other process starts: pong 0" in out
    assert "20 more round trips" in out  # each answer checked inside the example
    assert "other process exited with 0" in out
    try:
        import simplebroker  # noqa: F401
    except ImportError:
        assert "simplebroker is not installed" in out
    else:
        assert "woken by SimpleBroker's CLI: hello from SimpleBroker's CLI" in out
        assert "left on the queues: 0" in out
