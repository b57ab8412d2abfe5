"""Run every adapter's benchmark, one after another: blocking, asyncio, trio.

Each script runs in its own process with this Python, at its own defaults
(or ``--quick``); its report (Machine block, table, targets) is printed as it
comes, under a header naming the exact command. Any other option is passed to
all three scripts unchanged, so use only options they share (``--n``,
``--repeats``, ``--sync``, ``--dir``, ...; not ``--impl`` or ``--json``).

    python benchmarks/run_all.py --quick    # about half a minute
    python benchmarks/run_all.py            # full: a few minutes
    python benchmarks/run_all.py --quick --sync FULL NORMAL

The exit status is the first non-zero status of a script, else 0 (a missed
target is not a failure: the scripts report, they never gate).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ("bench_blocking.py", "bench_asyncio.py", "bench_trio.py")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script (a smoke run)")
    args, passed_on = parser.parse_known_args(argv)
    options = ["--quick", *passed_on] if args.quick else passed_on
    status = 0
    for k, script in enumerate(SCRIPTS):
        command = [sys.executable, str(HERE / script), *options]
        shown = " ".join(["python", f"benchmarks/{script}", *options])
        if k:
            print()
        print(f"======== {shown} ========", flush=True)
        returncode = subprocess.run(command, check=False).returncode
        if returncode and not status:
            status = returncode
            print(f"{script} exited with status {returncode}", file=sys.stderr, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
