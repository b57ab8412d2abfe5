"""4 writer and 4 claimer processes of our blocking adapter on one file.

Every message must be delivered exactly once: none lost, none twice, IDs
unique and increasing per writer, FIFO per claimer, and the file intact.
"""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest

from sansio_broker.adapters.blocking import Broker
from tests.multiprocess.mp_helpers import run_workers, worker_command
from tests.support.rawdb import query
from tests.support.workers import clean_env

WRITER_MODES = ["single", "many", "single", "many"]
PER_WRITER = 500
CLAIMER_SETS = {
    "mixed": ["claim", "claim_many_tx", "stream", "stream_batch"],
    "claim": ["claim"] * 4,
    "transactions": ["claim_many_tx"] * 4,
    "batches": ["stream_batch"] * 4,
}


@pytest.mark.slow
@pytest.mark.parametrize("auto_vacuum", ["1", "0"], ids=["auto-vacuum", "no-vacuum"])
@pytest.mark.parametrize("claimer_set", list(CLAIMER_SETS))
def test_writers_and_claimers_exactly_once(tmp_path: Path, claimer_set: str, auto_vacuum: str) -> None:
    claimer_modes = CLAIMER_SETS[claimer_set]
    db = tmp_path / "broker.db"
    done = tmp_path / "done"
    done.mkdir()
    with Broker(db, config={}):  # create the file before the race starts
        pass
    tags = [f"w{k}" for k in range(len(WRITER_MODES))]
    writers = [
        worker_command("writer", db, "q", tag, PER_WRITER, mode, done)
        for tag, mode in zip(tags, WRITER_MODES, strict=True)
    ]
    claimers = [worker_command("claimer", db, "q", done, len(tags), mode) for mode in claimer_modes]
    # Interleave claimers and writers so neither group is released first.
    commands = [cmd for pair in zip(claimers, writers, strict=True) for cmd in pair]

    results = run_workers(commands, tmp_path, clean_env({"BROKER_AUTO_VACUUM": auto_vacuum}))

    for (_, stderr), cmd in zip(results, commands, strict=True):
        assert stderr == "", f"{cmd[4:]}: {stderr}"
    claimed_by = {f"{i}:{mode}": r for i, (mode, (r, _)) in enumerate(zip(claimer_modes, results[0::2], strict=True))}
    written_by = dict(zip(tags, (r for r, _ in results[1::2]), strict=True))

    # Writers: every body in order, IDs strictly increasing, unique everywhere.
    written: dict[str, int] = {}
    for tag, pairs in written_by.items():
        assert [body for body, _ in pairs] == [f"{tag}-{i}" for i in range(PER_WRITER)]
        ids = [ident for _, ident in pairs]
        assert all(a < b for a, b in pairwise(ids)), f"{tag}: IDs not strictly increasing"
        written.update(pairs)
    total = len(tags) * PER_WRITER
    assert len(written) == total
    assert len(set(written.values())) == total, "two writers got the same ID"

    # Claimers: together exactly the written messages, each exactly once.
    received = [(body, ident) for pairs in claimed_by.values() for body, ident in pairs]
    counts = Counter(body for body, _ in received)
    duplicated = {body: n for body, n in counts.items() if n > 1}
    assert not duplicated, f"delivered more than once: {sorted(duplicated)[:10]}"
    lost = set(written) - set(counts)
    assert not lost, f"never delivered: {sorted(lost)[:10]}"
    assert sorted(received) == sorted(written.items()), "a message came back with another ID"
    for name, pairs in claimed_by.items():
        ids = [ident for _, ident in pairs]
        assert all(a < b for a, b in pairwise(ids)), f"{name}: not in FIFO order"
    per_claimer = {mode: len(pairs) for mode, pairs in claimed_by.items()}
    assert sum(per_claimer.values()) == total, per_claimer

    # The transactional claimer's audit rows committed with its claims, and only those.
    audit = [int(body) for (body,) in query(db, "SELECT body FROM messages WHERE queue = 'audit'")]
    in_transactions = [ident for name, pairs in claimed_by.items() if name.endswith("_tx") for _, ident in pairs]
    assert sorted(audit) == sorted(in_transactions)

    # The file: intact, nothing pending, last_ts at the newest ID.
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    left = query(db, "SELECT ts, claimed FROM messages WHERE queue = 'q'")
    assert all(claimed == 1 for _, claimed in left)
    if auto_vacuum == "0":
        assert sorted(ts for ts, _ in left) == sorted(written.values())
    else:
        assert {ts for ts, _ in left} <= set(written.values())
    (last_ts,) = query(db, "SELECT value FROM meta WHERE key = 'last_ts'")[0]
    (newest,) = query(db, "SELECT MAX(ts) FROM messages")[0]
    assert newest is None or last_ts >= newest  # auto-vacuum may have emptied the table
    assert last_ts >= max(written.values())


@pytest.mark.slow
def test_pipeline_with_movers_and_a_vacuumer(tmp_path: Path) -> None:
    """writers -> q -> 2 movers -> stage -> 3 claimers, with a process vacuuming all along."""
    db = tmp_path / "broker.db"
    dirs = {name: tmp_path / name for name in ("writers", "movers", "claimers")}
    for path in dirs.values():
        path.mkdir()
    with Broker(db, config={}):
        pass
    tags = [f"w{k}" for k in range(3)]
    writers = [
        worker_command("writer", db, "q", tag, PER_WRITER, mode, dirs["writers"])
        for tag, mode in zip(tags, ["single", "many", "single"], strict=True)
    ]
    movers = [
        worker_command("mover", db, "q", "stage", dirs["writers"], len(tags), dirs["movers"], f"m{k}") for k in range(2)
    ]
    claimers = [
        worker_command("claimer", db, "stage", dirs["movers"], len(movers), mode)
        for mode in ("claim", "claim_many_tx", "stream_batch")
    ]
    vacuumer = worker_command("vacuumer", db, dirs["movers"], len(movers))
    commands = [*claimers, *movers, vacuumer, *writers]

    # The claimers mark nothing; the vacuumer stops with the movers.
    results = run_workers(commands, tmp_path, clean_env({"BROKER_AUTO_VACUUM": "0"}))

    for (_, stderr), cmd in zip(results, commands, strict=True):
        assert stderr == "", f"{cmd[4:]}: {stderr}"
    claimed = [tuple(m) for r, _ in results[:3] for m in r]
    moved = [tuple(m) for r, _ in results[3:5] for m in r]
    vacuumed = sum(n for n, _ in results[5][0])
    written = [tuple(m) for r, _ in results[6:] for m in r]
    assert len(written) == len(tags) * PER_WRITER
    assert len(set(written)) == len(written)
    assert sorted(moved) == sorted(written), "a message was moved twice or not at all"
    assert sorted(claimed) == sorted(written), "a message was claimed twice or not at all"
    for r, _ in results[:5]:
        ids = [ident for _, ident in r]
        assert all(a < b for a, b in pairwise(ids)), "moves or claims out of FIFO order"

    audit = sorted(int(body) for (body,) in query(db, "SELECT body FROM messages WHERE queue = 'audit'"))
    assert audit == sorted(ident for _, ident in results[1][0])
    assert query(db, "SELECT COUNT(*) FROM messages WHERE queue IN ('q', 'stage') AND claimed = 0") == [(0,)]
    (left,) = query(db, "SELECT COUNT(*) FROM messages WHERE queue = 'stage'")[0]
    assert left + vacuumed == len(written), "vacuum removed something that was not a claimed message"
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
