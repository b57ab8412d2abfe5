"""Start worker processes together and collect what each one reports."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.support import workers

WORKER = Path(__file__).resolve().parent / "mp_worker.py"
TIMEOUT = 90


def worker_command(role: str, *args: object) -> list[str]:
    return [sys.executable, "-W", "always", str(WORKER), role, *map(str, args)]


def run_workers(commands: Sequence[list[str]], cwd: Path, env: Mapping[str, str]) -> list[tuple[Any, str]]:
    """Start every worker, release them together once all are ready, and
    return ``(json result, stderr)`` for each, in order."""
    return workers.run_workers(commands, cwd, env, TIMEOUT)


def start_worker(cmd: list[str], cwd: Path) -> subprocess.Popen[str]:
    """Start one worker in a clean environment and release it once it is ready."""
    return workers.start_workers([cmd], cwd, workers.clean_env(), TIMEOUT)[0]
