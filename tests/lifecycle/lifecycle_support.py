"""Run ``lifecycle_worker.py`` roles in subprocesses and describe how they ended.

A child crashing (a segfault), hanging or exiting badly is a test failure
with the child's own account (its stderr, faulthandler's traceback
included), never a crashed or stuck pytest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WORKER = Path(__file__).resolve().parent / "lifecycle_worker.py"


def child_env() -> dict[str, str]:
    """The test's environment without BROKER_* settings: the children use the
    default configuration (and the same ``sansio_broker`` as this process)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_") and k != "PYTHONWARNINGS"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def worker_command(role: str, *args: object) -> list[str]:
    # faulthandler: a crashing child prints every thread's Python traceback.
    return [sys.executable, "-X", "faulthandler", str(WORKER), role, *map(str, args)]


@dataclass
class Finished:
    """How a child ended, and what it said."""

    command: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    hung: bool
    timeout: float

    @property
    def reports(self) -> list[dict[str, Any]]:
        """The JSON lines the child printed."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    @property
    def crashed(self) -> bool:
        """Killed by a signal other than SIGINT (the one a Ctrl-C exit re-raises)."""
        rc = self.returncode
        return not self.hung and rc is not None and rc < 0 and -rc != signal.SIGINT

    def exit(self) -> str:
        rc = self.returncode
        if self.hung:
            return f"hung: killed after {self.timeout:.0f} s"
        if rc is not None and rc < 0:
            return f"killed by {signal.Signals(-rc).name}"
        return f"exit code {rc}"

    @property
    def clean_exit(self) -> bool:
        return self.returncode == 0 and not self.hung

    def tail(self, lines: int = 30) -> str:
        """The end of stderr; after a fatal error, faulthandler's account of the crashing thread."""
        text = self.stderr.rstrip().splitlines()
        if any(line.startswith("Fatal Python error") for line in text):
            start = next(i for i, line in enumerate(text) if line.startswith("Fatal Python error"))
            crash = text[start : start + 2]
            current = next((i for i, line in enumerate(text) if line.startswith("Current thread")), None)
            if current is not None:
                block = text[current:]
                end = next((i for i, line in enumerate(block) if not line.strip()), len(block))
                crash += ["", *block[:end]]
            threads = sum(line.startswith("Thread 0x") for line in text)
            return "\n".join([*crash, f"(and {threads} other threads' tracebacks)"])
        return "\n".join(text[-lines:])


def start_worker(role: str, *args: object, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        worker_command(role, *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        cwd=cwd,
    )


def finish(proc: subprocess.Popen[str], timeout: float) -> Finished:
    """Wait for ``proc``; kill it if it runs past ``timeout`` (then ``hung``)."""
    try:
        out, err = proc.communicate(timeout=timeout)
        hung = False
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        hung = True
    command = [str(a) for a in proc.args] if isinstance(proc.args, list) else [str(proc.args)]
    return Finished(command, proc.returncode, out, err, hung, timeout)


def run_worker(role: str, *args: object, cwd: Path, timeout: float) -> Finished:
    return finish(start_worker(role, *args, cwd=cwd), timeout)
