"""Scripts run in a fresh interpreter, to see a program that uses a broker exit (promptly, cleanly).

A script is a runtime's prelude (imports, ``path`` from the command line,
``worker_threads()``) and a body written in that runtime's idiom.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.workers import clean_env

PRELUDES = {
    "asyncio": """
import asyncio, sys, threading
from sansio_broker.adapters.asyncio import AsyncBroker, AsyncQueue, async_broker
path = sys.argv[1]

def worker_threads():
    return [t for t in threading.enumerate() if "_connection_worker_thread" in t.name and t.is_alive()]
""",
    "trio": """
import sys, threading, time
import trio
from sansio_broker.adapters.trio import TrioBroker, TrioQueue, trio_broker
from tests.support import internals
path = sys.argv[1]

def worker_threads():
    return [t for t in threading.enumerate() if t.name == "sansio-broker-trio-worker" and t.is_alive()]
""",
}

EXIT_TIMEOUT = 15.0  # "exits promptly": generous, only to tell exiting from hanging


def start_script(runtime: str, tmp_path: Path, body: str, name: str = "script") -> subprocess.Popen[str]:
    """Run the runtime's prelude and ``body`` in a fresh interpreter on ``<tmp_path>/<name>.db``."""
    script = tmp_path / f"{name}.py"
    script.write_text(textwrap.dedent(PRELUDES[runtime]) + textwrap.dedent(body))
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / f"{name}.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
    )


def finish(proc: subprocess.Popen[str], timeout: float = EXIT_TIMEOUT) -> tuple[int, str, str]:
    """Wait (bounded) for the script; returns (returncode, stdout, stderr)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the script did not exit within {timeout}s\n{out}\n{err}") from None
    return proc.returncode, out, err
