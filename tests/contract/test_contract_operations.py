"""Every broker and queue operation, for every adapter, checked against the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from sansio_broker import BrokerClosedError, InvalidInputError, Message, MessageError, QueueStats
from tests.contract.contract_support import QUIET, Facade, MakeBroker, Target, bodies, open_facade, rows
from tests.support.rawdb import connect


# --------------------------------------------------------------------- writes
def test_write_returns_increasing_ids_stored_on_disk(broker: Facade, target: Target) -> None:
    ids = [broker.write("q", f"m{i}") for i in range(5)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 5
    assert rows(target) == [("q", f"m{i}", ids[i], 0) for i in range(5)]


def test_write_many_returns_ids_in_order(broker: Facade, target: Target) -> None:
    first = broker.write("q", "before")
    ids = broker.write_many("q", (f"b{i}" for i in range(4)))
    assert len(ids) == 4
    assert first < ids[0] < ids[1] < ids[2] < ids[3]
    assert rows(target) == [("q", "before", first, 0)] + [("q", f"b{i}", ids[i], 0) for i in range(4)]
    assert broker.write_many("q", []) == []
    assert len(rows(target)) == 5


def test_write_accepts_empty_nul_and_unicode_bodies(broker: Facade, target: Target) -> None:
    accepted = ["", "a\0b", "héllo \U0001f600", "line\n"]
    if target.backend == "postgres":  # its text cannot hold U+0000: refused before anything is sent
        accepted.remove("a\0b")
        for refused in (
            lambda: broker.write("q", "a\0b"),
            lambda: broker.write_many("q", ["ok", "a\0b"]),
            lambda: broker.broadcast("a\0b"),
            lambda: broker.insert_messages("q", [("a\0b", 1)]),
        ):
            with pytest.raises(MessageError, match="NUL character"):
                refused()
        assert rows(target) == []
    for body in accepted:
        broker.write("q", body)
    assert bodies(broker.claim_all("q")) == accepted


# ------------------------------------------------------------------ broadcast
def test_broadcast_reaches_every_queue_including_claimed_only(broker: Facade, target: Target) -> None:
    broker.write("a", "x")
    broker.write("b", "y")
    broker.write("c", "z")
    broker.claim("c")  # c now holds only a claimed row: it still exists
    assert broker.broadcast("hello") == 3
    stored = [(q, body) for q, body, _, claimed in rows(target) if body == "hello" and claimed == 0]
    assert sorted(stored) == [("a", "hello"), ("b", "hello"), ("c", "hello")]
    ids = [ts for _, body, ts, _ in rows(target) if body == "hello"]
    assert len(set(ids)) == 3
    claimed_from_c = broker.claim("c")
    assert claimed_from_c is not None
    assert claimed_from_c.body == "hello"
    assert claimed_from_c.id in ids


def test_broadcast_with_glob_pattern(broker: Facade) -> None:
    for q in ["jobs.a", "jobs.b", "logs", "jobsx"]:
        broker.write(q, "seed")
    assert broker.broadcast("ping", pattern="jobs.*") == 2
    assert bodies(broker.claim_all("jobs.a")) == ["seed", "ping"]
    assert bodies(broker.claim_all("jobs.b")) == ["seed", "ping"]
    assert bodies(broker.claim_all("logs")) == ["seed"]
    assert bodies(broker.claim_all("jobsx")) == ["seed"]
    assert broker.broadcast("none", pattern="nomatch*") == 0


def test_broadcast_without_queues_writes_nothing(broker: Facade, target: Target) -> None:
    assert broker.broadcast("hello") == 0
    assert rows(target) == []
    assert broker.list_queues() == []


# --------------------------------------------------------------------- claims
def test_claim_marks_row_claimed_and_returns_oldest(broker: Facade, target: Target) -> None:
    ids = broker.write_many("q", ["a", "b"])
    assert broker.claim("q") == Message("a", ids[0])
    assert rows(target) == [("q", "a", ids[0], 1), ("q", "b", ids[1], 0)]
    assert broker.claim("q") == Message("b", ids[1])
    assert broker.claim("q") is None
    assert broker.claim("missing") is None


def test_claim_many_and_claim_all(broker: Facade, target: Target) -> None:
    ids = broker.write_many("q", [f"m{i}" for i in range(6)])
    assert broker.claim_many("q", 2) == [Message("m0", ids[0]), Message("m1", ids[1])]
    assert broker.claim_all("q") == [Message(f"m{i}", ids[i]) for i in range(2, 6)]
    assert all(claimed == 1 for *_, claimed in rows(target))
    assert broker.claim_many("q", 5) == []
    assert broker.claim_all("q") == []


def test_claim_many_limit_larger_than_queue(broker: Facade) -> None:
    broker.write_many("q", ["a", "b"])
    assert bodies(broker.claim_many("q", 100)) == ["a", "b"]


@pytest.mark.parametrize("as_str", [False, True], ids=["int", "str19"])
def test_claim_by_message_id(broker: Facade, target: Target, as_str: bool) -> None:
    ids = broker.write_many("q", ["a", "b", "c"])
    wanted = str(ids[1]) if as_str else ids[1]
    if as_str:
        assert len(wanted) == 19
    assert broker.claim("q", message_id=wanted) == Message("b", ids[1])
    assert [claimed for *_, claimed in rows(target)] == [0, 1, 0]
    # Already claimed, or in another queue: nothing.
    assert broker.claim("q", message_id=wanted) is None
    assert broker.claim("other", message_id=ids[0]) is None
    assert [claimed for *_, claimed in rows(target)] == [0, 1, 0]


def test_after_and_before_bounds_are_strict(broker: Facade) -> None:
    i0, i1, i2, i3 = broker.write_many("q", ["m0", "m1", "m2", "m3"])
    assert bodies(broker.peek_many("q", 10, after_timestamp=i0)) == ["m1", "m2", "m3"]
    assert bodies(broker.peek_many("q", 10, before_timestamp=i2)) == ["m0", "m1"]
    assert bodies(broker.peek_many("q", 10, after_timestamp=i0, before_timestamp=i2)) == ["m1"]
    assert broker.peek("q", after_timestamp=i3) is None
    assert broker.claim("q", after_timestamp=i0, before_timestamp=i2) == Message("m1", i1)
    assert broker.claim("q", after_timestamp=i0, before_timestamp=i2) is None
    assert bodies(broker.claim_many("q", 10, before_timestamp=i3)) == ["m0", "m2"]
    assert bodies(broker.claim_all("q", after_timestamp=i2)) == ["m3"]
    assert broker.claim_all("q") == []


def test_bounds_on_stream_and_moves(broker: Facade) -> None:
    i0, _i1, i2, _i3 = broker.write_many("q", ["m0", "m1", "m2", "m3"])
    assert bodies(list(broker.stream("q", peek=True, after_timestamp=i0, before_timestamp=i2))) == ["m1"]
    assert bodies(list(broker.stream("q", after_timestamp=i0))) == ["m1", "m2", "m3"]
    broker.write_many("src", ["s0", "s1", "s2"])
    s0, s1, s2 = (m.id for m in broker.peek_many("src", 3))
    assert bodies(broker.move_many("src", "dst", 10, after_timestamp=s0)) == ["s1", "s2"]
    assert broker.move_all("src", "dst", before_timestamp=s0) == 0
    assert broker.move("src", "dst", after_timestamp=s0) is None
    assert broker.move_all("src", "dst", before_timestamp=s1) == 1
    assert [m.id for m in broker.peek_many("dst", 10)] == [s0, s1, s2]


# ---------------------------------------------------------------------- peeks
def test_peek_never_claims(broker: Facade, target: Target) -> None:
    ids = broker.write_many("q", ["a", "b", "c"])
    assert broker.peek("q") == Message("a", ids[0])
    assert broker.peek("q") == Message("a", ids[0])
    assert broker.peek_many("q", 2) == [Message("a", ids[0]), Message("b", ids[1])]
    assert broker.peek("q", message_id=ids[2]) == Message("c", ids[2])
    assert broker.peek("q", message_id=str(ids[2])) == Message("c", ids[2])
    assert all(claimed == 0 for *_, claimed in rows(target))
    assert broker.peek("empty") is None
    assert broker.peek_many("empty", 3) == []


def test_peek_include_claimed(broker: Facade, target: Target) -> None:
    ids = broker.write_many("q", ["a", "b"])
    broker.claim("q")
    assert broker.peek("q") == Message("b", ids[1])
    assert broker.peek("q", include_claimed=True) == Message("a", ids[0])
    assert broker.peek("q", message_id=ids[0]) is None
    assert broker.peek("q", message_id=ids[0], include_claimed=True) == Message("a", ids[0])
    assert broker.peek_many("q", 5) == [Message("b", ids[1])]
    assert broker.peek_many("q", 5, include_claimed=True) == [Message("a", ids[0]), Message("b", ids[1])]
    assert [claimed for *_, claimed in rows(target)] == [1, 0]


# -------------------------------------------------------------------- streams
def test_stream_peek_pages_past_generator_batch_size(make_broker: MakeBroker, target: Target) -> None:
    broker = make_broker(config={**QUIET, "BROKER_GENERATOR_BATCH_SIZE": "3"})
    for count in (10, 9):  # a short last page, and an exact multiple of the page
        broker.delete()
        ids = broker.write_many("q", [f"m{i}" for i in range(count)])
        seen = list(broker.stream("q", peek=True))
        assert seen == [Message(f"m{i}", ids[i]) for i in range(count)]
        assert all(claimed == 0 for *_, claimed in rows(target))


def test_stream_peek_include_claimed(broker: Facade) -> None:
    broker.write_many("q", ["a", "b", "c"])
    broker.claim("q")
    assert bodies(list(broker.stream("q", peek=True))) == ["b", "c"]
    assert bodies(list(broker.stream("q", peek=True, include_claimed=True))) == ["a", "b", "c"]


def test_stream_commit_interval_one_claims_each_before_handing_over(broker: Facade, target: Target) -> None:
    ids = broker.write_many("q", [f"m{i}" for i in range(5)])
    stream = broker.stream("q")  # commit_interval=1
    assert next(stream) == Message("m0", ids[0])
    assert next(stream) == Message("m1", ids[1])
    # Exactly once: what was handed over is committed, even before the stream ends.
    assert [claimed for *_, claimed in rows(target)] == [1, 1, 0, 0, 0]
    stream.close()
    assert [claimed for *_, claimed in rows(target)] == [1, 1, 0, 0, 0]
    assert list(broker.stream("q", commit_interval=1)) == [Message(f"m{i}", ids[i]) for i in range(2, 5)]
    assert all(claimed == 1 for *_, claimed in rows(target))


def test_stream_commit_interval_n_delivers_everything_in_order(broker: Facade, target: Target) -> None:
    ids = broker.write_many("q", [f"m{i}" for i in range(7)])
    assert list(broker.stream("q", commit_interval=3)) == [Message(f"m{i}", ids[i]) for i in range(7)]
    assert all(claimed == 1 for *_, claimed in rows(target))
    assert list(broker.stream("q", commit_interval=3)) == []


# ---------------------------------------------------------------------- moves
def test_move_oldest_keeps_id_and_body(broker: Facade, target: Target) -> None:
    ids = broker.write_many("src", ["a", "b"])
    assert broker.move("src", "dst") == Message("a", ids[0])
    assert rows(target) == [("dst", "a", ids[0], 0), ("src", "b", ids[1], 0)]
    assert broker.move("empty", "dst") is None


def test_move_many_and_move_all(make_broker: MakeBroker) -> None:
    broker = make_broker(config={**QUIET, "BROKER_GENERATOR_BATCH_SIZE": "3"})
    ids = broker.write_many("src", [f"m{i}" for i in range(14)])
    broker.claim("src")  # m0 is claimed: not moved by the pending-only moves
    assert broker.move_many("src", "dst", 2) == [Message("m1", ids[1]), Message("m2", ids[2])]
    # 11 pending left: spans several internal batches of 3, and then an exact multiple.
    assert broker.move_all("src", "dst") == 11
    assert bodies(broker.peek_many("dst", 100)) == [f"m{i}" for i in range(1, 14)]
    assert [m.id for m in broker.peek_many("dst", 100)] == ids[1:]
    assert broker.move_all("dst", "third") == 13
    assert broker.queue_stats("src") == QueueStats("src", 0, 1)
    assert broker.move_all("src", "dst") == 0
    assert broker.move_many("src", "dst", 5) == []


def test_move_all_exact_multiple_of_batch(make_broker: MakeBroker) -> None:
    broker = make_broker(config={**QUIET, "BROKER_GENERATOR_BATCH_SIZE": "3"})
    broker.write_many("src", [f"m{i}" for i in range(6)])
    assert broker.move_all("src", "dst") == 6
    assert bodies(broker.claim_all("dst")) == [f"m{i}" for i in range(6)]


def test_move_by_id_of_claimed_message_keeps_it_claimed(broker: Facade, target: Target) -> None:
    ids = broker.write_many("src", ["a", "b"])
    broker.claim("src")  # a is claimed
    assert broker.move("src", "dst", message_id=ids[0]) == Message("a", ids[0])
    assert rows(target, "dst") == [("dst", "a", ids[0], 1)]
    assert broker.queue_stats("dst") == QueueStats("dst", 0, 1)
    assert broker.claim("dst") is None
    # By 19-digit string too, pending message stays pending.
    assert broker.move("src", "dst", message_id=str(ids[1])) == Message("b", ids[1])
    assert rows(target, "dst") == [("dst", "a", ids[0], 1), ("dst", "b", ids[1], 0)]


def test_move_by_id_with_require_unclaimed_skips_claimed(broker: Facade, target: Target) -> None:
    ids = broker.write_many("src", ["a"])
    broker.claim("src")
    assert broker.move("src", "dst", message_id=ids[0], require_unclaimed=True) is None
    assert rows(target) == [("src", "a", ids[0], 1)]


def test_move_to_same_queue_is_refused(broker: Facade, target: Target) -> None:
    broker.write("q", "a")
    for call in (
        lambda: broker.move("q", "q"),
        lambda: broker.move_many("q", "q", 1),
        lambda: broker.move_all("q", "q"),
        lambda: broker.queue("q").move_to("q"),
    ):
        with pytest.raises(InvalidInputError, match="same"):
            call()
    assert rows(target)[0][:2] == ("q", "a")


# --------------------------------------------------------------------- delete
def test_delete_queue_removes_pending_and_claimed(broker: Facade, target: Target) -> None:
    broker.write_many("q", ["a", "b", "c"])
    broker.write("keep", "k")
    broker.claim("q")
    assert broker.delete("q") == 3
    assert [r[0] for r in rows(target)] == ["keep"]
    assert broker.delete("q") == 0
    assert broker.queue_exists("keep")


def test_delete_all(broker: Facade, target: Target) -> None:
    broker.write_many("a", ["1", "2"])
    broker.write("b", "3")
    broker.claim("b")
    assert broker.delete() == 3
    assert rows(target) == []
    assert broker.list_queues() == []
    assert broker.delete() == 0


def test_delete_messages_by_id(broker: Facade, target: Target) -> None:
    ids = broker.write_many("q", ["a", "b", "c", "d"])
    other = broker.write("other", "x")
    broker.claim("q")  # a claimed: still deletable
    assert broker.delete_messages("q", [ids[0], str(ids[2]), other, ids[2]]) == 2
    assert [(q, b) for q, b, _, _ in rows(target)] == [("q", "b"), ("q", "d"), ("other", "x")]
    assert broker.delete_messages("q", []) == 0
    assert broker.delete_messages("q", [ids[0]]) == 0
    assert broker.delete_messages("q", (i for i in [ids[1], ids[3]])) == 2  # any iterable
    assert rows(target, "q") == []


# ----------------------------------------------------------------- inspection
def test_list_queues_includes_claimed_only_queue(broker: Facade) -> None:
    broker.write("b", "1")
    broker.write("a", "2")
    broker.write("c", "3")
    broker.claim("a")
    assert broker.list_queues() == ["a", "b", "c"]
    broker.delete("b")
    assert broker.list_queues() == ["a", "c"]


def test_queue_stats_and_exists(broker: Facade) -> None:
    broker.write_many("q", ["a", "b", "c"])
    broker.write("r", "x")
    broker.claim("q")
    stats = broker.queue_stats("q")
    assert stats == QueueStats("q", 2, 3)
    assert stats.claimed == 1
    assert broker.queue_stats("none") == QueueStats("none", 0, 0)
    assert broker.get_queue_stats() == [QueueStats("q", 2, 3), QueueStats("r", 1, 1)]
    assert broker.queue_exists("q")
    assert not broker.queue_exists("none")
    broker.claim("r")
    assert broker.queue_exists("r")  # claimed-only still exists
    broker.vacuum()
    assert not broker.queue_exists("r")
    assert broker.get_queue_stats() == [QueueStats("q", 2, 2)]


# --------------------------------------------------------------------- vacuum
def test_vacuum_removes_claimed_rows_only(broker: Facade, target: Target) -> None:
    ids = broker.write_many("q", [f"m{i}" for i in range(6)])
    broker.write("r", "other")
    broker.claim_many("q", 4)
    pending_before = [r for r in rows(target) if r[3] == 0]
    assert broker.vacuum() == 4
    assert rows(target) == pending_before
    assert [r[2] for r in rows(target, "q")] == ids[4:]
    assert broker.vacuum() == 0
    assert rows(target) == pending_before


@pytest.mark.sqlite_only("the rebuilt file: PRAGMA page_count, freelist_count, auto_vacuum, journal_mode")
def test_vacuum_compact_rebuilds_file(broker: Facade, db_path: Path) -> None:
    big = "x" * 3000
    broker.write_many("q", [big] * 400)
    broker.write("keep", "k")
    broker.claim_all("q")
    (pages_before,) = broker.pragma("page_count")
    assert broker.vacuum(compact=True) == 400
    assert rows(db_path) == [("keep", "k", rows(db_path)[0][2], 0)]
    # The broker's own connection, and a fresh one, see the rebuilt file.
    assert broker.pragma("freelist_count") == [0]
    assert broker.pragma("page_count")[0] < pages_before / 10
    assert broker.pragma("auto_vacuum") == [2]
    assert broker.pragma("journal_mode") == ["wal"]
    assert broker.pragma("integrity_check") == ["ok"]
    with connect(db_path) as conn:
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
        assert conn.execute("PRAGMA page_count").fetchone()[0] < pages_before / 10
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert broker.claim("keep") is not None


# --------------------------------------------------------------- Broker.read
def test_broker_read_returns_bodies(broker: Facade, target: Target) -> None:
    ids = broker.write_many("q", ["a", "b", "c", "d"])
    assert broker.read("q", peek=True) == ["a"]
    assert broker.read("q", peek=True, all_messages=True) == ["a", "b", "c", "d"]
    assert all(claimed == 0 for *_, claimed in rows(target))
    assert broker.read("q", peek=True, exact_timestamp=ids[2]) == ["c"]
    assert broker.read("q", exact_timestamp=ids[2]) == ["c"]
    assert broker.read("q", exact_timestamp=ids[2]) == []
    assert broker.read("q", peek=True, exact_timestamp=str(ids[2])) == []
    assert broker.read("q") == ["a"]
    assert broker.read("q", all_messages=True) == ["b", "d"]
    assert broker.read("q") == []
    assert broker.read("q", all_messages=True) == []
    assert all(claimed == 1 for *_, claimed in rows(target))


# ---------------------------------------------------------------- Queue class
def test_queue_write_read_peek(broker: Facade, target: Target) -> None:
    q = broker.queue("tasks")
    assert q.name == "tasks"
    ids = [q.write("a"), q.write("b")]
    assert q.write_many(["c", "d"]) == [m.id for m in broker.peek_many("tasks", 10)][2:]
    assert q.read(peek=True) == "a"
    assert q.peek() == Message("a", ids[0])
    assert q.peek_many(2) == [Message("a", ids[0]), Message("b", ids[1])]
    assert q.read() == "a"
    assert q.peek(message_id=ids[0]) is None
    assert q.peek(message_id=ids[0], include_claimed=True) == Message("a", ids[0])
    assert q.peek_many(10, include_claimed=True)[0] == Message("a", ids[0])
    assert q.read(message_id=ids[1], peek=True) == "b"
    assert q.read(message_id=ids[1]) == "b"
    assert q.read(all_messages=True, peek=True) == ["c", "d"]
    assert q.read(all_messages=True) == ["c", "d"]
    assert q.read() is None
    assert q.read(all_messages=True) == []
    assert all(claimed == 1 for *_, claimed in rows(target))


def test_queue_read_all_messages_returns_every_body(broker: Facade, target: Target) -> None:
    q = broker.queue("q")
    q.write_many([f"m{i}" for i in range(5)])
    assert q.read(all_messages=True) == [f"m{i}" for i in range(5)]
    assert all(claimed == 1 for *_, claimed in rows(target))
    assert q.size() == 0


def test_queue_read_all_and_bounds(broker: Facade) -> None:
    q = broker.queue("q")
    i0, _, i2 = q.write_many(["a", "b", "c"])
    assert q.read(peek=True, after_timestamp=i0) == "b"
    assert q.read(peek=True, all_messages=True, before_timestamp=i2) == ["a", "b"]
    assert q.read_all(peek=True) == ["a", "b", "c"]
    assert q.read_all() == ["a", "b", "c"]
    assert q.read_all() == []
    with pytest.raises(InvalidInputError):
        q.read(all_messages=True, message_id=i0)  # type: ignore[call-overload]


def test_queue_stream(broker: Facade, target: Target) -> None:
    q = broker.queue("q")
    q.write_many(["a", "b", "c"])
    assert list(q.stream(peek=True)) == ["a", "b", "c"]
    assert list(q.stream(all_messages=False, peek=True)) == ["a"]
    assert list(q.stream(all_messages=False)) == ["a"]
    assert [claimed for *_, claimed in rows(target)] == [1, 0, 0]
    assert list(q.stream(commit_interval=2)) == ["b", "c"]
    assert list(q.stream()) == []
    assert list(q.stream(all_messages=False)) == []
    q.write_many(["d", "e"])
    assert [m.body for m in q.messages(peek=True)] == ["d", "e"]
    assert [m.body for m in q.messages()] == ["d", "e"]


def test_queue_claim_size_stats_exists(broker: Facade) -> None:
    q = broker.queue("q")
    assert not q.exists()
    assert q.size() == 0
    ids = q.write_many(["a", "b", "c"])
    assert q.exists()
    assert q.size() == 3
    assert q.claim() == Message("a", ids[0])
    assert q.claim(message_id=ids[2]) == Message("c", ids[2])
    assert q.claim(message_id=ids[2]) is None
    assert q.size() == 1
    assert q.stats() == QueueStats("q", 1, 3)
    assert q.claim_many(5) == [Message("b", ids[1])]
    assert q.size() == 0
    assert q.exists()


def test_queue_moves(broker: Facade, target: Target) -> None:
    q = broker.queue("src")
    ids = q.write_many([f"m{i}" for i in range(6)])
    assert q.move_to("dst") == Message("m0", ids[0])
    assert q.move_to("dst", message_id=ids[3]) == Message("m3", ids[3])
    assert q.move_many("dst", 2) == [Message("m1", ids[1]), Message("m2", ids[2])]
    assert q.move_all("dst") == 2
    assert not q.exists()
    assert [r[2] for r in rows(target, "dst")] == ids
    assert q.move_to("dst") is None


def test_queue_delete(broker: Facade, target: Target) -> None:
    q = broker.queue("q")
    ids = q.write_many(["a", "b", "c"])
    broker.write("other", "x")
    assert q.delete(message_id=ids[1]) is True
    assert q.delete(message_id=ids[1]) is False
    assert q.delete(message_id=str(ids[2])) is True
    assert [b for _, b, _, _ in rows(target, "q")] == ["a"]
    assert q.delete() is True
    assert q.delete() is False
    assert not q.exists()
    assert [b for _, b, _, _ in rows(target)] == ["x"]


# ------------------------------------------------------------------------ FIFO
def test_fifo_across_write_and_write_many(broker: Facade) -> None:
    expected = []
    for i in range(5):
        broker.write("q", f"s{i}")
        expected.append(f"s{i}")
        batch = [f"b{i}.{j}" for j in range(3)]
        broker.write_many("q", batch)
        expected += batch
    broker.write("other", "zzz")
    got = broker.claim_all("q")
    assert bodies(got) == expected
    assert [m.id for m in got] == sorted(m.id for m in got)


def test_fifo_across_two_brokers_on_one_file(make_broker: MakeBroker) -> None:
    one, two = make_broker(), make_broker()
    ids = []
    for i in range(4):
        ids.append(one.write("q", f"one{i}"))
        ids.append(two.write("q", f"two{i}"))
        ids += one.write_many("q", [f"many{i}.0", f"many{i}.1"])
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    expected = []
    for i in range(4):
        expected += [f"one{i}", f"two{i}", f"many{i}.0", f"many{i}.1"]
    # Each broker sees the other's messages, in one order.
    assert bodies(two.peek_many("q", 100)) == expected
    assert [one.claim("q").body for _ in range(8)] == expected[:8]  # type: ignore[union-attr]
    assert bodies(two.claim_all("q")) == expected[8:]


# ------------------------------------------------------------------ durability
def test_durable_across_reopen(adapter: str, target: Target) -> None:
    with open_facade(adapter, target) as broker:
        ids = broker.write_many("q", ["a", "b", "c"])
        broker.claim("q")
    with open_facade(adapter, target) as broker:
        assert broker.queue_stats("q") == QueueStats("q", 2, 3)
        assert broker.claim_all("q") == [Message("b", ids[1]), Message("c", ids[2])]
        later = broker.write("q", "d")
        assert later > ids[-1]
    with open_facade(adapter, target) as broker:
        assert broker.read("q", all_messages=True) == ["d"]


# ------------------------------------------------- every operation in sequence
def test_every_broker_operation(make_broker: MakeBroker, target: Target) -> None:
    b = make_broker()
    a1 = b.write("alpha", "a1")
    assert isinstance(a1, int)
    a2, a3, a4 = b.write_many("alpha", (m for m in ["a2", "a3", "a4"]))
    assert a1 < a2 < a3 < a4
    assert b.write_many("alpha", []) == []
    (b1,) = b.write_many("beta", ["b1"])
    assert b.list_queues() == ["alpha", "beta"]
    assert b.queue_exists("alpha") and not b.queue_exists("gamma")

    # broadcast: every queue, or those matching a glob
    assert b.broadcast("all") == 2
    assert b.broadcast("only-b", pattern="b*") == 1
    assert [m.body for m in b.peek_many("beta", 10)] == ["b1", "all", "only-b"]

    # peeks never claim
    assert b.peek("alpha") == Message("a1", a1)
    assert b.peek("alpha", message_id=a3) == Message("a3", a3)
    assert b.peek("alpha", after_timestamp=a1, before_timestamp=a3) == Message("a2", a2)
    assert [m.id for m in b.peek_many("alpha", 2)] == [a1, a2]

    # claims
    assert b.claim("alpha") == Message("a1", a1)
    assert b.claim("alpha", message_id=a3) == Message("a3", a3)
    assert b.claim("alpha", message_id=a3) is None  # already claimed
    assert b.claim("alpha", after_timestamp=a3) == Message("a4", a4)
    assert [m.id for m in b.peek_many("alpha", 10, include_claimed=True)][:4] == [a1, a2, a3, a4]
    assert b.peek("alpha", message_id=a1) is None
    assert b.peek("alpha", message_id=a1, include_claimed=True) == Message("a1", a1)
    assert [m.body for m in b.claim_many("alpha", 1)] == ["a2"]
    assert [m.body for m in b.claim_all("alpha")] == ["all"]
    assert b.claim("alpha") is None
    assert b.claim_all("alpha") == []

    # stats
    assert b.queue_stats("alpha") == ("alpha", 0, 5)
    assert b.get_queue_stats() == [("alpha", 0, 5), ("beta", 3, 3)]

    # moves
    assert b.move("beta", "gamma") == Message("b1", b1)
    assert [m.body for m in b.move_many("beta", "gamma", 1)] == ["all"]
    assert b.move_all("beta", "gamma") == 1
    assert [m.body for m in b.peek_many("gamma", 10)] == ["b1", "all", "only-b"]

    # the example's read/stream_read shapes
    assert b.read("gamma", peek=True) == ["b1"]
    assert b.read("gamma", peek=True, all_messages=True) == ["b1", "all", "only-b"]
    assert b.read("gamma") == ["b1"]
    (c1,) = b.write_many("delta", ["d1"])
    assert b.read("delta", exact_timestamp=c1) == ["d1"]
    assert b.read("delta") == []
    assert list(b.stream_read("gamma", peek=True, all_messages=True)) == ["all", "only-b"]
    assert list(b.stream_read("gamma")) == ["all"]  # all_messages=False: one
    assert list(b.stream_read("gamma", all_messages=True, commit_interval=2)) == ["only-b"]

    # Message streams
    b.write_many("eps", ["e1", "e2", "e3"])
    assert [m.body for m in b.stream("eps", peek=True)] == ["e1", "e2", "e3"]
    got = list(b.stream("eps", commit_interval=2))
    assert [m.body for m in got] == ["e1", "e2", "e3"] and all(isinstance(m, Message) for m in got)

    # delete
    (z1, z2) = b.write_many("zeta", ["z1", "z2"])
    assert b.delete_messages("zeta", [z1, str(z2).zfill(19), 12345]) == 2
    assert b.delete("alpha") == 5
    assert not b.queue_exists("alpha")

    # vacuum removes claimed rows
    claimed_rows = sum(total - pending for _, pending, total in b.get_queue_stats())
    assert claimed_rows > 0
    assert b.vacuum() == claimed_rows
    assert all(pending == total for _, pending, total in b.get_queue_stats())
    assert b.vacuum(compact=True) == 0

    b.write_many("eta", ["h1", "h2"])
    b.write("theta", "t1")
    assert b.delete() == 3
    assert b.list_queues() == []
    assert rows(target) == []


def test_every_queue_operation(broker: Facade) -> None:
    q = broker.queue("tasks")
    assert q.name == "tasks" and q.broker is broker
    assert not q.exists()
    assert q.read() is None
    assert q.read(all_messages=True) == []
    first = q.write("one")
    ids = [first, *q.write_many(["two", "three", "four", "five", "six"])]
    assert q.exists()
    assert q.size() == 6
    assert q.stats() == ("tasks", 6, 6)

    assert q.read(peek=True) == "one"
    assert q.read_all(peek=True) == ["one", "two", "three", "four", "five", "six"]
    assert q.peek() == Message("one", first)
    assert [m.id for m in q.peek_many(2)] == ids[:2]
    assert q.read() == "one"
    assert q.claim() == Message("two", ids[1])
    assert q.claim(message_id=ids[3]) == Message("four", ids[3])
    assert q.peek_many(10, include_claimed=True) == [
        Message(b, i) for b, i in zip(["one", "two", "three", "four", "five", "six"], ids, strict=True)
    ]
    assert q.size() == 3

    # move_to: the oldest pending, or one by its public ID
    assert q.move_to("elsewhere") == Message("three", ids[2])
    assert q.move_to("elsewhere", message_id=ids[5]) == Message("six", ids[5])
    assert broker.queue("elsewhere").read_all() == ["three", "six"]

    q.write_many(["7", "8", "9"])
    assert [m.body for m in q.move_many("moved", 2)] == ["five", "7"]
    assert q.move_all("moved") == 2
    moved = broker.queue("moved")
    assert moved.size() == 4

    # streams: bodies, at most one, at least once in batches, peeked, with IDs
    assert list(moved.stream(all_messages=False)) == ["five"]
    assert list(moved.stream(peek=True)) == ["7", "8", "9"]
    assert list(moved.stream(commit_interval=2)) == ["7", "8", "9"]
    assert moved.size() == 0
    moved.write_many(["x", "y"])
    got = list(moved.messages())
    assert [m.body for m in got] == ["x", "y"] and got[0].id < got[1].id
    moved.write("z")
    assert [m.body for m in moved.messages(peek=True)] == ["z"]
    assert [m.body for m in moved.messages(commit_interval=3)] == ["z"]

    # delete one message, or the queue
    (k1, _k2) = q.write_many(["keep-1", "keep-2"])
    assert q.delete(message_id=k1) is True
    assert q.delete(message_id=k1) is False
    assert q.delete() is True
    assert not q.exists()
    assert q.delete() is False


# ------------------------------------------------------- the original example
def test_write_returns_the_committed_id(broker: Facade, target: Target) -> None:
    first = broker.write("q", "a")
    second = broker.queue("q").write("b")
    assert isinstance(first, int) and isinstance(second, int)
    assert len(str(first)) == 19 and first < second
    assert [(b, ts) for _, b, ts, _ in rows(target)] == [("a", first), ("b", second)]


def test_write_many_commits_in_one_transaction(make_broker: MakeBroker, target: Target) -> None:
    broker = make_broker(config={"BROKER_MAX_MESSAGE_SIZE": "4"})
    with pytest.raises(MessageError):
        broker.write_many("q", ["ok", "ok", "too long"])
    assert rows(target) == []
    ids = broker.write_many("q", [str(i) for i in range(500)])
    assert ids == sorted(ids) and len(set(ids)) == 500
    assert len(rows(target)) == 500


def test_move_by_public_id_moves_a_claimed_message_and_keeps_it_claimed(broker: Facade, target: Target) -> None:
    a, b, c = broker.write_many("src", ["a", "b", "c"])
    assert broker.claim("src", message_id=b) == Message("b", b)
    # The example matched an internal rowid: small numbers must not match anything.
    assert broker.move("src", "dst", message_id=2) is None
    assert broker.move("src", "dst", message_id=b) == Message("b", b)
    assert broker.queue("src").move_to("dst", message_id=c) == Message("c", c)
    assert broker.move("dst", "src", message_id=b, require_unclaimed=True) is None
    assert broker.queue("src").move_to("dst", message_id=str(a)) == Message("a", a)
    assert rows(target) == [("dst", "a", a, 0), ("dst", "b", b, 1), ("dst", "c", c, 0)]


def test_read_all_messages_returns_every_body_it_claimed(broker: Facade, target: Target) -> None:
    everything = [f"m{i}" for i in range(250)]  # more than one generator batch
    broker.write_many("q", everything)
    assert broker.read("q", all_messages=True) == everything
    assert broker.queue_stats("q") == ("q", 0, 250)
    broker.write_many("r", everything[:5])
    assert broker.queue("r").read(all_messages=True) == everything[:5]
    broker.write_many("s", everything[:3])
    assert broker.queue("s").read_all() == everything[:3]
    assert broker.queue("s").read_all() == []
    stored = rows(target)
    assert [(q, sum(1 for r in stored if r[0] == q and r[3] == 1)) for q in "qrs"] == [("q", 250), ("r", 5), ("s", 3)]
    assert [r for r in stored if r[3] == 0] == []


# ------------------------------------------------------------------ lifecycle
@pytest.mark.sqlite_only("a file path given as str")
def test_a_str_path_is_accepted(make_broker: MakeBroker, tmp_path: Path) -> None:
    broker = make_broker(str(tmp_path / "s.db"))
    assert broker.path == str(tmp_path / "s.db")
    assert broker.write("q", "x") > 0
    assert [b for _, b, _, _ in rows(tmp_path / "s.db")] == ["x"]


def test_operations_after_close_raise_broker_closed(broker: Facade, target: Target) -> None:
    broker.write("q", "a")
    broker.close()
    broker.close()  # idempotent
    for call in (
        lambda: broker.write("q", "b"),
        lambda: broker.claim("q"),
        lambda: broker.peek("q"),
        lambda: broker.list_queues(),
        lambda: list(broker.stream("q")),
    ):
        with pytest.raises(BrokerClosedError, match="closed"):
            call()
    with pytest.raises(BrokerClosedError), broker.transaction():
        pass
    assert isinstance(BrokerClosedError("x"), RuntimeError)
    assert [b for _, b, _, _ in rows(target)] == ["a"]
