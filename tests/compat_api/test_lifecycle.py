"""Where a ``compat.Queue`` finds its file (as ``simplebroker.Queue`` does),
what it refuses, and that it leaves no file open behind it."""

from __future__ import annotations

import gc
import os
import threading
from pathlib import Path

import pytest
import simplebroker

from sansio_broker import ConfigError, InvalidInputError
from sansio_broker.adapters import compat
from sansio_broker.adapters.blocking import Broker


def their_target(queue: simplebroker.Queue) -> str:
    target = queue.db_target
    return target if isinstance(target, str) else target.target


def open_files(path: Path) -> list[str]:
    """This process's descriptors on the database (and its -wal/-shm)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(path)):
            found.append(target)
    return found


def test_default_file_is_simplebrokers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BROKER_DEFAULT_DB_NAME", "from-env.db")  # Queue() reads no environment, in either
    with compat.Queue("q") as ours:
        ours.write("x")
        assert ours.db_target == their_target(simplebroker.Queue("q")) == str(tmp_path / ".broker.db")
        assert repr(ours) == repr(simplebroker.Queue("q")) == "Queue('q')"
    assert (tmp_path / ".broker.db").exists()
    assert simplebroker.Queue("q").read() == "x"


@pytest.mark.parametrize(
    "settings",
    [
        {"BROKER_DEFAULT_DB_NAME": "named.db"},
        {"BROKER_DEFAULT_DB_NAME": "sub/named.db"},
        {"BROKER_DEFAULT_DB_LOCATION": "LOCATION"},
        {"BROKER_PROJECT_CONFIG_NAME": "project.toml"},
    ],
    ids=lambda s: next(iter(s)),
)
def test_configured_file_is_simplebrokers(
    settings: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "project.toml").write_text('version = 1\nbackend = "sqlite"\ntarget = "sub/project.db"\n')
    settings = {k: v.replace("LOCATION", str(tmp_path / "elsewhere")) for k, v in settings.items()}
    config = simplebroker.resolve_config(override=settings)
    expected = their_target(simplebroker.Queue("q", config=config))
    assert compat.Queue("q", config=config).db_target == expected  # a simplebroker.Config
    assert compat.Queue("q", config=settings).db_target == expected  # or plain BROKER_* keys
    assert expected != str(tmp_path / ".broker.db")


def test_project_file_is_found_in_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".broker.toml").write_text('version = 1\nbackend = "sqlite"\ntarget = "team.db"\n')
    assert compat.Queue("q").db_target == their_target(simplebroker.Queue("q")) == str(tmp_path / "team.db")
    (tmp_path / ".broker.toml").write_text('version = 1\nbackend = "postgres"\ntarget = "postgresql://x/y"\n')
    with pytest.raises(NotImplementedError, match="reads only SQLite project files"):
        compat.Queue("q")


def test_what_it_refuses(tmp_path: Path) -> None:
    path = str(tmp_path / "x.db")
    with pytest.raises(NotImplementedError, match="runner= is not supported"):
        compat.Queue("q", db_path=path, runner=object())
    with pytest.raises(InvalidInputError, match="needs BROKER_BACKEND_TARGET"):
        compat.Queue("q", config={"BROKER_BACKEND": "postgres"})
    with pytest.raises(NotImplementedError, match="SQLite or PostgreSQL"):
        compat.Queue("q", config={"BROKER_BACKEND": "redis"})
    with pytest.raises(ConfigError, match="BROKER_BUSY_TIMOUT"):
        compat.Queue("q", db_path=path, config={"BROKER_BUSY_TIMOUT": 5})
    queue = compat.Queue("q", db_path=path)
    for unsupported in (queue.sidecar, lambda: queue.create_activity_waiter(stop_event=threading.Event())):
        with pytest.raises(NotImplementedError):
            unsupported()
    assert not Path(path).exists()  # nothing refused here opened the file


def test_queues_of_a_file_share_one_broker_and_close_it(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    first = compat.Queue("a", db_path=str(path))
    second = compat.Queue("b", db_path=str(path), persistent=True)
    first.write("1")
    second.write("2")
    assert isinstance(first.broker, Broker) and first.broker is second.broker
    assert open_files(path)
    first.close()
    first.close()  # again: nothing
    assert second.read() == "2" and open_files(path)
    second.close()
    assert open_files(path) == []
    assert first.read() == "1"  # a closed queue opens the file again when used
    first.cleanup_connections()
    assert open_files(path) == []


def test_a_forgotten_queue_closes_its_file(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    compat.Queue("q", db_path=str(path)).write("ephemeral style")
    gc.collect()
    assert open_files(path) == []
    with compat.Queue("q", db_path=str(path)) as queue:
        generator = queue.read_generator()
        assert next(generator) == "ephemeral style"
        generator.close()
    assert open_files(path) == []


def test_threads_share_a_queue(tmp_path: Path) -> None:
    with compat.Queue("q", db_path=str(tmp_path / "x.db")) as queue:
        for n in range(200):
            queue.write(str(n))
        got: list[str] = []

        def consume() -> None:
            while (body := queue.read()) is not None:
                got.append(body)

        threads = [threading.Thread(target=consume) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(got, key=int) == [str(n) for n in range(200)]
