"""More operations across the two programs on one file:
broadcast, delete by ID, rename, aliases, keep_newest, dump/load, move_all,
explicit transactions."""

from __future__ import annotations

import json
import queue as stdlib_queue
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import simplebroker

from sansio_broker import Message
from sansio_broker.adapters.blocking import Broker
from tests.compat.compat_helpers import BROKER_CLI, SUBPROCESS_TIMEOUT, assert_file_healthy, parse_t, sb, sb_stats
from tests.support.rawdb import meta, rows
from tests.support.workers import clean_env

OpenOurs = Callable[[], Broker]


def sb_write(db: Path, queue: str, body: str, *extra: str) -> int:
    return int(sb(db, "write", queue, body, "-t", *extra).stdout.strip())


def test_broadcast_both_ways(db: Path, open_ours: OpenOurs) -> None:
    ours = open_ours()
    ours.write("a1", "x")
    sb_write(db, "a2", "y")
    ours.write("b", "z")
    ours.claim("b")  # a claimed-only queue still exists

    assert ours.broadcast("hello") == 3
    for queue in ("a1", "a2"):
        assert parse_t(sb(db, "peek", queue, "--all", "-t").stdout)[-1][1] == "hello"
    assert sb_stats(db, "b") == (1, 1, 2)

    sb(db, "broadcast", "again", "-p", "a*")
    assert [m.body for m in ours.peek_many("a1", 10)] == ["x", "hello", "again"]
    assert [m.body for m in ours.peek_many("b", 10)] == ["hello"]
    assert ours.broadcast("nobody", pattern="zzz*") == 0
    ids = [ts for _, _, ts, _ in rows(db)]
    assert len(set(ids)) == len(ids)
    assert_file_healthy(db)


def test_delete_by_id_both_ways(db: Path, open_ours: OpenOurs) -> None:
    ids = [sb_write(db, "q", f"m{i}") for i in range(3)]
    ours = open_ours()

    assert ours.delete_messages("q", [ids[1], f"{ids[2]:019d}", 12345]) == 2
    assert parse_t(sb(db, "peek", "q", "--all", "-t").stdout) == [(ids[0], "m0")]

    mine = ours.write_many("q", ["n0", "n1"])
    sb(db, "delete", "q", "-m", f"{mine[0]:019d}")
    assert ours.peek_many("q", 10) == [Message("m0", ids[0]), Message("n1", mine[1])]
    sb(db, "delete", "q")
    assert not ours.queue_exists("q")
    assert ours.list_queues() == []
    assert_file_healthy(db)


def test_sb_renames_our_queue(db: Path, open_ours: OpenOurs) -> None:
    ours = open_ours()
    ids = ours.write_many("old", ["a", "b", "c"])
    ours.claim("old")

    sb(db, "rename", "old", "new")

    assert not ours.queue_exists("old")
    assert ours.peek_many("new", 10, include_claimed=True) == [Message(b, i) for b, i in zip("abc", ids, strict=True)]
    assert ours.claim("new") == Message("b", ids[1])
    stats = ours.queue_stats("new")
    assert (stats.pending, stats.claimed, stats.total) == (1, 2, 3)
    assert_file_healthy(db)


def test_sb_alias_writes_reach_our_reader(db: Path, open_ours: OpenOurs) -> None:
    ours = open_ours()
    ours.write("tasks", "first")
    sb(db, "alias", "add", "work", "tasks")
    ident = sb_write(db, "@work", "via-alias")

    assert [m.body for m in ours.claim_many("tasks", 10)] == ["first", "via-alias"]
    assert ours.peek("tasks", message_id=ident, include_claimed=True) == Message("via-alias", ident)
    assert meta(db)["alias_version"] > 0
    assert "work" in sb(db, "alias", "list").stdout
    assert_file_healthy(db)


def test_sb_keep_newest_on_our_queue(db: Path, open_ours: OpenOurs) -> None:
    ours = open_ours()
    ids = ours.write_many("q", [f"m{i}" for i in range(4)])

    newest = sb_write(db, "q", "m4", "--keep-newest", "2")

    assert ours.peek_many("q", 10) == [Message("m3", ids[3]), Message("m4", newest)]
    stats = ours.queue_stats("q")
    assert (stats.pending, stats.total) == (2, 5)
    assert_file_healthy(db)


def test_dump_of_our_file_loads_and_we_continue(tmp_path: Path, db: Path, open_ours: OpenOurs) -> None:
    ours = open_ours()
    ids = ours.write_many("q", ["a", "b", "c"])
    ours.claim("q")
    other = ours.write("r", "line1\nline2\x00end")

    dump = sb(db, "dump").stdout
    lines = [json.loads(line) for line in dump.splitlines()]
    assert lines[0]["type"] == "header"
    assert int(lines[0]["last_ts"]) == meta(db)["last_ts"]
    assert [(m["queue"], m["body"], int(m["id"])) for m in lines[1:]] == [
        ("q", "b", ids[1]),
        ("q", "c", ids[2]),
        ("r", "line1\nline2\x00end", other),
    ]

    copy = tmp_path / "copy.db"
    sb(copy, "load", stdin=dump)
    with Broker(copy, config={}) as loaded:
        assert loaded.peek_many("q", 10) == [Message("b", ids[1]), Message("c", ids[2])]
        assert loaded.claim("r") == Message("line1\nline2\x00end", other)
        after = loaded.write("q", "d")
        assert after > other
    assert meta(copy)["last_ts"] >= after
    assert_file_healthy(copy)
    assert_file_healthy(db)


def test_move_all_and_sb_move_all(db: Path, open_ours: OpenOurs) -> None:
    ours = open_ours()
    ids = ours.write_many("q", [f"m{i}" for i in range(250)])
    ours.claim("q")

    assert ours.move_all("q", "d") == 249
    assert sb_stats(db, "d") == (249, 0, 249)
    assert sb_stats(db, "q") == (0, 1, 1)

    moved = parse_t(sb(db, "move", "d", "e", "--all", "-t").stdout)
    assert moved == [(ids[i], f"m{i}") for i in range(1, 250)]
    assert ours.peek_many("e", 1000) == [Message(f"m{i}", ids[i]) for i in range(1, 250)]
    assert_file_healthy(db)


def test_our_transaction_is_atomic_for_sb(db: Path, open_ours: OpenOurs) -> None:
    """Claim-then-write inside our transaction: SimpleBroker sees all of it or none."""
    ident = sb_write(db, "in", "job")
    ours = open_ours()
    try:
        with ours.transaction():
            assert ours.claim("in") == Message("job", ident)
            ours.write("out", "result")
            raise RuntimeError("abort")
    except RuntimeError:
        pass
    assert sb_stats(db, "in") == (1, 0, 1)
    sb(db, "peek", "out", expect=2)

    with ours.transaction():
        assert ours.claim("in") == Message("job", ident)
        out = ours.write("out", "result")
    assert sb_stats(db, "in") == (0, 1, 1)
    assert parse_t(sb(db, "read", "out", "-t").stdout) == [(out, "result")]
    assert_file_healthy(db)


def test_sb_library_and_ours_share_one_process(db: Path, open_ours: OpenOurs) -> None:
    """Both libraries in one process, each with its own connections, taking turns."""
    ours = open_ours()
    with simplebroker.open_broker(str(db)) as theirs:
        got = []
        for i in range(50):
            ours.write("q", f"o{i}")
            theirs.write("q", f"s{i}")
            if i % 3 == 0:
                claimed = theirs.claim_one("q", with_timestamps=True)
                assert claimed is not None
                got.append(tuple(claimed))
            else:
                mine = ours.claim("q")
                assert mine is not None
                got.append((mine.body, mine.id))
        left = ours.claim_all("q")
    bodies = [body for body, _ in got] + [m.body for m in left]
    assert sorted(bodies) == sorted([f"o{i}" for i in range(50)] + [f"s{i}" for i in range(50)])
    ids = [ident for _, ident in got] + [m.id for m in left]
    assert ids == sorted(ids)
    assert_file_healthy(db)


@pytest.mark.slow
def test_sb_watcher_wakes_on_our_writes(db: Path, open_ours: OpenOurs) -> None:
    """``broker watch`` polls PRAGMA data_version, which our commits must bump."""
    ours = open_ours()
    ours.write("q", "before")
    watcher = subprocess.Popen(
        [*BROKER_CLI, "-f", str(db), "watch", "q", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
        cwd=db.parent,
    )
    lines: stdlib_queue.Queue[str] = stdlib_queue.Queue()
    assert watcher.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in watcher.stdout or ()], daemon=True)
    reader.start()
    try:
        seen = [json.loads(lines.get(timeout=10))]  # the message that was already there
        written = [("before", seen[0]["timestamp"])]
        for i in range(5):
            body = f"live{i}"
            written.append((body, f"{ours.write('q', body):019d}"))
            seen.append(json.loads(lines.get(timeout=10)))
            assert ours.peek("q") is None, "the watcher claimed it"
    finally:
        watcher.send_signal(signal.SIGINT)
        try:
            watcher.communicate(timeout=SUBPROCESS_TIMEOUT)
        finally:
            if watcher.poll() is None:
                watcher.kill()
                watcher.wait()
    reader.join(timeout=5)
    assert watcher.returncode == 0
    assert [(m["message"], m["timestamp"]) for m in seen] == written
    assert ours.queue_stats("q") in (("q", 0, 6), ("q", 0, 0))
    assert_file_healthy(db)


def test_abandoned_batch_of_ours_is_redelivered_to_sb(db: Path, open_ours: OpenOurs) -> None:
    ours = open_ours()
    ids = ours.write_many("q", [f"m{i}" for i in range(10)])
    stream = ours.stream("q", commit_interval=5)
    assert [next(stream), next(stream)] == [Message("m0", ids[0]), Message("m1", ids[1])]
    stream.close()  # at least once: the open batch rolls back and releases the write lock

    assert parse_t(sb(db, "read", "q", "--all", "-t").stdout) == [(ids[i], f"m{i}") for i in range(10)]
    assert ours.claim("q") is None
    assert_file_healthy(db)


def test_finished_batch_stream_of_ours_is_committed_for_sb(db: Path, open_ours: OpenOurs) -> None:
    ours = open_ours()
    ids = ours.write_many("q", [f"m{i}" for i in range(12)])
    assert list(ours.stream("q", commit_interval=5)) == [Message(f"m{i}", ids[i]) for i in range(12)]
    assert sb_stats(db, "q") == (0, 12, 12)
    sb(db, "read", "q", expect=2)
    assert_file_healthy(db)


@pytest.mark.parametrize(
    ("include_claimed", "after", "before"),
    [(False, None, None), (True, None, None), (False, 300, None), (True, 100, 2200), (False, None, 1500)],
)
def test_peek_paging_matches_sb(
    db: Path, open_ours: OpenOurs, include_claimed: bool, after: int | None, before: int | None
) -> None:
    """Our keyset-paged peek stream and SimpleBroker's peek generator list the same rows."""
    with simplebroker.Queue("q", db_path=str(db), persistent=True) as theirs:
        ids = [theirs.write(f"m{i}") for i in range(50)]
    ours = open_ours()
    ids += ours.write_many("q", [f"m{i}" for i in range(50, 2500)])
    for i in range(0, 2500, 7):
        ours.claim("q", message_id=ids[i])
    ours.wait_background()  # the auto-vacuum those claims made due runs in the background
    lo = None if after is None else ids[after]
    hi = None if before is None else ids[before]

    with simplebroker.open_broker(str(db)) as broker:
        expected = list(
            broker.peek_generator(
                "q", with_timestamps=True, include_claimed=include_claimed, after_timestamp=lo, before_timestamp=hi
            )
        )
    got = list(ours.stream("q", peek=True, include_claimed=include_claimed, after_timestamp=lo, before_timestamp=hi))

    assert [(m.body, m.id) for m in got] == [tuple(m) for m in expected]
    assert len(got) > 1000
    assert_file_healthy(db)


def test_exact_id_inserts_by_sb_are_ordered_by_id(db: Path, open_ours: OpenOurs) -> None:
    """Rows SimpleBroker inserts with older IDs (``insert_messages``, ``load``) come first for both."""
    ours = open_ours()
    mine = ours.write_many("q", ["new0", "new1"])
    old = mine[0] - 1_000_000
    far = mine[-1] + 5_000_000_000  # 5 s ahead
    with simplebroker.open_broker(str(db)) as broker:
        broker.insert_messages([("q", "old", old), ("q", "future", far)])
    assert meta(db)["last_ts"] >= far

    assert ours.peek_many("q", 10) == [
        Message("old", old),
        Message("new0", mine[0]),
        Message("new1", mine[1]),
        Message("future", far),
    ]
    after = ours.write("q", "after")
    assert after > far
    assert [ident for ident, _ in parse_t(sb(db, "read", "q", "--all", "-t").stdout)] == [old, *mine, far, after]
    assert_file_healthy(db)
