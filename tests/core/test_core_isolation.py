"""The core imports no I/O: checked by blocking the imports, and by reading the source."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import sansio_broker

PACKAGE_DIR = Path(sansio_broker.__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent

BLOCKED_AT_RUNTIME = (
    "sqlite3",
    "_sqlite3",
    "asyncio",
    "trio",
    "anyio",
    "aiosqlite",
    "aiosqlitepool",
    "socket",
    "threading",
)
FORBIDDEN_IMPORTS = {
    "os",
    "time",
    "threading",
    "random",
    "socket",
    "sqlite3",
    "asyncio",
    "trio",
    "anyio",
    "aiosqlite",
    "aiosqlitepool",
    "subprocess",
}


def core_files() -> list[Path]:
    """Every .py of the core, adapters (a symlink to ../adapters) excluded."""
    files = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        relative = path.relative_to(PACKAGE_DIR)
        if relative.parts[0] == "adapters":
            continue
        # The entry point of ``python -m sansio_broker`` runs the command line (an adapter), not core logic.
        if relative.parts == ("__main__.py",):
            continue
        files.append(path)
    return files


def core_modules() -> list[str]:
    names = []
    for path in core_files():
        parts = path.relative_to(PACKAGE_DIR).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(("sansio_broker", *parts)))
    return names


def test_the_scan_sees_every_core_module() -> None:
    modules = set(core_modules())
    expected = {
        "sansio_broker",
        *(
            f"sansio_broker.{m}"
            for m in (
                "bounds",
                "commands",
                "config",
                "core",
                "dialect",
                "errors",
                "postgres",
                "schema",
                "sqlite",
                "streams",
                "testing",
                "timestamps",
                "types",
                "validation",
                "watching",
            )
        ),
    }
    assert expected <= modules
    assert not any(".adapters" in m for m in modules)


SCRIPT = r"""
import sys

BLOCKED = set(sys.argv[1].split(","))
MODULES = sys.argv[2].split(",")


class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked import of {name}")
        return None


for loaded in list(sys.modules):
    if loaded.split(".")[0] in BLOCKED:
        del sys.modules[loaded]
sys.meta_path.insert(0, Blocker())

try:
    import sqlite3  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the blocker does not work")

import importlib

for name in MODULES:
    importlib.import_module(name)

from sansio_broker.driver import BrokerCore, Commit
from sansio_broker.testing import run_scripted

NOW = 1_750_000_000_000_000_000
result, commands = run_scripted(BrokerCore().session().write("q", "x"), [None, NOW, (NOW,), None, None])
assert result == NOW, result
assert commands[-1] == Commit(), commands
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not leaked, leaked
assert not any(m.startswith("sansio_broker.adapters") for m in sys.modules)
print("isolated-ok", len(MODULES))
"""


def test_core_runs_with_io_modules_blocked() -> None:
    modules = core_modules()
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, ",".join(BLOCKED_AT_RUNTIME), ",".join(modules)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == f"isolated-ok {len(modules)}"


def imported_top_level_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "__import__":
                names.add("__import__")
            if isinstance(func, ast.Attribute) and func.attr == "import_module":
                names.add("importlib.import_module")
    return names


def test_no_core_module_imports_io() -> None:
    offenders = {}
    for path in core_files():
        bad = imported_top_level_names(path) & (FORBIDDEN_IMPORTS | {"__import__", "importlib.import_module"})
        if bad:
            offenders[str(path.relative_to(PACKAGE_DIR))] = sorted(bad)
    assert offenders == {}


def test_the_scan_detects_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import os.path\nfrom time import monotonic\nfrom . import sql\n__import__('socket')\n")
    assert imported_top_level_names(sample) == {"os", "time", "__import__"}
