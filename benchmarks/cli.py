"""The command line (issue 12): ``sansio-broker`` against SimpleBroker's ``broker``, in the same run, on a real disk.

``python benchmarks/cli.py [--runs 3] [--starts 10] [--messages 100000] [--sync FULL] [--dir /var/tmp]``

Cases, each the wall time of whole processes (``subprocess.run``, stdout to ``/dev/null``), as a ratio to
``broker``'s (x ref; median of the per-run ratios):

- ``write q x`` and ``read q``: start-up. Per run, each program writes ``--starts`` messages into its own file (made
  by one untimed write) and reads them back one process each; a run's figure is the median process.
- ``read q --all``: ``--messages`` pending messages (a SimpleBroker-made file, filled by raw ``executemany`` once,
  fsynced copies per program and run) drained by one process; afterwards every message must be claimed.

The programs take turns, the order alternating every run. At FULL ``read --all`` commits (fsyncs) once a message:
100,000 take about a minute per program and run here. ``BROKER_SYNC_MODE`` (``--sync``) and
``BROKER_AUTO_VACUUM=0`` are set for both; no other ``BROKER_*`` variable reaches them. Targets (issue 12):
start-up at most 0.6x broker's, ``read --all`` at least as fast (at most 1.0x). A missed target never fails
the run; a message left unclaimed does (exit 1). Machine block and table on stdout, progress on stderr.

Both programs run from compiled bytecode: pip compiled SimpleBroker's at install, and this checkout's package
is compiled first (an editable install under ``PYTHONDONTWRITEBYTECODE=1`` would otherwise recompile every
module at every start, which no installed copy does).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import report

VENV_BIN = Path(sys.executable).parent
PROGRAMS = ("broker", "sansio-broker")
REF = "broker"
STARTUP_TARGET, READ_ALL_TARGET = 0.6, 1.0
Timings = dict[str, dict[str, list[float]]]  # case -> program -> per-run seconds


def command(program: str) -> list[str]:
    script = VENV_BIN / program
    return [str(script) if script.exists() else shutil.which(program) or program]


def environment(sync: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    return env | {"BROKER_SYNC_MODE": sync, "BROKER_AUTO_VACUUM": "0"}


def timed(argv: Sequence[str], cwd: Path, env: dict[str, str]) -> float:
    """Wall seconds of one process, which must succeed."""
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed (rc {done.returncode}): {done.stderr.decode().strip()}")
    return elapsed


def pending(path: Path) -> int:
    with report.read_only(str(path)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM messages WHERE claimed = 0").fetchone()[0])


def read_all_template(directory: Path, messages: int) -> Path:
    """A SimpleBroker-made file holding ``messages`` pending messages in ``report.QUEUE`` (built once a run)."""
    path = directory / "template.db"
    report.create_file(str(path), "simplebroker", "FULL")
    bodies = (report.make_body("c", i, 64) for i in range(messages))
    report.insert_pending(str(path), bodies, messages, "OFF")
    report.fsync_file(str(path))
    return path


def measure(args: argparse.Namespace, directory: Path) -> tuple[Timings, list[str]]:
    env, problems = environment(args.sync), []
    timings: Timings = {case: {p: [] for p in PROGRAMS} for case in ("write q x", "read q", "read q --all")}
    template = read_all_template(directory, args.messages)
    for run in range(args.runs):
        order = PROGRAMS if run % 2 == 0 else PROGRAMS[::-1]
        for program in order:  # start-up: its own file, made by one untimed write
            cwd = directory / f"run{run}-{program}"
            cwd.mkdir()
            timed([*command(program), "write", "warm", "x"], cwd, env)
            writes = [timed([*command(program), "write", "q", "x"], cwd, env) for _ in range(args.starts)]
            reads = [timed([*command(program), "read", "q"], cwd, env) for _ in range(args.starts)]
            timings["write q x"][program].append(statistics.median(writes))
            timings["read q"][program].append(statistics.median(reads))
        for program in order:  # read --all of a fresh, fsynced copy of the template
            cwd = directory / f"run{run}-{program}-all"
            cwd.mkdir()
            report.fsync_file(str(cwd / ".broker.db"), copy_of=str(template))
            seconds = timed([*command(program), "read", report.QUEUE, "--all"], cwd, env)
            timings["read q --all"][program].append(seconds)
            if (left := pending(cwd / ".broker.db")) != 0:
                problems.append(f"{program} read --all left {left} of {args.messages:,} messages pending (run {run})")
        line = "  ".join(f"{case} {t[PROGRAMS[1]][-1] / t[REF][-1]:.2f}x" for case, t in timings.items())
        report.log(f"run {run + 1}/{args.runs}: {line}")
    return timings, problems


def render(timings: Timings, args: argparse.Namespace) -> str:
    header = ("case", "broker s", "sansio-broker s", "x ref", "per-run x ref", "target", "verdict")
    rows = []
    for case, by_program in timings.items():
        ratios = [s / r for s, r in zip(by_program[PROGRAMS[1]], by_program[REF], strict=True)]
        ratio, target = statistics.median(ratios), READ_ALL_TARGET if case.endswith("--all") else STARTUP_TARGET
        rows.append(
            (
                case if not case.endswith("--all") else f"{case} ({args.messages:,})",
                f"{statistics.median(by_program[REF]):.3f}",
                f"{statistics.median(by_program[PROGRAMS[1]]):.3f}",
                f"{ratio:.2f}",
                " ".join(f"{r:.2f}" for r in ratios),
                f"<= {target}",
                "met" if ratio <= target else "MISSED",
            )
        )
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in (header, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--runs", type=int, default=3, help="interleaved runs (default 3; at least 3)")
    add("--starts", type=int, default=10, help="write and read processes per program and run (default 10)")
    add("--messages", type=int, default=100_000, help="messages drained by read --all (default 100,000)")
    add("--sync", default="FULL", type=str.upper, choices=("OFF", "NORMAL", "FULL"), help="BROKER_SYNC_MODE")
    add("--dir", default=None, help="scratch directory on a real disk (default: /var/tmp)")
    add("--allow-tmpfs", action="store_true", help="run even if the directory is on tmpfs")
    args = parser.parse_args(argv)
    if args.runs < 3 or args.starts < 1 or args.messages < 1:
        parser.error("--runs must be at least 3, --starts and --messages positive")
    return args


def compile_package() -> None:
    """Write this library's ``.pyc`` files, as ``pip install`` does for SimpleBroker's."""
    import compileall

    import sansio_broker

    compileall.compile_dir(Path(sansio_broker.__file__).parent, quiet=1)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    compile_package()
    missing = [p for p in PROGRAMS if not (VENV_BIN / p).exists() and shutil.which(p) is None]
    if missing:
        report.log(f"not installed: {', '.join(missing)}")
        return 2
    parent = args.dir or ("/var/tmp" if os.access("/var/tmp", os.W_OK) else os.getcwd())
    directory = Path(tempfile.mkdtemp(prefix="sansio-bench-cli-", dir=parent))
    try:
        machine = report.machine_info(str(directory), ["simplebroker"])
        if machine["filesystem"] in report.MEMORY_FILESYSTEMS and not args.allow_tmpfs:
            report.log(f"refusing to run: {directory} is on {machine['filesystem']}; use --dir on a real disk")
            return 2
        print("Machine")
        for key, value in machine.items():
            print(f"  {key:24} {value}")
        started = time.perf_counter()
        timings, problems = measure(args, directory)
        print(
            f"\nCommand line vs broker (median of {args.runs} interleaved runs, BROKER_SYNC_MODE={args.sync}, "
            f"sqlite {sqlite3.sqlite_version}, {time.perf_counter() - started:.0f} s). Wall time of whole processes;"
            f"\nstart-up: a run's median of {args.starts} processes; x ref: median of the per-run ratios to broker.\n"
        )
        print(render(timings, args))
        for problem in problems:
            print(f"FAILED: {problem}")
        return 1 if problems else 0
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
