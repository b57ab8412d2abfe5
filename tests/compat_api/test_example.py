"""``examples/simplebroker_users.py`` prints the same with its import switched
back to ``simplebroker``: the one-line switch is the whole migration."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parent.parent.parent / "examples" / "simplebroker_users.py"
OURS = "from sansio_broker.adapters.compat import Queue"


def output(source: Path, database: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(source), str(database)], capture_output=True, text=True, timeout=120, check=True
    )
    ids: dict[str, str] = {}
    return re.sub(r"\b\d{19}\b", lambda m: ids.setdefault(m.group(), f"ID{len(ids)}"), done.stdout)


def test_example_prints_what_simplebroker_prints(tmp_path: Path) -> None:
    source = EXAMPLE.read_text(encoding="utf-8")
    assert source.count(OURS) == 1
    theirs = tmp_path / "theirs.py"
    theirs.write_text(source.replace(OURS, "from simplebroker import Queue"), encoding="utf-8")
    ours = output(EXAMPLE, tmp_path / "ours.db")
    assert ours == output(theirs, tmp_path / "theirs.db")
    assert "read 'resize photo 1' (ID ID0, the same as write() returned: True)" in ours
    assert "newest first: ['latest status', 'resize photo 5']" in ours
    assert "processing resize photo 2\nprocessing resize photo 3\n" in ours
    assert "jobs: QueueStats(queue='jobs', pending=0, claimed=5, total=5)" in ours
