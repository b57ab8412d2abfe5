"""Generate the synchronous code from its async source, so the two cannot drift.

Two pairs: ``adapters/_async_operations.py`` -> ``adapters/_sync_operations.py``
(every operation users call) and ``adapters/_async_driver.py`` ->
``adapters/_driver.py`` (the drivers' run loop). ``async``/``await`` are
removed and ``Async`` names made plain, then the output is formatted with
ruff. ``--check`` exits 1 if a file on disk differs from what would be
generated (CI runs it through the tests).

    python tools/unasync.py [--check]
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "adapters" / "_async_operations.py"
TARGET = ROOT / "adapters" / "_sync_operations.py"
DRIVER_SOURCE = ROOT / "adapters" / "_async_driver.py"
DRIVER_TARGET = ROOT / "adapters" / "_driver.py"
PG_SOURCE = ROOT / "adapters" / "_pgasync.py"
PG_TARGET = ROOT / "adapters" / "_pgsync.py"
PAIRS = ((SOURCE, TARGET), (DRIVER_SOURCE, DRIVER_TARGET), (PG_SOURCE, PG_TARGET))

# Whole words only; applied in order.
REPLACEMENTS = [
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\bawait\s+", ""),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\b__aiter__\b", "__iter__"),
    (r"\b__anext__\b", "__next__"),
    (r"\baclose\b", "close"),
    (r"\bStopAsyncIteration\b", "StopIteration"),
    (r"\bAbstractAsyncContextManager\b", "AbstractContextManager"),
    (r"\basynccontextmanager\b", "contextmanager"),
    (r"\bAsync([A-Z]\w*)", r"\1"),  # AsyncIterator -> Iterator, AsyncEngine -> Engine
    (r"_async_operations\.py", "_sync_operations.py"),
]

# The drivers' only runtime calls, and their awaitable types.
DRIVER_REPLACEMENTS = [
    (r"^import asyncio\n", ""),
    (r"\basyncio\.sleep\(", "time.sleep("),
    (r"self\.cancelling = asyncio\.ensure_future\((self\._cancel\(\))\)", r"\1"),  # sent by the caller, not a task
    (r"\b_async_driver\b", "_driver"),
    (r"\b_pgasync\.py\b", "_pgsync.py"),
    (r"Awaitable\[(\w+)\]", r"\1"),
    (r"Callable, Awaitable", "Callable"),
    (r"Awaitable, Callable", "Callable"),
]

HEADER = (
    '"""Every broker operation users call, blocking: GENERATED from\n'
    "``_async_operations.py`` by ``tools/unasync.py``; do not edit (a test\n"
    'fails if this file drifts from its source)."""\n'
)


HEADERS = {
    TARGET.name: HEADER,
    DRIVER_TARGET.name: (
        '"""The synchronous drivers\' run loop and bookkeeping: GENERATED from\n'
        "``_async_driver.py`` by ``tools/unasync.py``; do not edit (a test fails\n"
        'if this file drifts from its source)."""\n'
    ),
    PG_TARGET.name: (
        '"""The synchronous driver on one psycopg connection: GENERATED from\n'
        "``_pgasync.py`` by ``tools/unasync.py``; do not edit (a test fails if\n"
        'this file drifts from its source)."""\n'
    ),
}


def generate(source: Path = SOURCE, target: Path = TARGET) -> str:
    text = source.read_text(encoding="utf-8")
    body = text.split('"""', 2)[2]  # drop the source's module docstring
    driver = source.name != SOURCE.name
    for pattern, replacement in (DRIVER_REPLACEMENTS if driver else []) + REPLACEMENTS:
        body = re.sub(pattern, replacement, body, flags=re.MULTILINE)
    header = HEADERS[target.name]
    sorted_imports = _ruff(["check", "--fix", "--quiet", "--select", "I", "--exit-zero"], header + body, target)
    return _ruff(["format"], sorted_imports, target)


def _ruff(args: list[str], text: str, target: Path) -> str:
    command = [sys.executable, "-m", "ruff", *args, "--stdin-filename", str(target), "-"]
    return subprocess.run(command, input=text, capture_output=True, text=True, check=True, cwd=ROOT).stdout


def main(argv: list[str]) -> int:
    stale = 0
    for source, target in PAIRS:
        generated = generate(source, target)
        if "--check" not in argv:
            target.write_text(generated, encoding="utf-8")
        elif target.read_text(encoding="utf-8") != generated:
            print(f"{target} is out of date: run python tools/unasync.py", file=sys.stderr)
            stale = 1
    return stale


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
