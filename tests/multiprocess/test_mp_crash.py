"""Processes killed with SIGKILL: what they committed stays, what they did not
is delivered again, and the lock they held is free for everyone else."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from sansio_broker.adapters.blocking import Broker
from tests.multiprocess.mp_helpers import TIMEOUT, run_workers, start_worker, worker_command
from tests.support.rawdb import query
from tests.support.workers import clean_env

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")


def kill(proc: subprocess.Popen[str]) -> list[str]:
    """SIGKILL, then everything it had printed."""
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGKILL
    return out.splitlines()


@pytest.mark.slow
def test_killed_batch_holder_is_redelivered_to_the_others(tmp_path: Path) -> None:
    db = tmp_path / "broker.db"
    done = tmp_path / "done"
    done.mkdir()
    with Broker(db, config={}) as broker:
        ids = broker.write_many("q", [f"m{i}" for i in range(600)])

    holder = start_worker(worker_command("holder", db, "q", 50, 10), tmp_path)
    try:
        lines = [holder.stdout.readline().strip() for _ in range(11)]  # type: ignore[union-attr]
        assert lines[-1] == "holding"
        # The holder has the write lock: its batch is claimed but not committed.
        assert query(db, "SELECT COUNT(*) FROM messages WHERE claimed = 1") == [(0,)]
    finally:
        lines += kill(holder)
    seen_by_holder = [tuple(json.loads(line)) for line in lines if line.startswith("[")]
    assert len(seen_by_holder) == 10

    # The writers are "done" already: claimers drain the queue and stop.
    claimers = [worker_command("claimer", db, "q", done, 0, mode) for mode in ("claim", "stream_batch", "claim")]
    results = run_workers(claimers, tmp_path, clean_env())

    received = [tuple(m) for r, _ in results for m in r]
    assert Counter(received).most_common(1)[0][1] == 1, "delivered twice after the crash"
    assert sorted(received, key=lambda m: m[1]) == [(f"m{i}", ids[i]) for i in range(600)]
    assert set(seen_by_holder) <= set(received), "the killed holder's batch was not delivered again"
    assert query(db, "PRAGMA integrity_check") == [("ok",)]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["single", "many"])
def test_killed_writers_lose_nothing_they_returned(tmp_path: Path, mode: str) -> None:
    db = tmp_path / "broker.db"
    with Broker(db, config={}):
        pass
    writers = [start_worker(worker_command("printer", db, "q", f"w{k}", 100_000, mode), tmp_path) for k in range(3)]
    printed: list[list[str]] = [[] for _ in writers]
    readers = [
        threading.Thread(target=lambda p=proc, out=out: out.extend(p.stdout), daemon=True)  # type: ignore[misc]
        for proc, out in zip(writers, printed, strict=True)
    ]
    for reader in readers:
        reader.start()
    try:
        # Kill them mid-stream, once each has returned a few IDs (SQLite's busy
        # waits are not fair, so one writer may wait a while for its first turn).
        deadline = time.monotonic() + 30
        while min(len(out) for out in printed) < 30 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        for proc in writers:
            proc.send_signal(signal.SIGKILL)
        for proc, reader in zip(writers, readers, strict=True):
            proc.wait(timeout=TIMEOUT)
            reader.join(timeout=TIMEOUT)
            assert proc.returncode == -signal.SIGKILL
    outputs = [[line.strip() for line in out] for out in printed]

    stored = dict(query(db, "SELECT body, ts FROM messages"))
    for k, lines in enumerate(outputs):
        returned = [tuple(json.loads(line)) for line in lines if line.startswith("[")]
        assert len(returned) >= 30, f"writer {k} returned only {len(returned)} IDs in 30 s"
        for body, ident in returned:
            assert stored.get(body) == ident, f"{body} was returned as {ident} but is not stored so"
        # At most the transaction in flight when it died committed without being printed.
        mine = sorted(ident for body, ident in stored.items() if body.startswith(f"w{k}-"))
        assert mine[: len(returned)] == [ident for _, ident in returned]
        assert len(mine) - len(returned) <= (25 if mode == "many" else 1)
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    (last_ts,) = query(db, "SELECT value FROM meta WHERE key = 'last_ts'")[0]
    assert last_ts >= max(stored.values())

    # The file is fully usable afterwards.
    with Broker(db, config={}) as broker:
        after = broker.write("q", "after")
        assert after > max(stored.values())
        assert len(broker.claim_all("q")) == len(stored) + 1
