"""The storms of issue 9 (``storms.py``), each at a scale that takes a few seconds.

Every storm must lose no message (target 0), hand none out twice, and meet
no unexpected error, escaped exception, hang or crash. The failure message
is the storm's summary line (``python -m tests.lifecycle.storms --only NAME
--seed SEED`` repeats it at full scale).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from tests.lifecycle import storms

# storm -> scale: the sizes where a run takes well under a second.
SCALES = {
    "asyncio-cancel": 1.0,
    "trio-cancel": 1.0,
    "asyncio-close": 1.0,
    "trio-close": 1.0,
    "blocking-ctrlc": 1.0,
    "asyncio-sigint": 0.5,
    "asyncio-stream": 0.4,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SCALES))
def test_storm_loses_nothing(tmp_path: Path, name: str) -> None:
    seed = random.randrange(2**32)
    result = storms.run_storm(name, tmp_path, SCALES[name], seed)
    context = f"seed {seed}, scale {SCALES[name]}:\n{result.summary()}"
    seeded, received, lost = len(result.seeded), len(result.received), len(result.lost)
    duplicated, foreign, problems = len(result.duplicates), len(result.foreign), len(result.problems)
    assert seeded > 0, "the storm seeded nothing"
    assert received > 0, f"the storm delivered nothing: {context}"
    assert lost == 0, f"{lost} of {seeded} messages lost: {context}"
    assert duplicated == 0, f"{duplicated} messages delivered twice: {context}"
    assert foreign == 0, f"bodies nobody wrote: {context}"
    assert problems == 0, f"{problems} problems: {context}"


def test_the_sigint_storm_counts_lines_printed_right_after_ready(tmp_path: Path) -> None:
    """The lines a child printed before the parent read its "ready" are
    counted: they were once taken into a read buffer ``communicate()`` never
    sees, and bodies the consumer received were reported lost."""
    bodies = [f"m{i:06d}" for i in range(5)]
    script = "print('ready', flush=True)\n" + "".join(f"print('R', {b!r}, flush=True)\n" for b in bodies)
    proc = storms._start_unbuffered([sys.executable, "-c", script], cwd=tmp_path)
    assert proc.wait(timeout=60) == 0  # every line is in the pipe before the parent reads one
    first = storms._first_line(proc)
    out, err, hung = storms._rest_of_output(proc, timeout=60)
    result = storms.StormResult("asyncio-sigint", bodies)
    storms._read_child_lines([first, *out], result)
    assert (first, err, hung) == ("ready\n", "", False)
    assert result.received == bodies
    assert result.lost == []
