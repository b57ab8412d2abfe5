"""Start worker processes together and collect what each one reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

WORKER = Path(__file__).resolve().parent / "mp_worker.py"
TIMEOUT = 90


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent's environment without PYTHONPATH or BROKER_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("BROKER_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def worker_command(role: str, *args: object) -> list[str]:
    return [sys.executable, "-W", "always", str(WORKER), role, *map(str, args)]


def run_workers(commands: Sequence[list[str]], cwd: Path, env: Mapping[str, str]) -> list[tuple[Any, str]]:
    """Start every worker, release them together once all are ready, and
    return ``(json result, stderr)`` for each, in order."""
    procs = [
        subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(env),
            cwd=cwd,
        )
        for cmd in commands
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stderr is not None
            line = proc.stdout.readline()
            if line.strip() != "ready":
                proc.wait(timeout=TIMEOUT)
                raise AssertionError(f"worker {proc.args} did not start: {line!r}\n{proc.stderr.read()}")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=TIMEOUT)
            assert proc.returncode == 0, f"worker {proc.args[4:]} exit {proc.returncode}\n{out[-2000:]}\n{err}"
            results.append((json.loads(out.strip().splitlines()[-1]), err))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
