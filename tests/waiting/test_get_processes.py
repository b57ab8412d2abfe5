"""Waiters woken by other processes' writes, and exactly-once delivery to waiting consumers across processes.

Writers in other processes: our blocking adapter (``tests/multiprocess``'s
worker), SimpleBroker 8.7.2's ``Queue`` (``tests/interop_asyncio``'s worker)
and the ``broker`` CLI. The waiter in this process runs on every adapter
(the contract ``broker`` facade).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from sansio_broker.adapters.blocking import Broker
from tests.compat.compat_helpers import BROKER_CLI
from tests.contract.contract_support import Facade
from tests.multiprocess.mp_helpers import worker_command
from tests.support import workers
from tests.support.rawdb import query
from tests.waiting.waiting_support import outcome, start, still_waiting

HERE = Path(__file__).resolve().parent
CONSUMER = HERE / "waiting_worker.py"
SB_WORKER = HERE.parent / "interop_asyncio" / "interop_asyncio_sb_worker.py"
TIMEOUT = 60.0


def sb_writer(db: Path, queue: str, tag: str, count: int) -> list[str]:
    """A SimpleBroker ``Queue`` writer process: ``<tag>-<i>`` for i < count."""
    options = json.dumps({"tag": tag, "count": count})
    return [sys.executable, str(SB_WORKER), "writer", str(db), queue, options]


def ours_writer(db: Path, queue: str, tag: str, count: int, mode: str, done: Path) -> list[str]:
    """Our blocking adapter's writer process (``tests/multiprocess/mp_worker.py``)."""
    return worker_command("writer", db, queue, tag, count, mode, done)


def cli(db: Path, *args: str) -> None:
    """``broker -d DIR -f NAME <args>``, as a SimpleBroker user types it."""
    proc = subprocess.run(
        [*BROKER_CLI, "-d", str(db.parent), "-f", db.name, *args],
        capture_output=True,
        text=True,
        env=workers.clean_env(),
        cwd=db.parent,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, f"broker {' '.join(args)}: exit {proc.returncode}\n{proc.stderr}"


def run_one(cmd: list[str], cwd: Path) -> Any:
    ((result, stderr),) = workers.run_workers([cmd], cwd, workers.clean_env(), TIMEOUT)
    assert stderr == "", stderr
    return result


# ------------------------------------------------------------------- wake-ups
@pytest.mark.parametrize("writer", ["ours", "simplebroker", "cli"])
def test_a_waiter_is_woken_by_a_write_from_another_process(
    broker: Facade, db_path: Path, tmp_path: Path, writer: str
) -> None:
    q = broker.queue("q")
    waiting = start(broker, lambda: q.target.get_message())
    assert still_waiting(broker, waiting)
    if writer == "ours":
        ((body, message_id),) = run_one(ours_writer(db_path, "q", "ours", 1, "single", tmp_path), tmp_path)
    elif writer == "simplebroker":
        ((body, message_id),) = run_one(sb_writer(db_path, "q", "sb", 1), tmp_path)["wrote"]
    else:
        cli(db_path, "write", "q", "from the cli")
        body, message_id = "from the cli", None
    got = outcome(waiting)
    assert got.body == body
    assert message_id is None or got.id == message_id
    assert q.size() == 0


def test_broker_get_is_woken_by_the_cli(broker: Facade, db_path: Path) -> None:
    waiting = start(broker, lambda: broker.target.get(["high", "low"]))
    assert still_waiting(broker, waiting)
    cli(db_path, "write", "low", "from the cli")
    assert outcome(waiting) == ("low", "from the cli")


# --------------------------------------------------------------- exactly once
CONSUMER_PROCESSES = 4
THREADS_EACH = 25  # 100 waiting consumers
PER_PRODUCER = 200
CLI_WRITES = 5


@pytest.mark.slow
def test_waiting_consumers_in_several_processes_get_each_message_once(tmp_path: Path) -> None:
    db = tmp_path / "broker.db"
    done = tmp_path / "done"
    done.mkdir()
    with Broker(db, config={}):  # the file exists before the race starts
        pass
    consumers = [
        [sys.executable, "-W", "always", str(CONSUMER), "consumer", str(db), "q", str(THREADS_EACH)]
        for _ in range(CONSUMER_PROCESSES)
    ]
    producers = [
        ours_writer(db, "q", "w0", PER_PRODUCER, "single", done),
        ours_writer(db, "q", "w1", PER_PRODUCER, "many", done),
        ours_writer(db, "q", "w2", PER_PRODUCER, "single", done),
        sb_writer(db, "q", "sb", PER_PRODUCER),
    ]
    env = workers.clean_env({"BROKER_AUTO_VACUUM": "0"})
    procs = workers.start_workers([*consumers, *producers], tmp_path, env, TIMEOUT)
    cli_done: list[str] = []
    cli_errors: list[BaseException] = []

    def cli_producer() -> None:
        try:
            for i in range(CLI_WRITES):
                cli(db, "write", "q", f"cli-{i}")
                cli_done.append(f"cli-{i}")
        except BaseException as exc:
            cli_errors.append(exc)

    cli_thread = threading.Thread(target=cli_producer)
    cli_thread.start()
    try:
        produced = workers.finish_workers(procs[CONSUMER_PROCESSES:], TIMEOUT)
        cli_thread.join(TIMEOUT)
        assert not cli_thread.is_alive() and not cli_errors, cli_errors
        # Every producer has committed: one stop per consumer thread, behind every message.
        with Broker(db, config={"BROKER_AUTO_VACUUM": "0"}) as broker:
            broker.write_many("q", ["stop"] * (CONSUMER_PROCESSES * THREADS_EACH))
        consumed = workers.finish_workers(procs[:CONSUMER_PROCESSES], TIMEOUT)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    for (_, stderr), cmd in zip([*consumed, *produced], [*consumers, *producers], strict=True):
        assert stderr == "", f"{cmd[2:]}: {stderr}"
    written = [tuple(pair) for result, _ in produced[:3] for pair in result]
    written += [tuple(pair) for pair in produced[3][0]["wrote"]]
    assert len(written) == 4 * PER_PRODUCER
    per_thread = [[tuple(pair) for pair in thread] for result, _ in consumed for thread in result]
    assert len(per_thread) == CONSUMER_PROCESSES * THREADS_EACH
    received = [pair for thread in per_thread for pair in thread]

    counts = Counter(body for body, _ in received)
    twice = sorted(body for body, n in counts.items() if n > 1)
    assert not twice, f"delivered more than once: {twice[:10]}"
    expected_bodies = {body for body, _ in written} | set(cli_done)
    lost = expected_bodies - set(counts)
    assert not lost, f"never delivered: {sorted(lost)[:10]}"
    assert set(counts) == expected_bodies, "a body nobody wrote was delivered"
    received_ids = dict(received)
    assert all(received_ids[body] == ident for body, ident in written), "a message came back with another ID"
    # Each consumer thread received its messages oldest first.
    for thread in per_thread:
        assert all(a < b for (_, a), (_, b) in pairwise(thread)), "a waiting consumer got messages out of order"
    # Nothing left pending, and the work was spread over the processes.
    assert query(db, "SELECT COUNT(*) FROM messages WHERE queue = 'q' AND claimed = 0") == [(0,)]
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    per_process = [sum(len(t) for t in result) for result, _ in consumed]
    assert sum(per_process) == len(expected_bodies)
