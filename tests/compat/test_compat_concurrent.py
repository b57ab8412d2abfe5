"""Our processes and SimpleBroker's on one file at once.

Concurrent writers and concurrent consumers,
plus concurrent creation of a new file and producers/consumers of both
programs running together.
"""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest

from sansio_broker.adapters.blocking import Broker
from tests.compat.compat_helpers import (
    assert_file_healthy,
    master,
    parse_t,
    run_workers,
    sb,
    sb_json,
    table_info,
    worker_command,
)
from tests.support.contract import V6_TABLE_INFO
from tests.support.rawdb import meta, query, rows

WRITERS_PER_SIDE = 4
MESSAGES_PER_WRITER = 300
MESSAGES_TO_CONSUME = 1000
CONSUMERS_PER_SIDE = 3


def assert_no_warnings(label: str, stderr: str) -> None:
    assert "RuntimeWarning" not in stderr, f"{label}: {stderr}"
    assert "Warning" not in stderr and "Traceback" not in stderr, f"{label}: {stderr}"


def assert_ascending(label: str, ids: list[int]) -> None:
    assert all(a < b for a, b in pairwise(ids)), f"{label}: IDs not strictly ascending"


def writer_role(tag: str) -> str:
    return "ours-writer" if tag.startswith("ours") else "sb-writer"


# Writers that run alongside readers: ``ours1`` uses write_many, the others write one by one.
WRITER_TAGS = ["ours0", "sb0", "ours1", "sb1"]


def writers_with_markers(db: Path, tmp_path: Path, per_writer: int) -> tuple[Path, list[list[str]]]:
    """Create the file (v6, ours), then one writer command per tag of :data:`WRITER_TAGS`.

    Each writer leaves a marker in the returned directory once all its writes
    have committed, so readers know when the queue is empty for good.
    """
    done = tmp_path / "done"
    done.mkdir()
    with Broker(db, config={}):
        pass
    writers = [
        worker_command(
            writer_role(tag),
            db,
            "q",
            tag=tag,
            count=per_writer,
            mode="many" if tag == "ours1" else "single",
            done_dir=done,
        )
        for tag in WRITER_TAGS
    ]
    return done, writers


# --------------------------------------------------------------------- case 5
@pytest.mark.slow
@pytest.mark.parametrize("our_mode", ["single", "many"])
def test_case5_concurrent_writers(db: Path, our_mode: str) -> None:
    with Broker(db, config={}):  # the file exists (v6, ours) before anyone writes
        pass
    # Interleaved, so neither side is released first.
    tags = [tag for k in range(WRITERS_PER_SIDE) for tag in (f"ours{k}", f"sb{k}")]
    commands = [
        # A chunk of 10 takes one transaction: pause between chunks so the sides overlap.
        worker_command(
            "ours-writer",
            db,
            "q",
            tag=tag,
            count=MESSAGES_PER_WRITER,
            mode=our_mode,
            pause=0.005 * (our_mode == "many"),
        )
        if tag.startswith("ours")
        else worker_command("sb-writer", db, "q", tag=tag, count=MESSAGES_PER_WRITER)
        for tag in tags
    ]

    results = run_workers(commands, db.parent)

    total = WRITERS_PER_SIDE * 2 * MESSAGES_PER_WRITER
    stored = {body: ts for _, body, ts, _ in rows(db)}
    assert len(stored) == total
    assert len(set(stored.values())) == total
    all_returned: list[int] = []
    for tag, (written, stderr) in zip(tags, results, strict=True):
        assert_no_warnings(tag, stderr)
        assert [body for body, _ in written] == [f"{tag}-{i}" for i in range(MESSAGES_PER_WRITER)]
        ids = [ident for _, ident in written]
        assert_ascending(tag, ids)
        assert ids == [stored[body] for body, _ in written], f"{tag}: returned IDs differ from stored ones"
        all_returned.extend(ids)
    assert len(set(all_returned)) == total
    (newest,) = query(db, "SELECT MAX(ts) FROM messages")[0]
    assert meta(db)["last_ts"] == newest

    # Both programs list the same FIFO order.
    listed = parse_t(sb(db, "peek", "q", "--all", "-t").stdout)
    assert listed == [(ts, body) for _, body, ts, _ in rows(db)]
    with Broker(db, config={}) as broker:
        assert listed == [(m.id, m.body) for m in broker.stream("q", peek=True)]
    ours_ids = [ts for ts, body in listed if body.startswith("ours")]
    sb_ids = [ts for ts, body in listed if body.startswith("sb")]
    assert max(ours_ids[0], sb_ids[0]) < min(ours_ids[-1], sb_ids[-1]), "the two sides never overlapped"
    assert_file_healthy(db)


# --------------------------------------------------------------------- case 6
@pytest.mark.slow
@pytest.mark.parametrize(
    ("our_mode", "sb_mode", "auto_vacuum"),
    [
        ("claim", "read", False),
        ("claim", "read", True),
        ("claim_many", "read_many", True),
        ("stream_batch", "read", True),
    ],
)
def test_case6_concurrent_consumers(db: Path, our_mode: str, sb_mode: str, auto_vacuum: bool) -> None:
    with Broker(db, config={}) as broker:
        ids = broker.write_many("q", [f"m{i}" for i in range(MESSAGES_TO_CONSUME)])
    roles = ["ours-consumer", "sb-consumer"] * CONSUMERS_PER_SIDE
    # A short pause after each take, as work on the message, lets both sides in.
    commands = [
        worker_command(
            role, db, "q", mode=our_mode if role.startswith("ours") else sb_mode, pause=0.001, auto_vacuum=auto_vacuum
        )
        for role in roles
    ]

    results = run_workers(commands, db.parent)

    received: list[tuple[str, int]] = []
    per_side = Counter[str]()
    for role, (got, stderr) in zip(roles, results, strict=True):
        assert_no_warnings(role, stderr)
        assert_ascending(role, [ident for _, ident in got])
        received.extend((body, ident) for body, ident in got)
        per_side[role] += len(got)
    counts = Counter(body for body, _ in received)
    assert not [body for body, n in counts.items() if n > 1], f"delivered twice ({per_side})"
    assert sorted(received, key=lambda m: m[1]) == [(f"m{i}", ids[i]) for i in range(MESSAGES_TO_CONSUME)]
    if our_mode != "stream_batch":
        # (A batch stream holds the write lock from batch to batch, by design:
        # SimpleBroker's consumers may well get nothing while it runs.)
        assert per_side["ours-consumer"] > 0 and per_side["sb-consumer"] > 0, per_side

    # Auto-vacuum (ours or SimpleBroker's) may have removed claimed rows;
    # whatever is left must be claimed, and nothing may be pending.
    left = rows(db)
    assert all(claimed == 1 for *_, claimed in left)
    if auto_vacuum:
        assert {ts for _, _, ts, _ in left} <= set(ids)
    else:
        assert [(body, ts) for _, body, ts, _ in left] == [(f"m{i}", ids[i]) for i in range(MESSAGES_TO_CONSUME)]
    status = sb_json(db, "--status", "--json")
    assert status["total_messages"] == len(left)
    assert int(status["last_timestamp"]) == meta(db)["last_ts"] >= max(ids)
    assert_file_healthy(db)


# ------------------------------------------------- concurrent file creation
@pytest.mark.slow
@pytest.mark.parametrize("round_", range(3))
def test_both_create_the_same_new_file_at_once(tmp_path: Path, round_: int) -> None:
    """Three of ours and three SimpleBroker processes open a file that does not exist yet."""
    db = tmp_path / "fresh.db"
    tags = [tag for k in range(3) for tag in (f"sb{k}", f"ours{k}")]
    commands = [worker_command(writer_role(tag), db, "q", tag=tag, count=20) for tag in tags]
    # Each worker opens the file before it reports ready, so the opens race.
    results = run_workers(commands, tmp_path)

    for tag, (written, stderr) in zip(tags, results, strict=True):
        assert_no_warnings(tag, stderr)
        assert_ascending(tag, [ident for _, ident in written])
    assert len(rows(db)) == 6 * 20
    assert table_info(db) == V6_TABLE_INFO
    assert [name for _, name, _ in master(db)] == [
        "messages",
        "idx_messages_queue_ts",
        "idx_messages_pending_queue_ts",
        "meta",
        "sqlite_autoindex_meta_1",
        "queue_aliases",
        "sqlite_autoindex_queue_aliases_1",
        "idx_queue_aliases_target",
    ]
    assert query(db, "PRAGMA auto_vacuum") == [(2,)]
    assert {k: v for k, v in meta(db).items() if k in ("magic", "schema_version", "alias_version")} == {
        "magic": "simplebroker-v1",
        "schema_version": 6,
        "alias_version": 0,
    }
    assert_file_healthy(db)


# ------------------------------------------ producers and consumers, mixed
@pytest.mark.slow
def test_mixed_producers_and_consumers(tmp_path: Path, db: Path) -> None:
    """2+2 writers and 2+2 claimers of both programs, all at once, until everything is consumed."""
    per_writer = 300
    done, writers = writers_with_markers(db, tmp_path, per_writer)
    claimer_roles = [
        ("ours-claimer", "claim"),
        ("sb-claimer", "read"),
        ("ours-claimer", "stream_batch"),
        ("sb-claimer", "read_many"),
    ]
    claimers = [
        worker_command(role, db, "q", mode=mode, done_dir=done, writers=len(WRITER_TAGS))
        for role, mode in claimer_roles
    ]
    commands = [cmd for pair in zip(claimers, writers, strict=True) for cmd in pair]

    results = run_workers(commands, tmp_path)

    for cmd, (_, stderr) in zip(commands, results, strict=True):
        assert_no_warnings(cmd[4], stderr)
    written = {body: ident for got, _ in results[1::2] for body, ident in got}
    assert len(written) == len(WRITER_TAGS) * per_writer
    assert len(set(written.values())) == len(written)
    for tag, (got, _) in zip(WRITER_TAGS, results[1::2], strict=True):
        assert_ascending(tag, [ident for _, ident in got])
    received = [(body, ident) for got, _ in results[0::2] for body, ident in got]
    counts = Counter(body for body, _ in received)
    assert not [body for body, n in counts.items() if n > 1], "delivered twice"
    assert sorted(received) == sorted(written.items()), "lost or altered messages"
    for (role, mode), (got, _) in zip(claimer_roles, results[0::2], strict=True):
        assert_ascending(f"{role}/{mode}", [ident for _, ident in got])
    assert query(db, "SELECT COUNT(*) FROM messages WHERE claimed = 0") == [(0,)]
    assert meta(db)["last_ts"] >= max(written.values())
    assert_file_healthy(db)


# ------------------------------------------------------ checkpoint readers
@pytest.mark.slow
def test_checkpoint_readers_never_skip_a_message(tmp_path: Path, db: Path) -> None:
    """Readers that peek ``after=<highest ID seen>`` (as watchers do) miss nothing:
    an ID becomes visible only with its row, and in ID order."""
    per_writer = 250
    done, writers = writers_with_markers(db, tmp_path, per_writer)
    readers = [
        worker_command(role, db, "q", done_dir=done, writers=len(WRITER_TAGS))
        for role in ("ours-checkpoint", "sb-checkpoint")
    ]

    results = run_workers([*readers, *writers], tmp_path)

    written = sorted((ident, body) for got, _ in results[2:] for body, ident in got)
    assert len(written) == len(WRITER_TAGS) * per_writer
    for role, (seen, stderr) in zip(("ours-checkpoint", "sb-checkpoint"), results[:2], strict=True):
        assert_no_warnings(role, stderr)
        assert [(ident, body) for body, ident in seen] == written, f"{role} skipped or repeated messages"
    assert_file_healthy(db)
