"""What an installed ``sansio_broker`` gives a user: the wheel's contents, and
types that ``mypy --strict`` sees from a program in another directory (with
the editable install of ``pip install -e '.[dev]'``, which these tests run in)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def test_wheel_has_no_top_level_adapters_package(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("sansio_broker-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"sansio_broker"}
    assert "sansio_broker/adapters/blocking.py" in names
    assert "sansio_broker/adapters/_sync.py" in names
    assert "sansio_broker/py.typed" in names


# Type-checked only, never run. ``assert_type`` fails if the package were seen
# as ``Any`` (found, but not as a typed package).
API_PROGRAM = """
import asyncio
from typing import assert_type

import trio

from sansio_broker import Config, Message
from sansio_broker.adapters.asyncio import AsyncBroker, AsyncQueue, async_broker
from sansio_broker.adapters.blocking import Broker, Queue
from sansio_broker.adapters.trio import TrioBroker, TrioQueue, trio_broker


def blocking(path: str) -> list[str]:
    with Broker(path, config=Config()) as broker:
        jobs = Queue("jobs", broker)
        assert_type(jobs.write("a"), int)
        assert_type(broker.claim("jobs"), Message | None)
        assert_type(jobs.read(), str | None)
        with broker.transaction():
            job = jobs.claim()
            if job is not None:
                Queue("done", broker).write(job.body)
        return [message.body for message in broker.stream("jobs", peek=True)]


async def with_asyncio(path: str) -> list[str]:
    async with AsyncBroker(path, pool_size=2, config={"BROKER_SYNC_MODE": "NORMAL"}) as broker:
        assert_type(await broker.write("jobs", "a"), int)
        assert_type(await broker.claim("jobs"), Message | None)
        async with broker.transaction():
            await AsyncQueue("done", broker).write("x")
    async with async_broker(path) as broker:
        return [body async for body in AsyncQueue("jobs", broker).stream()]


async def with_trio(path: str) -> list[Message]:
    async with TrioBroker(path) as broker:
        assert_type(await broker.write_many("jobs", ["a", "b"]), list[int])
    async with trio_broker(path, pool_size=2) as broker:
        return [message async for message in TrioQueue("jobs", broker).messages()]


print(blocking("a.db"), asyncio.run(with_asyncio("b.db")), trio.run(with_trio, "c.db"))
"""

# Every way the docs close a stream early: ``with`` / ``close()`` /
# ``contextlib.closing`` for the blocking adapter, ``async with`` /
# ``aclose()`` / ``contextlib.aclosing`` for asyncio and trio.
STREAMS_PROGRAM = """
import contextlib

from sansio_broker.adapters.asyncio import AsyncBroker, AsyncQueue
from sansio_broker.adapters.blocking import Broker, Queue
from sansio_broker.adapters.trio import TrioBroker, TrioQueue


def blocking(broker: Broker) -> list[str]:
    with broker.stream("jobs", commit_interval=50) as messages:
        bodies = [message.body for message in messages]
    stream = Queue("jobs", broker).stream()
    try:
        bodies += [body for body in stream]
    finally:
        stream.close()
    with contextlib.closing(Queue("jobs", broker).messages()) as more:
        bodies += [message.body for message in more]
    return bodies


async def with_asyncio(broker: AsyncBroker) -> list[str]:
    async with broker.stream("jobs", commit_interval=50) as messages:
        bodies = [message.body async for message in messages]
    stream = AsyncQueue("jobs", broker).stream()
    try:
        bodies += [body async for body in stream]
    finally:
        await stream.aclose()
    async with contextlib.aclosing(AsyncQueue("jobs", broker).messages()) as more:
        bodies += [message.body async for message in more]
    return bodies


async def with_trio(broker: TrioBroker) -> list[str]:
    async with broker.stream("jobs", commit_interval=50) as messages:
        bodies = [message.body async for message in messages]
    stream = TrioQueue("jobs", broker).stream()
    try:
        bodies += [body async for body in stream]
    finally:
        await stream.aclose()
    async with contextlib.aclosing(TrioQueue("jobs", broker).messages()) as more:
        bodies += [message.body async for message in more]
    return bodies
"""


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the module's runs: only the first checks the package cold."""
    return tmp_path_factory.mktemp("mypy_cache")


def mypy_strict(program: str, directory: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    """``mypy --strict`` on ``program``, as a user runs it: from a directory
    outside the checkout, so the package is found only as installed."""
    (directory / "app.py").write_text(textwrap.dedent(program))
    env = {key: value for key, value in os.environ.items() if key not in ("MYPYPATH", "PYTHONPATH")}
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--config-file=", "--cache-dir", str(cache), "app.py"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_user_program_type_checks_against_installed_package(tmp_path: Path, mypy_cache: Path) -> None:
    done = mypy_strict(API_PROGRAM, tmp_path, mypy_cache)
    assert done.returncode == 0, done.stdout + done.stderr


def test_user_program_closing_streams_type_checks(tmp_path: Path, mypy_cache: Path) -> None:
    done = mypy_strict(STREAMS_PROGRAM, tmp_path, mypy_cache)
    assert done.returncode == 0, done.stdout + done.stderr


def test_user_program_with_a_wrong_call_fails_the_check(tmp_path: Path, mypy_cache: Path) -> None:
    """The control: the check above would catch a wrong call, in every adapter."""
    wrong = """
        from sansio_broker.adapters.asyncio import AsyncBroker
        from sansio_broker.adapters.blocking import Broker
        from sansio_broker.adapters.trio import TrioBroker


        async def main(broker: Broker, aio: AsyncBroker, trio_broker: TrioBroker) -> None:
            broker.write("jobs", 1)
            await aio.write("jobs", 2)
            await trio_broker.write("jobs", 3)
    """
    done = mypy_strict(wrong, tmp_path, mypy_cache)
    assert done.returncode == 1, done.stdout + done.stderr
    errors = [line for line in done.stdout.splitlines() if ": error: " in line]
    assert len(errors) == 3, done.stdout
    for line, error in zip((8, 9, 10), errors, strict=True):
        assert error.startswith(f'app.py:{line}: error: Argument 2 to "write" of '), error
        assert 'incompatible type "int"; expected "str"' in error, error
