"""Nothing PostgreSQL-related is imported for a SQLite target, and SQLite works without psycopg.

The issue's promise for the ``[postgres]`` extra: psycopg, psycopg_pool and
our PostgreSQL modules load only when a ``postgresql://`` target is opened.
Each check runs in a fresh interpreter (another test may have imported
psycopg in this one): every adapter and the command line open a SQLite file,
write and read, and then the PostgreSQL modules must be absent; and, with
psycopg made unimportable, the same must still work.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.workers import clean_env

POSTGRES_MODULES = (
    "psycopg",
    "psycopg_pool",
    "psycopg_binary",
    "simplebroker_pg",
    "sansio_broker.postgres",
    "sansio_broker.adapters._pgsync",
    "sansio_broker.adapters._pglisten",
)

PROGRAM = """
import asyncio, contextlib, io, sys
BLOCK = {block!r}
if BLOCK:  # as if the [postgres] extra were not installed
    for name in ("psycopg", "psycopg_pool", "psycopg_binary", "simplebroker_pg"):
        sys.modules[name] = None
path = sys.argv[1]

from sansio_broker.adapters.blocking import Broker
with Broker(path + "-blocking.db") as b:
    b.write("q", "a")
    assert b.read("q") == ["a"]

from sansio_broker.adapters.asyncio import async_broker
async def with_asyncio():
    async with async_broker(path + "-asyncio.db", pool_size=2) as b:
        await b.write("q", "a")
        assert (await b.claim("q")).body == "a"
asyncio.run(with_asyncio())

try:
    import trio
except ImportError:
    trio = None
if trio is not None:
    from sansio_broker.adapters.trio import trio_broker
    async def with_trio():
        async with trio_broker(path + "-trio.db", pool_size=2) as b:
            await b.write("q", "a")
            assert (await b.claim("q")).body == "a"
    trio.run(with_trio)

from sansio_broker.adapters.cli import main
for argv in (["-f", path + "-cli.db", "write", "q", "a"], ["-f", path + "-cli.db", "read", "q"]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as exit:
            code = exit.code
    assert code in (0, None), (argv, code, out.getvalue())
assert out.getvalue().strip() == "a", out.getvalue()

loaded = sorted(m for m in {modules!r} if sys.modules.get(m) is not None)
assert not loaded, f"imported for SQLite targets: {{loaded}}"
print("ok")
"""


@pytest.mark.parametrize("block", [False, True], ids=["installed", "psycopg-missing"])
def test_sqlite_targets_import_nothing_of_postgres(tmp_path: Path, block: bool) -> None:
    code = PROGRAM.format(block=block, modules=POSTGRES_MODULES)
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "x")],
        capture_output=True,
        text=True,
        env=clean_env({}),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
