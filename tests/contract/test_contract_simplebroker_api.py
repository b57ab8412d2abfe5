"""The SimpleBroker-compatible API of issue 12 on every adapter: aliases,
rename_queue, keep_newest, order="newest", exact-ID inserts, body search,
has_pending, status, broadcast to listed queues, return_messages.

Expected texts and semantics are SimpleBroker 8.7.2's (db.py, _aliases.py,
_delivery.py, _selection.py, _message_search.py); dump/load are in
``test_contract_simplebroker_dump.py``.
"""

from __future__ import annotations

import functools
import time
import warnings
from typing import Any

import pytest

from sansio_broker import IntegrityError, InvalidInputError, Message, QueueNameError
from sansio_broker.errors import AliasError, AliasShadowsQueueWarning
from tests.contract.contract_support import (
    Facade,
    Target,
    alias_version,
    bodies,
    claimed_flags,
    meta,
    raised_by,
    rows,
    stored_aliases,
)


def future_id(seconds: float) -> int:
    """A hybrid message ID ``seconds`` ahead of the wall clock (logical counter 0)."""
    return (time.time_ns() + int(seconds * 1e9)) & ~0xFFF


# Fixed IDs in the past (2023), so inserted rows sort before anything written now.
BASE = 1_700_000_000_000_000_000 & ~0xFFF


def fixed(k: int) -> int:
    return BASE + k * 4096


# ==================================================================== aliases
def test_alias_add_list_resolve_remove(broker: Facade, target: Target) -> None:
    assert broker.list_aliases() == []
    broker.add_alias("w", "tasks")
    broker.add_alias("a", "zeta")
    assert broker.list_aliases() == [("a", "zeta"), ("w", "tasks")]
    assert stored_aliases(target) == [("a", "zeta"), ("w", "tasks")]
    assert broker.resolve_queue("@w") == "tasks"
    assert broker.resolve_queue("w") == "w"  # a plain name is the literal queue
    assert broker.resolve_queue("tasks") == "tasks"

    assert broker.remove_alias("w") is True
    assert broker.remove_alias("w") is False
    assert broker.remove_alias("@a") is False  # admin names are literal: no alias "@a"
    assert broker.list_aliases() == [("a", "zeta")]
    assert stored_aliases(target) == [("a", "zeta")]
    error = raised_by(lambda: broker.resolve_queue("@w"))
    assert isinstance(error, AliasError)
    assert str(error) == "Alias 'w' is not defined"


ADD_ERRORS: list[tuple[str, str, type[BaseException], str | None]] = [
    ("same", "same", AliasError, "Alias and target must differ"),
    ("w2", "@tasks", AliasError, "Target names should not include the '@' prefix"),
    ("w2", "", AliasError, "Alias target cannot be empty"),
    ("w", "tasks", AliasError, "Alias 'w' already exists"),
    ("w", "elsewhere", AliasError, "Alias 'w' already exists"),
    ("x", "w", AliasError, "Cannot target another alias"),
    ("tasks", "other", AliasError, "Cannot turn an existing alias target into an alias"),
    ("@w2", "tasks", QueueNameError, None),
    ("", "tasks", QueueNameError, None),
    ("w2", "bad name", QueueNameError, None),
    ("w2", "-dash", QueueNameError, None),
]


def test_alias_add_errors_have_simplebrokers_texts(broker: Facade, target: Target) -> None:
    broker.add_alias("w", "tasks")
    version = alias_version(target)
    wrong = []
    for alias, aliased, error_type, text in ADD_ERRORS:
        try:
            broker.add_alias(alias, aliased)
        except Exception as exc:
            ok = isinstance(exc, error_type) and isinstance(exc, InvalidInputError) and isinstance(exc, ValueError)
            if not ok or (text is not None and str(exc) != text):
                wrong.append((alias, aliased, repr(exc)))
        else:
            wrong.append((alias, aliased, "no error"))
    assert wrong == []
    assert broker.list_aliases() == [("w", "tasks")]
    assert alias_version(target) == version  # a refused add bumps nothing


@pytest.mark.parametrize(
    ("name", "text"), [("@", "Alias name cannot be empty"), ("@nope", "Alias 'nope' is not defined")]
)
def test_unresolvable_alias_is_refused_everywhere(broker: Facade, target: Target, name: str, text: str) -> None:
    broker.write("q", "x")
    calls: dict[str, Any] = {
        "write": lambda: broker.write(name, "m"),
        "claim": lambda: broker.claim(name),
        "peek": lambda: broker.peek(name),
        "move src": lambda: broker.move(name, "q"),
        "move dst": lambda: broker.move("q", name),
        "queue_stats": lambda: broker.queue_stats(name),
        "queue_exists": lambda: broker.queue_exists(name),
        "has_pending": lambda: broker.has_pending(name),
        "delete": lambda: broker.delete(name),
        "rename new": lambda: broker.rename_queue("q", name),
        "queue.write": lambda: broker.queue(name).write("m"),
    }
    wrong = {}
    for label, call in calls.items():
        exc = raised_by(call)
        if not isinstance(exc, AliasError) or str(exc) != text:
            wrong[label] = repr(exc)
    assert wrong == {}
    assert rows(target) == [("q", "x", rows(target)[0][2], 0)]


def test_alias_resolves_wherever_a_queue_is_named(broker: Facade, target: Target) -> None:
    broker.add_alias("w", "tasks")
    broker.add_alias("d", "done")
    ids = [broker.write("@w", f"task-{i}") for i in range(7)]
    assert [(q, b) for q, b, _, _ in rows(target)] == [("tasks", f"task-{i}") for i in range(7)]
    lit = broker.write("w", "literal")  # the plain name is a queue of its own
    assert rows(target, "w") == [("w", "literal", lit, 0)]

    assert broker.peek("@w") == Message("task-0", ids[0])
    assert broker.claim("@w") == Message("task-0", ids[0])
    assert broker.claim_many("@w", 1) == [Message("task-1", ids[1])]
    assert broker.peek_many("@w", 2) == [Message("task-2", ids[2]), Message("task-3", ids[3])]
    assert broker.move("@w", "@d") == Message("task-2", ids[2])
    assert broker.move_many("@w", "@d", 1) == [Message("task-3", ids[3])]
    assert broker.move("tasks", "@d", message_id=ids[0]) == Message("task-0", ids[0])  # claimed: stays claimed
    assert rows(target, "done") == [
        ("done", "task-0", ids[0], 1),
        ("done", "task-2", ids[2], 0),
        ("done", "task-3", ids[3], 0),
    ]
    assert bodies(list(broker.stream("@w", peek=True))) == ["task-4", "task-5", "task-6"]
    got = broker.get(["@w"], timeout=0)
    assert got is not None
    assert got[1] == "task-4"
    assert broker.peek_many("tasks", 10) == [Message("task-5", ids[5]), Message("task-6", ids[6])]
    stats = broker.queue_stats("@w")
    assert (stats.pending, stats.total) == (2, 4)
    assert broker.queue_exists("@w") is True
    assert broker.has_pending("@w") is True
    assert broker.has_pending("@w", after_timestamp=ids[6]) is False
    assert broker.find_message_ids("@w", "task-5") == [ids[5]]
    assert broker.find_message_ids("@w", "task", include_claimed=True) == [ids[1], ids[4], ids[5], ids[6]]
    assert bodies(list(broker.stream("@d"))) == ["task-2", "task-3"]
    assert broker.delete("@d") == 3
    assert not broker.queue_exists("done")
    assert not broker.queue_exists("@d")
    assert broker.delete("@w") == 4
    assert broker.queue_exists("w") is True
    assert rows(target) == [("w", "literal", lit, 0)]  # untouched by everything on @w


def test_alias_resolves_on_queue_objects(broker: Facade, target: Target) -> None:
    broker.add_alias("w", "tasks")
    broker.add_alias("d", "done")
    q = broker.queue("@w")
    first = q.write("job-a")
    second = q.write("job-b")
    third = q.write("job-c")
    assert [(qn, b) for qn, b, _, _ in rows(target)] == [("tasks", "job-a"), ("tasks", "job-b"), ("tasks", "job-c")]
    assert q.peek() == Message("job-a", first)
    assert q.exists() is True
    assert q.has_pending(after_timestamp=third) is False
    assert q.find_message_ids("job-b") == [second]
    assert q.claim() == Message("job-a", first)
    assert q.move_to("@d") == Message("job-b", second)
    assert rows(target, "done") == [("done", "job-b", second, 0)]
    stats = q.stats()
    assert (stats.pending, stats.total) == (1, 2)
    assert q.insert_messages([("old", fixed(1))]) == 1
    assert rows(target, "tasks")[0] == ("tasks", "old", fixed(1), 0)
    assert q.peek_many(10) == [Message("old", fixed(1)), Message("job-c", third)]
    assert q.delete(message_id=third) is True
    assert list(q.stream(peek=True)) == ["old"]


def test_claiming_stream_through_an_alias_gives_back_an_open_batch(broker: Facade, target: Target) -> None:
    broker.add_alias("w", "tasks")
    ids = broker.write_many("tasks", ["a", "b", "c"])
    stream = broker.stream("@w", commit_interval=2)
    assert next(stream) == Message("a", ids[0])
    stream.close()  # the batch was never committed: delivered again
    assert claimed_flags(target, "tasks") == [0, 0, 0]
    assert bodies(list(broker.stream("@w"))) == ["a", "b", "c"]
    assert claimed_flags(target, "tasks") == [1, 1, 1]


def test_alias_version_bumps_to_the_wall_clock(broker: Facade, target: Target) -> None:
    assert alias_version(target) == 0
    before = time.time_ns()
    broker.add_alias("w", "tasks")
    added = alias_version(target)
    assert before <= added <= time.time_ns()

    broker.write("tasks", "x")
    broker.rename_queue("tasks", "jobs", retarget_aliases=False)
    assert alias_version(target) == added  # nothing retargeted
    broker.write("other", "y")
    broker.rename_queue("other", "other2")  # no alias points at it
    assert alias_version(target) == added

    before = time.time_ns()
    broker.add_alias("v", "jobs")
    with_v = alias_version(target)
    assert with_v != added
    assert before <= with_v <= time.time_ns()
    before = time.time_ns()
    assert broker.rename_queue("jobs", "work").aliases_retargeted == 1
    renamed = alias_version(target)
    assert renamed != with_v
    assert before <= renamed <= time.time_ns()

    before = time.time_ns()
    assert broker.remove_alias("v") is True
    removed = alias_version(target)
    assert removed != renamed
    assert before <= removed <= time.time_ns()


def test_alias_over_a_queue_with_messages_warns(broker: Facade) -> None:
    broker.write("x", "kept")
    with pytest.warns(AliasShadowsQueueWarning) as caught:
        broker.add_alias("x", "y")
    texts = [str(w.message) for w in caught if issubclass(w.category, AliasShadowsQueueWarning)]
    assert texts == [
        "Queue 'x' already exists with messages. The alias @x will redirect to 'y' "
        "while the queue x remains accessible directly."
    ]
    assert broker.list_aliases() == [("x", "y")]
    broker.write("@x", "redirected")
    assert bodies(broker.peek_many("x", 10)) == ["kept"]
    assert bodies(broker.peek_many("y", 10)) == ["redirected"]

    with warnings.catch_warnings(record=True) as quiet:
        warnings.simplefilter("always")
        broker.add_alias("empty", "y2")
    assert [w for w in quiet if issubclass(w.category, AliasShadowsQueueWarning)] == []


# =============================================================== rename_queue
def test_rename_moves_every_row_and_retargets_aliases(broker: Facade, target: Target) -> None:
    ids = broker.write_many("tasks", ["a", "b", "c"])
    assert broker.claim("tasks") == Message("a", ids[0])
    broker.add_alias("w", "tasks")
    broker.add_alias("v", "tasks")
    broker.add_alias("u", "elsewhere")
    broker.write("bystander", "z")

    result = broker.rename_queue("tasks", "jobs")
    assert result == ("tasks", "jobs", 3, 2, True)
    assert (result.old_queue, result.new_queue, result.messages_renamed) == ("tasks", "jobs", 3)
    assert (result.aliases_retargeted, result.renamed) == (2, True)
    assert rows(target, "jobs") == [("jobs", "a", ids[0], 1), ("jobs", "b", ids[1], 0), ("jobs", "c", ids[2], 0)]
    assert rows(target, "tasks") == []
    assert broker.list_aliases() == [("u", "elsewhere"), ("v", "jobs"), ("w", "jobs")]
    assert broker.resolve_queue("@w") == "jobs"
    assert broker.claim("@w") == Message("b", ids[1])
    assert bodies(broker.peek_many("bystander", 10)) == ["z"]


def test_rename_without_retargeting_keeps_aliases(broker: Facade, target: Target) -> None:
    broker.write_many("tasks", ["a", "b"])
    broker.add_alias("w", "tasks")
    version = alias_version(target)
    assert broker.rename_queue("tasks", "jobs", retarget_aliases=False) == ("tasks", "jobs", 2, 0, True)
    assert broker.rename_queue("jobs", "tasks2", retarget_aliases=False).renamed is True
    assert broker.list_aliases() == [("w", "tasks")]
    assert broker.resolve_queue("@w") == "tasks"
    assert broker.peek("@w") is None
    assert alias_version(target) == version


def test_rename_through_aliases_uses_canonical_names(broker: Facade, target: Target) -> None:
    ids = broker.write_many("jobs", ["a", "b"])
    broker.add_alias("w", "jobs")
    assert broker.rename_queue("@w", "x") == ("jobs", "x", 2, 1, True)
    assert broker.list_aliases() == [("w", "x")]
    # Renaming INTO an alias: the alias's target (empty) becomes the queue.
    broker.add_alias("e", "empty")
    assert broker.rename_queue("x", "@e") == ("x", "empty", 2, 1, True)
    assert rows(target) == [("empty", "a", ids[0], 0), ("empty", "b", ids[1], 0)]
    assert broker.list_aliases() == [("e", "empty"), ("w", "empty")]


def test_rename_errors_and_missing_source(broker: Facade, target: Target) -> None:
    broker.write("tasks", "a")
    only_claimed = broker.write("busy", "b")
    assert broker.claim("busy") == Message("b", only_claimed)
    broker.add_alias("w", "tasks")
    before = rows(target)

    for old, new in [("tasks", "tasks"), ("@w", "tasks"), ("tasks", "@w")]:
        exc = raised_by(functools.partial(broker.rename_queue, old, new))
        assert isinstance(exc, InvalidInputError), (old, new, exc)
        assert str(exc) == "Source and target queues cannot be the same"
    # A target holding only a claimed row still exists.
    exc = raised_by(lambda: broker.rename_queue("tasks", "busy"))
    assert isinstance(exc, InvalidInputError)
    assert str(exc) == "Target queue already exists"
    exc = raised_by(lambda: broker.rename_queue("nothere", "busy"))
    assert str(exc) == "Target queue already exists"
    assert isinstance(raised_by(lambda: broker.rename_queue("tasks", "bad name")), QueueNameError)
    assert rows(target) == before

    assert broker.rename_queue("nothere", "zz") == ("nothere", "zz", 0, 0, False)
    assert rows(target) == before
    assert broker.list_aliases() == [("w", "tasks")]


# ================================================================ keep_newest
def test_keep_newest_claims_all_but_the_newest_pending(broker: Facade, target: Target) -> None:
    ids = broker.write_many("q", ["m1", "m2", "m3", "m4"])
    other = broker.write("other", "o")
    m5 = broker.write("q", "m5", keep_newest=2)
    assert rows(target, "q") == [
        ("q", "m1", ids[0], 1),
        ("q", "m2", ids[1], 1),
        ("q", "m3", ids[2], 1),
        ("q", "m4", ids[3], 0),
        ("q", "m5", m5, 0),
    ]
    assert rows(target, "other") == [("other", "o", other, 0)]
    assert bodies(broker.peek_many("q", 10)) == ["m4", "m5"]
    stats = broker.queue_stats("q")
    assert (stats.pending, stats.claimed, stats.total) == (2, 3, 5)

    broker.write("q", "m6", keep_newest=1)
    assert bodies(broker.peek_many("q", 10)) == ["m6"]
    broker.write("q", "m7", keep_newest=9999)  # more than pending: nothing claimed
    assert bodies(broker.peek_many("q", 10)) == ["m6", "m7"]
    broker.write("q", "m8", keep_newest=None)
    assert claimed_flags(target) == [1, 1, 1, 1, 1, 0, 0, 0]


def test_keep_newest_counts_pending_rows_only(broker: Facade, target: Target) -> None:
    p1, p2, p3 = broker.write_many("q", ["p1", "p2", "p3"])
    assert broker.claim("q", message_id=p3) == Message("p3", p3)  # the newest is already claimed
    p4 = broker.write("q", "p4", keep_newest=2)
    assert broker.peek_many("q", 10) == [Message("p2", p2), Message("p4", p4)]
    assert claimed_flags(target) == [1, 0, 1, 0]
    assert p1 < p2


def test_keep_newest_on_queue_objects_and_aliases(broker: Facade, target: Target) -> None:
    broker.add_alias("w", "q")
    q = broker.queue("@w")
    for i in range(4):
        q.write(f"m{i}")
    q.write("m4", keep_newest=2)
    assert bodies(broker.peek_many("q", 10)) == ["m3", "m4"]
    broker.write("@w", "m5", keep_newest=1)
    assert bodies(broker.peek_many("q", 10)) == ["m5"]
    assert len(rows(target, "q")) == 6


def test_keep_newest_rolls_back_with_its_transaction(broker: Facade, target: Target) -> None:
    broker.write_many("q", ["a", "b", "c"])
    before = rows(target)
    with pytest.raises(RuntimeError, match="undo"), broker.transaction():
        broker.write("q", "d", keep_newest=1)
        assert bodies(broker.peek_many("q", 10)) == ["d"]
        raise RuntimeError("undo")
    assert rows(target) == before
    assert bodies(broker.peek_many("q", 10)) == ["a", "b", "c"]


@pytest.mark.parametrize("value", [0, -1, 10000, True, False, "3", 2.0])
def test_keep_newest_bad_values_write_nothing(broker: Facade, target: Target, value: object) -> None:
    broker.write_many("q", ["a", "b", "c"])
    before = rows(target)
    exc = raised_by(lambda: broker.write("q", "new", keep_newest=value))
    assert isinstance(exc, InvalidInputError), repr(exc)
    assert "keep_newest" in str(exc)
    if not isinstance(value, int) or isinstance(value, bool):
        assert isinstance(exc, TypeError), repr(exc)
    exc = raised_by(lambda: broker.queue("q").write("new", keep_newest=value))
    assert isinstance(exc, InvalidInputError), repr(exc)
    assert rows(target) == before


# ============================================================ order="newest"
def test_newest_order_on_claims_peeks_and_moves(broker: Facade, target: Target) -> None:
    i = broker.write_many("q", [f"m{n}" for n in range(8)])
    assert broker.peek("q", order="newest") == Message("m7", i[7])
    assert broker.peek_many("q", 3, order="newest") == [Message(f"m{n}", i[n]) for n in (7, 6, 5)]
    assert broker.peek("q", order="oldest") == Message("m0", i[0])
    # Bounds are exclusive on both sides, whichever end the selection starts from.
    assert broker.peek("q", after_timestamp=i[1], before_timestamp=i[5], order="newest") == Message("m4", i[4])
    assert bodies(broker.peek_many("q", 2, after_timestamp=i[1], before_timestamp=i[5], order="newest")) == [
        "m4",
        "m3",
    ]
    assert broker.peek("q", message_id=i[2], order="newest") == Message("m2", i[2])  # order ignored

    assert broker.claim("q", order="newest") == Message("m7", i[7])
    assert broker.claim("q", before_timestamp=i[6], order="newest") == Message("m5", i[5])
    assert broker.claim_many("q", 2, order="newest") == [Message("m6", i[6]), Message("m4", i[4])]
    assert broker.claim_many("q", 5, after_timestamp=i[0], before_timestamp=i[3], order="newest") == [
        Message("m2", i[2]),
        Message("m1", i[1]),
    ]
    assert broker.claim("q", message_id=i[3], order="newest") == Message("m3", i[3])
    assert claimed_flags(target) == [0, 1, 1, 1, 1, 1, 1, 1]
    assert broker.peek("q", include_claimed=True, order="newest") == Message("m7", i[7])
    assert broker.peek_many("q", 2, include_claimed=True, order="newest") == [
        Message("m7", i[7]),
        Message("m6", i[6]),
    ]

    j = broker.write_many("src", [f"s{n}" for n in range(6)])
    assert broker.move("src", "dst", order="newest") == Message("s5", j[5])
    assert broker.move("src", "dst", after_timestamp=j[0], before_timestamp=j[3], order="newest") == Message("s2", j[2])
    assert broker.move_many("src", "dst", 2, order="newest") == [Message("s4", j[4]), Message("s3", j[3])]
    assert broker.move_many("src", "dst", 5, before_timestamp=j[1], order="newest") == [Message("s0", j[0])]
    assert broker.peek_many("src", 10) == [Message("s1", j[1])]
    assert [m.id for m in broker.peek_many("dst", 10)] == [j[0], j[2], j[3], j[4], j[5]]


def test_newest_order_on_queue_objects(broker: Facade) -> None:
    q = broker.queue("q")
    i = [q.write(f"m{n}") for n in range(6)]
    assert q.peek(order="newest") == Message("m5", i[5])
    assert q.peek_many(2, order="newest") == [Message("m5", i[5]), Message("m4", i[4])]
    assert q.claim(order="newest") == Message("m5", i[5])
    assert q.claim_many(2, order="newest") == [Message("m4", i[4]), Message("m3", i[3])]
    assert q.move_to("d", order="newest") == Message("m2", i[2])
    assert q.move_many("d", 5, order="newest") == [Message("m1", i[1]), Message("m0", i[0])]
    assert broker.peek_many("d", 5) == [Message(f"m{n}", i[n]) for n in (0, 1, 2)]


@pytest.mark.parametrize("order", ["latest", "Newest", "", None, 1])
def test_bad_order_is_refused_before_anything_happens(broker: Facade, target: Target, order: object) -> None:
    broker.write_many("q", ["a", "b"])
    before = rows(target)
    q = broker.queue("q")
    calls = {
        "claim": lambda: broker.claim("q", order=order),
        "claim_many": lambda: broker.claim_many("q", 1, order=order),
        "peek": lambda: broker.peek("q", order=order),
        "peek_many": lambda: broker.peek_many("q", 1, order=order),
        "move": lambda: broker.move("q", "d", order=order),
        "move_many": lambda: broker.move_many("q", "d", 1, order=order),
        "queue.claim": lambda: q.claim(order=order),
        "queue.peek_many": lambda: q.peek_many(1, order=order),
        "queue.move_to": lambda: q.move_to("d", order=order),
    }
    wrong = {}
    for label, call in calls.items():
        exc = raised_by(call)
        if not isinstance(exc, InvalidInputError) or str(exc) != "order must be 'oldest' or 'newest'":
            wrong[label] = repr(exc)
    assert wrong == {}
    assert rows(target) == before


# ============================================================ insert_messages
def test_insert_messages_keeps_exact_ids_pending(broker: Facade, target: Target) -> None:
    ahead = future_id(30)
    assert broker.insert_messages("q", [("b", fixed(2)), ("a", str(fixed(1))), ("z", ahead)]) == 3
    assert rows(target, "q") == [("q", "a", fixed(1), 0), ("q", "b", fixed(2), 0), ("q", "z", ahead, 0)]
    assert int(meta(target)["last_ts"]) >= ahead + 1
    after = broker.write("q", "next")
    assert after > ahead
    assert broker.claim("q") == Message("a", fixed(1))  # ordered by ID, not by insertion
    assert broker.queue("q").insert_messages([("c", fixed(3))]) == 1
    assert broker.peek_many("q", 10) == [
        Message("b", fixed(2)),
        Message("c", fixed(3)),
        Message("z", ahead),
        Message("next", after),
    ]
    assert broker.insert_messages("q", []) == 0


def test_insert_messages_refusals_insert_nothing(broker: Facade, target: Target) -> None:
    existing = broker.write("q", "x")
    before = rows(target)
    last_ts = meta(target)["last_ts"]

    exc = raised_by(lambda: broker.insert_messages("q", [("ok", fixed(1)), ("zero", 0)]))
    assert isinstance(exc, InvalidInputError), repr(exc)
    for batch in ([("a", fixed(1)), ("b", fixed(1))], [("a", fixed(1)), ("dup", existing)]):
        exc = raised_by(functools.partial(broker.insert_messages, "q", batch))
        assert isinstance(exc, IntegrityError), repr(exc)
    exc = raised_by(lambda: broker.queue("q").insert_messages([("a", fixed(5)), ("b", str(fixed(5)))]))
    assert isinstance(exc, IntegrityError), repr(exc)
    assert isinstance(raised_by(lambda: broker.insert_messages("bad name", [("a", fixed(1))])), QueueNameError)
    assert isinstance(raised_by(lambda: broker.insert_messages("q", [("a", "123")])), InvalidInputError)
    assert rows(target) == before
    assert meta(target)["last_ts"] == last_ts


# ========================================================= find_message_ids
def test_find_message_ids_is_a_literal_substring_search(broker: Facade) -> None:
    i = broker.write_many("q", ["alpha-1", "beta", "alpha-2", "xxalphaxx", "a%b_c", "abc", "ALPHA"])
    other = broker.write("other", "alpha-3")
    assert broker.claim("q", message_id=i[2]) is not None
    assert broker.find_message_ids("q", "alpha") == [i[0], i[3]]
    assert broker.find_message_ids("q", "alpha", include_claimed=True) == [i[0], i[2], i[3]]
    assert broker.find_message_ids("q", "alpha", limit=1) == [i[0]]
    assert broker.find_message_ids("q", "alpha", after_timestamp=i[0]) == [i[3]]
    assert broker.find_message_ids("q", "alpha", before_timestamp=i[3], include_claimed=True) == [i[0], i[2]]
    assert broker.find_message_ids("q", "%b_") == [i[4]]  # no LIKE wildcards
    assert broker.find_message_ids("q", "a_c") == []
    assert broker.find_message_ids("q", "ALP") == [i[6]]  # case-sensitive
    assert broker.find_message_ids("other", "alpha") == [other]
    assert broker.find_message_ids("missing", "alpha") == []
    assert broker.queue("q").find_message_ids("beta") == [i[1]]
    assert broker.queue("q").find_message_ids("alpha", limit=1, after_timestamp=i[0]) == [i[3]]


def test_find_message_ids_limits_and_needle_rules(broker: Facade) -> None:
    ids = broker.write_many("q", [f"needle {n}" for n in range(1001)])
    assert broker.find_message_ids("q", "needle", limit=1000) == ids[:1000]
    assert broker.find_message_ids("q", "needle") == ids[:100]
    assert broker.find_message_ids("q", "dle ") == ids[:100]  # three non-whitespace characters suffice
    assert broker.find_message_ids("q", "x" * 1024) == []
    refused: list[tuple[str, object, object]] = [
        ("value", "ab", 100),
        ("value", "  ab\t\n ", 100),
        ("value", "x" * 1025, 100),
        ("value", "needle", 0),
        ("value", "needle", 1001),
        ("type", "needle", True),
        ("type", "needle", "5"),
        ("type", b"needle", 100),
        ("type", None, 100),
    ]
    wrong = []
    for kind, needle, limit in refused:
        exc = raised_by(functools.partial(broker.find_message_ids, "q", needle, limit=limit))
        if not isinstance(exc, InvalidInputError) or (kind == "type" and not isinstance(exc, TypeError)):
            wrong.append((needle if not isinstance(needle, str) else needle[:10], limit, repr(exc)))
    assert wrong == []


# ================================================================ has_pending
def test_has_pending_counts_unclaimed_rows_after_a_bound(broker: Facade) -> None:
    assert broker.has_pending("q") is False
    a = broker.write("q", "a")
    assert broker.has_pending("q") is True
    assert broker.has_pending("q", after_timestamp=a) is False  # exclusive
    assert broker.has_pending("q", after_timestamp=a - 1) is True
    b = broker.write("q", "b")
    assert broker.has_pending("q", after_timestamp=a) is True
    assert broker.claim("q", message_id=b) is not None
    assert broker.has_pending("q", after_timestamp=a) is False  # a claimed row is not pending
    assert broker.has_pending("q") is True
    assert broker.queue("q").has_pending() is True
    assert broker.queue("q").has_pending(after_timestamp=a) is False
    assert broker.claim("q") is not None
    assert broker.has_pending("q") is False
    assert broker.queue_exists("q") is True
    assert broker.has_pending("other") is False
    for bad in ("abc", True, -1, 2**63):
        assert isinstance(raised_by(functools.partial(broker.has_pending, "q", after_timestamp=bad)), InvalidInputError)


# ===================================================================== status
def test_status_counts_every_row_and_reports_last_ts(broker: Facade, target: Target) -> None:
    empty = broker.status()
    assert (empty.total_messages, empty.last_timestamp) == (0, int(meta(target)["last_ts"]))
    broker.write_many("q", ["a", "b", "c"])
    broker.write("r", "d")
    assert broker.claim("q") is not None
    status = broker.status()
    assert status.total_messages == 4  # claimed rows count until vacuumed
    assert status.last_timestamp == int(meta(target)["last_ts"])
    assert status.db_size == target.storage_size()
    assert status == (status.total_messages, status.last_timestamp, status.db_size)

    ahead = future_id(20)
    broker.insert_messages("r", [("e", ahead)])
    assert broker.status().last_timestamp == int(meta(target)["last_ts"]) >= ahead + 1
    broker.vacuum()
    assert broker.status().total_messages == 4


# ================================================================== broadcast
def test_broadcast_to_listed_queues_reaches_only_existing_ones(broker: Facade, target: Target) -> None:
    broker.write("a", "seed")
    broker.write("b", "seed")
    assert broker.claim("b") is not None  # only a claimed row: b still exists
    broker.write("c", "seed")
    assert broker.broadcast("hi", queues=["a", "b", "missing", "a"]) == 2
    assert bodies(broker.peek_many("a", 10)) == ["seed", "hi"]
    assert bodies(broker.peek_many("b", 10)) == ["hi"]
    assert bodies(broker.peek_many("c", 10)) == ["seed"]
    assert not broker.queue_exists("missing")
    assert broker.broadcast("none", queues=[]) == 0
    assert broker.broadcast("gen", queues=(q for q in ["c"])) == 1
    assert bodies(broker.peek_many("c", 10)) == ["seed", "gen"]

    before = rows(target)
    exc = raised_by(lambda: broker.broadcast("x", pattern="*", queues=["a"]))
    assert isinstance(exc, InvalidInputError), repr(exc)
    broker.add_alias("w", "a")
    exc = raised_by(lambda: broker.broadcast("x", queues=["@w"]))  # aliases are not resolved here
    assert isinstance(exc, InvalidInputError), repr(exc)
    assert broker.broadcast("x", pattern="@w") == 0
    assert rows(target) == before


# ============================================================ return_messages
def test_return_messages_makes_claims_pending_again(broker: Facade, target: Target) -> None:
    ids = broker.write_many("q", ["a", "b", "c"])
    taken = broker.claim_many("q", 2)
    assert claimed_flags(target) == [1, 1, 0]
    assert broker.return_messages("q", taken) is None
    assert rows(target) == [("q", "a", ids[0], 0), ("q", "b", ids[1], 0), ("q", "c", ids[2], 0)]
    assert broker.claim("q") == Message("a", ids[0])

    broker.add_alias("w", "q")
    again = broker.claim("@w")
    assert again == Message("b", ids[1])
    broker.return_messages("@w", iter([again]))
    assert broker.peek_many("q", 10) == [Message("b", ids[1]), Message("c", ids[2])]


def test_return_messages_restores_a_vacuumed_row(broker: Facade, target: Target) -> None:
    ids = broker.write_many("q", ["a", "b"])
    taken = broker.claim("q")
    assert taken == Message("a", ids[0])
    broker.vacuum()
    assert rows(target) == [("q", "b", ids[1], 0)]
    broker.return_messages("q", [taken])
    assert rows(target) == [("q", "a", ids[0], 0), ("q", "b", ids[1], 0)]
    assert broker.claim("q") == Message("a", ids[0])
