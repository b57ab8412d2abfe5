"""Generate the blocking operations from the async ones, so they cannot drift.

``adapters/_async_operations.py`` is the source; this writes
``adapters/_sync_operations.py`` (``async``/``await`` removed, ``Async``
names made plain), formatted with ruff. ``--check`` exits 1 if the file on
disk differs from what would be generated (CI runs it through the tests).

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

HEADER = (
    '"""Every broker operation users call, blocking: GENERATED from\n'
    "``_async_operations.py`` by ``tools/unasync.py``; do not edit (a test\n"
    'fails if this file drifts from its source)."""\n'
)


def generate() -> str:
    text = SOURCE.read_text(encoding="utf-8")
    body = text.split('"""', 2)[2]  # drop the source's module docstring
    for pattern, replacement in REPLACEMENTS:
        body = re.sub(pattern, replacement, body)
    sorted_imports = _ruff(["check", "--fix", "--quiet", "--select", "I", "--exit-zero"], HEADER + body)
    return _ruff(["format"], sorted_imports)


def _ruff(args: list[str], text: str) -> str:
    command = [sys.executable, "-m", "ruff", *args, "--stdin-filename", str(TARGET), "-"]
    return subprocess.run(command, input=text, capture_output=True, text=True, check=True, cwd=ROOT).stdout


def main(argv: list[str]) -> int:
    generated = generate()
    if "--check" in argv:
        if TARGET.read_text(encoding="utf-8") != generated:
            print(f"{TARGET} is out of date: run python tools/unasync.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(generated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
