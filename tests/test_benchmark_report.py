"""``benchmarks/report.py`` runs end to end in its smoke configuration: every case in the JSON, a PNG per group.

Not timed, and no speed is asserted: the report measures, it never gates.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

for module in ("matplotlib", "trio", "aiosqlite", "simplebroker"):
    pytest.importorskip(module)

REPORT = Path(__file__).resolve().parent.parent / "benchmarks" / "report.py"
GROUPS = ("concurrent-writes", "concurrent-reads", "bulk", "sequential", "scale")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_smoke_report_has_every_case_and_chart(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            str(REPORT),
            "--smoke",
            "--scale",
            "--scale-pending",
            "5000",
            "--dir",
            str(tmp_path / "scratch"),
            "--allow-tmpfs",  # a test of the report, not of the disk: any temporary directory will do
            "--cache-dir",
            str(tmp_path / "cache"),
            "--json",
            str(out / "report.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Machine" in done.stdout and "Targets" in done.stdout
    assert "[" in done.stderr, "one progress line per measurement goes to stderr"

    document = json.loads((out / "report.json").read_text())
    assert document["machine"]["filesystem"]
    assert {c["group"] for c in document["cases"]} == set(GROUPS)
    rows = {(r["group"], r["case"], r["impl"]) for r in document["rows"]}
    expected = {(c["group"], c["case"], impl["key"]) for c in document["cases"] for impl in c["impls"]}
    assert expected <= rows, f"cases without results: {sorted(expected - rows)}"
    for group, case in (
        ("concurrent-writes", "write"),
        ("concurrent-reads", "claim"),
        ("bulk", "write_many 1000"),
        ("bulk", "claim_many 1000"),
        ("sequential", "write"),
        ("sequential", "claim"),
    ):
        impls = {impl for g, c, impl in rows if (g, c) == (group, case)}
        assert {"raw", "blocking", "asyncio", "trio"} <= impls, (group, case, impls)
    assert sum(1 for c in document["cases"] if c["group"] == "scale") == 4
    for row in document["rows"]:
        assert row["median_rate"] > 0
        assert row["p50_us"] > 0 and row["p99_us"] >= row["p50_us"]
        assert row["is_reference"] or row["ratio"] is not None
    assert {t["impl"] for t in document["targets"]} >= {"asyncio", "trio", "blocking", "pending-large"}
    assert {c["impl"] for c in document["sequential_baseline"]["checks"]} == {"blocking", "asyncio", "trio"}
    assert len(document["memory"]) == 4
    assert all(m["messages"] == 5000 for m in document["memory"])

    for group in GROUPS:
        png = out / f"{group}.png"
        assert png.read_bytes()[:8] == PNG_SIGNATURE, png
    assert sorted(Path(p).name for p in document["charts"]) == sorted(f"{g}.png" for g in GROUPS)
