"""``benchmarks/report.py`` runs end to end in its smoke configuration: every case in the JSON, a PNG per group.

``benchmarks/ab.py`` runs it on two checkouts and compares them case by case. Not timed, and no speed is
asserted: the report measures, it never gates.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import sansio_broker

for module in ("matplotlib", "trio", "aiosqlite", "simplebroker", "anyio"):
    pytest.importorskip(module)

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
REPORT = BENCHMARKS / "report.py"
GROUPS = ("concurrent-writes", "concurrent-reads", "bulk", "sequential", "scale")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LIBRARY = Path(sansio_broker.__file__).resolve().parent


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
    assert "synchronous=FULL" in done.stdout
    assert "[" in done.stderr, "one progress line per measurement goes to stderr"

    document = json.loads((out / "report.json").read_text())
    assert document["machine"]["filesystem"]
    assert document["machine"]["sansio_broker_path"] == str(LIBRARY), "the JSON names the library it measured"
    assert document["settings"]["sync"] == "FULL"
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


@pytest.mark.slow
def test_report_at_normal_with_hops_states_its_sync_mode_and_sets_no_targets(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    options = ["--dir", str(tmp_path), "--allow-tmpfs", "--json", str(out), "--no-charts"]
    done = subprocess.run(
        [sys.executable, str(REPORT), "--smoke", "--groups", "sequential", "--sync", "normal", "--hops", *options],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "synchronous=NORMAL" in done.stdout and "Targets: none at synchronous=NORMAL" in done.stdout
    document = json.loads(out.read_text())
    assert document["settings"]["sync"] == "NORMAL" and document["targets"] == [] and document["charts"] == []
    assert not document["problems"], "every connection runs at the requested synchronous mode"
    impls = {r["impl"] for r in document["rows"]}
    assert {"raw", "blocking", "asyncio", "trio", "asyncio-hop", "trio-hop"} <= impls


@pytest.mark.slow
def test_waiting_group_measures_every_runtime_against_simplebroker(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    options = ["--dir", str(tmp_path), "--allow-tmpfs", "--json", str(out), "--no-charts", "--waiters", "10"]
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "waiting.py"), "--smoke", *options],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Machine" in done.stdout and "synchronous=FULL" in done.stdout and "Waiting targets" in done.stdout
    document = json.loads(out.read_text())
    assert document["settings"]["groups"] == ["waiting"] and document["rows"] == []
    waiting = document["waiting"]
    cells = {(c["writer"], c["impl"]) for c in waiting["latency"]}
    impls = {"blocking", "asyncio", "trio", "simplebroker"}
    assert cells == {(w, i) for w in ("local", "sansio", "simplebroker") for i in impls}
    for cell in waiting["latency"]:
        assert len(cell["samples_ns"]) == waiting["sizes"]["samples"]
        assert cell["is_reference"] == (cell["impl"] == "simplebroker")
        assert cell["is_reference"] or cell["ratio_p50"] is not None
    assert {i["impl"] for i in waiting["idle"]} == impls
    assert all(i["waiters"] == (1 if i["impl"] == "simplebroker" else 10) for i in waiting["idle"])
    assert {t["runtime"] for t in waiting["throughput"]} == {"blocking", "asyncio", "trio"}
    assert all(t["pipeline_rate"] > 0 and t["reference_rate"] > 0 for t in waiting["throughput"])
    names = " ".join(t["name"] for t in waiting["targets"])
    assert all(part in names for part in ("wake", "p99", "idle", "throughput"))


def load_ab() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_ab", BENCHMARKS / "ab.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ab_table_gives_each_sides_median_ratio_and_the_change() -> None:
    def document(ratios: list[float]) -> dict[str, object]:
        rows = [
            {"group": "sequential", "case": "write", "impl": "raw", "label": "raw", "is_reference": True},
            {"group": "sequential", "case": "write", "impl": "trio", "label": "trio (pool 4)", "is_reference": False}
            | {"ratios": ratios},
        ]
        return {"rows": rows}

    table = load_ab().compare({"A": [document([0.5, 0.7]), document([0.6])], "B": [document([0.57, 0.3, 0.9])]}, 5.0)
    line = next(line for line in table.splitlines() if "trio (pool 4)" in line)
    assert "0.600" in line and "0.570" in line and "-5.0%" in line and "beyond" not in line
    table = load_ab().compare({"A": [document([0.6])], "B": [document([0.5])]}, 5.0)
    assert "-16.7%" in table and "beyond 5%" in table
    assert "raw" not in table.split("\n", 2)[2], "references are the unit of each ratio, not a row"


@pytest.mark.slow
def test_ab_runs_both_sides_alternately_and_refuses_a_side_it_did_not_measure(tmp_path: Path) -> None:
    root = str(BENCHMARKS.parent)
    report = ["--", "--smoke", "--groups", "sequential", "--dir", str(tmp_path), "--allow-tmpfs"]
    ab = [sys.executable, str(BENCHMARKS / "ab.py"), "--runs", "2", "--out", str(tmp_path / "ab")]
    done = subprocess.run([*ab, "--a", root, "--b", root, *report], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    runs = [line.split(":")[0] for line in done.stdout.splitlines() if line.startswith("run ")]
    assert runs == ["run 1/2 A", "run 1/2 B", "run 2/2 B", "run 2/2 A"]
    assert f"{LIBRARY} @ " in done.stdout
    for impl in ("blocking Broker", "asyncio (pool 10)", "trio (pool 4)"):
        assert sum(impl in line and "%" in line for line in done.stdout.splitlines()) == 2, impl  # write, claim
    assert json.loads((tmp_path / "ab" / "ab.json").read_text())["runs"] == 2

    # A directory without the library: the report would measure the installed one, so the comparison stops.
    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run([*ab, "--a", str(empty), *report], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "not" in done.stderr and str(empty) in done.stderr
