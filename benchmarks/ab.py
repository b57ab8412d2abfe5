"""A/B: the benchmark report on two checkouts of the library, alternating, compared case by case.

    python benchmarks/ab.py --a /work/ab_base --runs 6            # B: this checkout; report.py --short each run
    python benchmarks/ab.py --a /work/ab_base --runs 1 --quick    # a test of the harness (report.py --smoke)
    python benchmarks/ab.py --a OLD --b NEW --runs 4 -- --groups sequential --n-sequential 2000

Each run is one ``report.py`` process (this checkout's harness: both sides run the same cases) importing the side's
``sansio_broker`` through ``PYTHONPATH``; a run whose JSON names another library stops the comparison. Runs go A B,
B A, A B, ... so drift lands on both sides alike. The table: per case and implementation, each side's median of its
per-run ratios to the case's reference, and B/A - 1 in percent. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPORT = HERE / "report.py"


def run_side(side: str, checkout: str, report_args: Sequence[str], json_path: Path) -> dict[str, Any]:
    """One report run importing ``checkout``'s library; its JSON document, checked to name that library."""
    python_path = os.pathsep.join(p for p in (checkout, os.environ.get("PYTHONPATH")) if p)
    command = [sys.executable, str(REPORT), *report_args, "--no-charts", "--json", str(json_path)]
    done = subprocess.run(command, env=os.environ | {"PYTHONPATH": python_path}, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{side} ({checkout}) failed with status {done.returncode}:\n{done.stderr[-4000:]}")
    document: dict[str, Any] = json.loads(json_path.read_text())
    measured, wanted = Path(document["machine"]["sansio_broker_path"]), (Path(checkout) / "sansio_broker").resolve()
    if measured != wanted:
        sys.exit(f"{side}: the report measured {measured}, not {wanted}: is the library on PYTHONPATH importable?")
    return document


def compare(runs: dict[str, list[dict[str, Any]]], tolerance: float) -> str:
    """The table: per case and implementation, each side's median per-run ratio, and B/A - 1 in percent."""
    ratios: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    labels = {}
    for side, documents in runs.items():
        for row in (r for document in documents for r in document["rows"] if not r["is_reference"]):
            key = (row["group"], row["case"], row["impl"])
            labels[key] = row["label"]
            ratios.setdefault(key, {"A": [], "B": []})[side].extend(row["ratios"])
    lines = [("group", "case", "implementation", "A x ref", "B x ref", "B/A", "A runs", "B runs", "note")]
    previous = None
    for key, sides in ratios.items():
        a, b = (statistics.median(sides[s]) if sides[s] else None for s in "AB")
        change = (b / a - 1) * 100 if a and b is not None else None
        flag = f"beyond {tolerance:g}%" if change is not None and round(abs(change), 1) > tolerance else ""
        names, previous = (key[:2] if key[:2] != previous else ("", "")), key[:2]
        shown = [f"{x:.3f}" if x is not None else "-" for x in (a, b)] + [
            f"{change:+.1f}%" if change is not None else "-"
        ]
        spreads = [" ".join(f"{x:.2f}" for x in sides[s]) for s in "AB"]
        lines.append((*names, labels[key], *shown, *spreads, flag))
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for k, line in enumerate(lines):
        cells = [c.rjust(w) if 3 <= i <= 5 else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        out.append("  ".join(cells).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", required=True, help="checkout (repository root) of the A side: the code before")
    parser.add_argument("--b", default=str(HERE.parent), help="checkout of the B side (default: this one)")
    parser.add_argument("--runs", type=int, default=5, help="report runs per side, alternating (default 5)")
    parser.add_argument("--quick", action="store_true", help="report.py --smoke: proves the harness, not the speed")
    parser.add_argument("--tolerance", type=float, default=5.0, help="flag changes beyond this percent (default 5)")
    parser.add_argument("--out", default=str(HERE / "results" / "ab"), help="where each run's JSON and ab.json go")
    parser.add_argument("report_args", nargs="*", help="after --: options for report.py (default --short --repeats 1)")
    args = parser.parse_args(argv)
    report_args = args.report_args or (["--smoke"] if args.quick else ["--short", "--repeats", "1"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sides = {"A": str(Path(args.a).resolve()), "B": str(Path(args.b).resolve())}
    runs: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
    for n in range(args.runs):
        for side in "AB" if n % 2 == 0 else "BA":
            document = run_side(side, sides[side], report_args, out / f"run{n + 1:02d}-{side}.json")
            runs[side].append(document)
            machine = document["machine"]
            print(
                f"run {n + 1}/{args.runs} {side}: {machine['sansio_broker_path']} @ {machine['sansio_broker']}, "
                f"{document['elapsed_seconds']:.0f} s, fdatasync {machine['fdatasync_4k_median_us']} us, "
                f"load {machine['load_average']}",
                flush=True,
            )
    sync = runs["A"][0]["settings"]["sync"]
    print(
        f"\nA = {sides['A']}\nB = {sides['B']}\nreport.py {' '.join(report_args)}; {args.runs} runs per side, "
        f"alternating; synchronous={sync}\nx ref: median of every per-run ratio to the case's reference (measured "
        "in the same run); B/A: change of that median, in percent\n"
    )
    table = compare(runs, args.tolerance)
    print(table)
    summary = {"sides": sides, "report_args": report_args, "runs": args.runs, "sync": sync, "table": table}
    (out / "ab.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
