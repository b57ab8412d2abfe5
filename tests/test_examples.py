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
