"""claim / peek / move / delete / inspection: the exact SQL, params and shapes."""

from __future__ import annotations

from typing import Any

import pytest

from sansio_broker import (
    DatabaseError,
    InvalidInputError,
    InvalidTypeError,
    Message,
    MessageIdError,
    QueueNameError,
    QueueStats,
    TransactionError,
)
from sansio_broker.driver import Begin, BrokerCore, Commit, Execute, ExecuteMany, Fetch, Rollback
from sansio_broker.testing import Stepper, run_scripted
from tests.core.core_testkit import PENDING, claim_sql, make_session, move_sql, peek_sql

BY_ID_PENDING = "ts = ? AND queue = ? AND claimed = 0"
ID = 1_750_000_000_000_004_096


def claim_transaction(statement: Execute) -> list[Any]:
    return [Begin(), statement, Commit()]


# ------------------------------------------------------------------- claim
def test_claim_oldest_pending() -> None:
    session = make_session()
    result, commands = run_scripted(session.claim("q"), [None, [("body", ID)], None])
    assert result == Message("body", ID)
    assert commands == claim_transaction(Execute(claim_sql(PENDING), ("q", 1), Fetch.ALL, "q"))
    assert session.core.mutations == 1


def test_claim_on_empty_queue_returns_none_and_counts_nothing() -> None:
    session = make_session(auto_vacuum_interval=1)
    result, commands = run_scripted(session.claim("q"), [None, [], None])
    assert result is None
    assert commands == claim_transaction(Execute(claim_sql(PENDING), ("q", 1), Fetch.ALL, "q"))
    assert session.core.mutations == 0
    assert session.core.take_auto_vacuum() is False  # nothing claimed: no auto-vacuum check


@pytest.mark.parametrize("message_id", [ID, str(ID)])
def test_claim_by_message_id(message_id: int | str) -> None:
    session = make_session()
    result, commands = run_scripted(session.claim("q", message_id=message_id), [None, [("b", ID)], None])
    assert result == Message("b", ID)
    assert commands[1] == Execute(claim_sql(BY_ID_PENDING), (ID, "q", 1), Fetch.ALL, "q")


@pytest.mark.parametrize("message_id", [f"  {ID}\n", f" {ID}", f"{ID}\n", f"{ID} "])
def test_claim_by_a_padded_message_id_is_refused_before_any_command(message_id: str) -> None:
    # Only exactly 19 ASCII digits spell an ID: surrounding whitespace is refused, not stripped.
    session = make_session()
    with pytest.raises(MessageIdError, match="expected exactly 19 ASCII digits"):
        session.claim("q", message_id=message_id)
    with pytest.raises(MessageIdError):
        session.claim_statement("q", 1, message_id, None, None)


@pytest.mark.parametrize(
    ("after", "before", "where", "params"),
    [
        (10, None, PENDING + " AND ts > ?", ("q", 10, 1)),
        (None, 20, PENDING + " AND ts < ?", ("q", 20, 1)),
        (10, 20, PENDING + " AND ts > ? AND ts < ?", ("q", 10, 20, 1)),
        (0, 0, PENDING + " AND ts > ? AND ts < ?", ("q", 0, 0, 1)),
    ],
)
def test_claim_bounds_are_strict_and_ordered(
    after: int | None, before: int | None, where: str, params: tuple[Any, ...]
) -> None:
    _, commands = run_scripted(make_session().claim("q", after=after, before=before), [None, [], None])
    assert commands[1] == Execute(claim_sql(where), params, Fetch.ALL, "q")


def test_claim_many_sorts_returning_rows_by_id() -> None:
    session = make_session()
    rows = [("c", 30), ("a", 10), ("b", 20)]
    result, commands = run_scripted(session.claim_many("q", 3, after=5), [None, rows, None])
    assert result == [Message("a", 10), Message("b", 20), Message("c", 30)]
    assert commands == claim_transaction(Execute(claim_sql(PENDING + " AND ts > ?"), ("q", 5, 3), Fetch.ALL, "q"))
    assert session.core.mutations == 3


def test_claim_all_uses_limit_minus_one_in_one_transaction() -> None:
    session = make_session()
    rows = [("b", 2), ("a", 1)]
    result, commands = run_scripted(session.claim_all("q", before=99), [None, rows, None])
    assert result == [Message("a", 1), Message("b", 2)]
    assert commands == claim_transaction(Execute(claim_sql(PENDING + " AND ts < ?"), ("q", 99, -1), Fetch.ALL, "q"))


def test_claim_validates_before_any_command() -> None:
    session = make_session()
    with pytest.raises(QueueNameError):
        session.claim("bad name")
    with pytest.raises(InvalidInputError, match="message_id"):
        session.claim("q", message_id=ID, after=1)
    with pytest.raises(InvalidInputError):
        session.claim("q", message_id=ID, before=1)
    with pytest.raises(MessageIdError):
        session.claim("q", message_id="123")
    with pytest.raises(InvalidTypeError):
        session.claim("q", after="5")  # type: ignore[arg-type]
    with pytest.raises(MessageIdError):
        session.claim("q", before=-1)
    with pytest.raises(InvalidInputError):
        session.claim_many("q", 0)
    with pytest.raises(InvalidTypeError):
        session.claim_many("q", True)
    with pytest.raises(QueueNameError):
        session.claim_all("")


def test_claim_statement_is_reusable() -> None:
    session = make_session()
    statement = session.claim_statement("q", 7, None, 1, 2)
    assert statement == Execute(claim_sql(PENDING + " AND ts > ? AND ts < ?"), ("q", 1, 2, 7), Fetch.ALL, "q")
    assert statement.claims == "q"  # rows are (body, id) of messages claimed from "q"


def test_select_sorts_and_wraps_rows() -> None:
    session = make_session()
    statement = Execute("X", (), Fetch.ALL)
    result, commands = run_scripted(session.select(statement), [[("b", 2), ("a", 1)]])
    assert result == [Message("a", 1), Message("b", 2)]
    assert commands == [statement]


# -------------------------------------------------------------------- peek
def test_peek_has_no_transaction_at_all() -> None:
    session = make_session(auto_vacuum_interval=1)
    result, commands = run_scripted(session.peek("q"), [[("b", ID)]])
    assert result == Message("b", ID)
    assert commands == [Execute(peek_sql(PENDING), ("q", 1), Fetch.ALL)]
    assert session.core.mutations == 0
    assert session.core.take_auto_vacuum() is False


def test_peek_empty_returns_none() -> None:
    result, _ = run_scripted(make_session().peek("q"), [[]])
    assert result is None


@pytest.mark.parametrize(
    ("kwargs", "where", "params"),
    [
        ({"include_claimed": True}, "queue = ?", ("q", 1)),
        ({"message_id": ID}, BY_ID_PENDING, (ID, "q", 1)),
        ({"message_id": str(ID), "include_claimed": True}, "ts = ? AND queue = ?", (ID, "q", 1)),
        ({"after": 3, "include_claimed": True}, "queue = ? AND ts > ?", ("q", 3, 1)),
        ({"after": 3, "before": 9}, PENDING + " AND ts > ? AND ts < ?", ("q", 3, 9, 1)),
    ],
)
def test_peek_where_fragments(kwargs: dict[str, Any], where: str, params: tuple[Any, ...]) -> None:
    _, commands = run_scripted(make_session().peek("q", **kwargs), [[]])
    assert commands == [Execute(peek_sql(where), params, Fetch.ALL)]


def test_peek_many_returns_rows_in_the_order_given() -> None:
    result, commands = run_scripted(
        make_session().peek_many("q", 5, include_claimed=True, before=100), [[("a", 1), ("b", 2)]]
    )
    assert result == [Message("a", 1), Message("b", 2)]
    assert commands == [Execute(peek_sql("queue = ? AND ts < ?"), ("q", 100, 5), Fetch.ALL)]


def test_peek_validates_before_any_command() -> None:
    session = make_session()
    with pytest.raises(InvalidInputError):
        session.peek_many("q", -1)
    with pytest.raises(InvalidInputError):
        session.peek("q", message_id=ID, after=0)
    with pytest.raises(InvalidTypeError):
        session.peek(5)  # type: ignore[arg-type]


def test_peek_is_allowed_inside_an_explicit_transaction_without_begin() -> None:
    session = make_session()
    run_scripted(session.begin_transaction(), [None])
    _, commands = run_scripted(session.peek("q"), [[]])
    assert commands == [Execute(peek_sql(PENDING), ("q", 1), Fetch.ALL)]


# -------------------------------------------------------------------- move
def test_move_oldest_pending() -> None:
    session = make_session()
    result, commands = run_scripted(session.move("src", "dst"), [None, [("m", ID)], None])
    assert result == Message("m", ID)
    assert commands == claim_transaction(Execute(move_sql(PENDING), ("dst", "src", 1), Fetch.ALL))
    assert session.core.mutations == 1


def test_move_by_id_moves_claimed_messages_too_by_default() -> None:
    _, commands = run_scripted(make_session().move("src", "dst", message_id=str(ID)), [None, [("m", ID)], None])
    assert commands[1] == Execute(move_sql("ts = ? AND queue = ?"), ("dst", ID, "src", 1), Fetch.ALL)


def test_move_by_id_with_require_unclaimed() -> None:
    _, commands = run_scripted(
        make_session().move("src", "dst", message_id=ID, require_unclaimed=True), [None, [], None]
    )
    assert commands[1] == Execute(move_sql(BY_ID_PENDING), ("dst", ID, "src", 1), Fetch.ALL)


def test_move_without_id_and_require_unclaimed_false() -> None:
    _, commands = run_scripted(make_session().move("src", "dst", after=4, require_unclaimed=False), [None, [], None])
    assert commands[1] == Execute(move_sql("queue = ? AND ts > ?"), ("dst", "src", 4, 1), Fetch.ALL)


def test_move_returns_none_when_nothing_moved() -> None:
    result, _ = run_scripted(make_session().move("a", "b"), [None, [], None])
    assert result is None


def test_move_many_sorts_and_counts() -> None:
    session = make_session()
    result, commands = run_scripted(
        session.move_many("src", "dst", 2, after=1, before=50), [None, [("y", 20), ("x", 10)], None]
    )
    assert result == [Message("x", 10), Message("y", 20)]
    assert commands[1] == Execute(move_sql(PENDING + " AND ts > ? AND ts < ?"), ("dst", "src", 1, 50, 2), Fetch.ALL)
    assert session.core.mutations == 2


def test_move_all_loops_batches_until_a_short_one() -> None:
    session = make_session(generator_batch_size=2)
    statement = Execute(move_sql(PENDING), ("dst", "src", 2), Fetch.ALL)
    script = [None, [("a", 1), ("b", 2)], None, None, [("c", 3), ("d", 4)], None, None, [("e", 5)], None]
    result, commands = run_scripted(session.move_all("src", "dst"), script)
    assert result == 5
    assert commands == claim_transaction(statement) * 3
    assert session.core.mutations == 5


def test_move_all_stops_on_an_empty_batch() -> None:
    session = make_session(generator_batch_size=2)
    script = [None, [("a", 1), ("b", 2)], None, None, [], None]
    result, commands = run_scripted(session.move_all("src", "dst", before=9), script)
    assert result == 2
    statement = Execute(move_sql(PENDING + " AND ts < ?"), ("dst", "src", 9, 2), Fetch.ALL)
    assert commands == claim_transaction(statement) * 2


def test_move_all_of_an_empty_queue() -> None:
    result, commands = run_scripted(make_session().move_all("a", "b"), [None, [], None])
    assert result == 0
    assert len(commands) == 3


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.move("q", "q"),
        lambda s: s.move_many("q", "q", 3),
        lambda s: s.move_all("q", "q"),
        lambda s: s.move("q", "q", message_id=ID),
    ],
)
def test_move_to_itself_is_refused_before_any_command(call: Any) -> None:
    with pytest.raises(InvalidInputError, match="cannot be the same"):
        call(make_session())


def test_move_validates_names_and_selection() -> None:
    session = make_session()
    with pytest.raises(QueueNameError):
        session.move("src", "bad/dst")
    with pytest.raises(QueueNameError):
        session.move(".src", "dst")
    with pytest.raises(InvalidInputError):
        session.move("a", "b", message_id=ID, after=1)
    with pytest.raises(InvalidInputError):
        session.move_many("a", "b", 0)


# ------------------------------------------------------------------ delete
def test_delete_queue() -> None:
    session = make_session(auto_vacuum_interval=1)
    result, commands = run_scripted(session.delete_queue("q"), [None, 4, None])
    assert result == 4
    assert commands == [
        Begin(),
        Execute("DELETE FROM messages WHERE queue = ?", ("q",), Fetch.ROWCOUNT),
        Commit(),
    ]
    assert session.core.mutations == 0  # deletes are not counted toward auto-vacuum
    assert session.core.take_auto_vacuum() is False


def test_delete_all() -> None:
    result, commands = run_scripted(make_session().delete_all(), [None, 9, None])
    assert result == 9
    assert commands == [Begin(), Execute("DELETE FROM messages", (), Fetch.ROWCOUNT), Commit()]


def test_delete_messages_uses_the_temp_table_sequence() -> None:
    session = make_session()
    result, commands = run_scripted(
        session.delete_messages("q", [ID, str(ID + 1), ID]), [None, None, None, None, 2, None, None]
    )
    assert result == 2
    assert commands == [
        Begin(),
        Execute(
            "CREATE TEMP TABLE IF NOT EXISTS simplebroker_delete_message_ids (\n"
            "    ts INTEGER PRIMARY KEY\n) WITHOUT ROWID"
        ),
        Execute("DELETE FROM simplebroker_delete_message_ids"),
        ExecuteMany(
            "INSERT OR IGNORE INTO simplebroker_delete_message_ids(ts) VALUES (?)",
            [(ID,), (ID + 1,), (ID,)],
        ),
        Execute(
            "DELETE FROM messages\nWHERE queue = ?\nAND ts IN (SELECT ts FROM simplebroker_delete_message_ids)",
            ("q",),
            Fetch.ROWCOUNT,
        ),
        Execute("DELETE FROM simplebroker_delete_message_ids"),
        Commit(),
    ]


def test_delete_messages_with_no_ids_touches_no_table() -> None:
    result, commands = run_scripted(make_session().delete_messages("q", []), [None, None])
    assert result == 0
    assert all(not isinstance(c, Execute | ExecuteMany) for c in commands)


def test_delete_messages_validates_before_any_command() -> None:
    session = make_session()
    with pytest.raises(InvalidTypeError):
        session.delete_messages("q", str(ID))  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError):
        session.delete_messages("q", ID)  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError):
        session.delete_messages("q", b"1")  # type: ignore[arg-type]
    with pytest.raises(MessageIdError):
        session.delete_messages("q", [ID, "12"])
    with pytest.raises(InvalidTypeError):
        session.delete_messages("q", [True])
    with pytest.raises(QueueNameError):
        session.delete_queue("-q")


def test_delete_error_rolls_back_and_is_raised() -> None:
    step = Stepper(make_session().delete_all())
    step.start()
    step.send(None)
    assert step.throw(DatabaseError("boom")) == Rollback()
    with pytest.raises(DatabaseError, match="boom"):
        step.send(None)


# -------------------------------------------------------------- inspection
def test_list_queues() -> None:
    result, commands = run_scripted(make_session().list_queues(), [[("a",), ("b",)]])
    assert result == ["a", "b"]
    assert commands == [Execute("SELECT DISTINCT queue FROM messages ORDER BY queue", (), Fetch.ALL)]


def test_queue_stats() -> None:
    result, commands = run_scripted(make_session().queue_stats("q"), [(3, 5)])
    assert result == QueueStats("q", 3, 5)
    assert result.claimed == 2
    assert commands == [
        Execute(
            "SELECT COALESCE(SUM(CASE WHEN claimed = 0 THEN 1 ELSE 0 END), 0) as unclaimed, "
            "COUNT(*) as total FROM messages WHERE queue = ?",
            ("q",),
            Fetch.ONE,
        )
    ]


def test_all_queue_stats() -> None:
    result, commands = run_scripted(make_session().all_queue_stats(), [[("a", 1, 2), ("b", 0, 4)]])
    assert result == [QueueStats("a", 1, 2), QueueStats("b", 0, 4)]
    assert [s.claimed for s in result] == [1, 4]
    assert commands == [
        Execute(
            "SELECT queue, SUM(CASE WHEN claimed = 0 THEN 1 ELSE 0 END) as unclaimed, "
            "COUNT(*) as total FROM messages GROUP BY queue ORDER BY queue",
            (),
            Fetch.ALL,
        )
    ]


@pytest.mark.parametrize(("row", "expected"), [((1,), True), ((0,), False)])
def test_queue_exists(row: tuple[int], expected: bool) -> None:
    result, commands = run_scripted(make_session().queue_exists("q"), [row])
    assert result is expected
    assert commands == [Execute("SELECT EXISTS( SELECT 1 FROM messages WHERE queue = ? LIMIT 1 )", ("q",), Fetch.ONE)]


def test_inspection_validates_queue_names() -> None:
    session = make_session()
    with pytest.raises(QueueNameError):
        session.queue_stats("a b")
    with pytest.raises(QueueNameError):
        session.queue_exists("")


def test_inspection_is_allowed_while_a_stream_holds_the_lock() -> None:
    session = make_session()
    session.stream_holding_lock = object()
    result, _ = run_scripted(session.list_queues(), [[]])
    assert result == []
    with pytest.raises(TransactionError):
        run_scripted(session.delete_all(), [])


# ---------------------------------------------------------- setup / values
def test_setup_connection_pragmas_follow_the_config() -> None:
    _, commands = run_scripted(make_session().setup_connection("test.db"), [None] * 4)
    assert commands == [
        Execute("PRAGMA busy_timeout=5000"),
        Execute("PRAGMA wal_autocheckpoint=1000"),
        Execute("PRAGMA cache_size=-10240"),
        Execute("PRAGMA synchronous=FULL"),
    ]
    session = make_session(busy_timeout_ms=250, wal_autocheckpoint=0, cache_mb=2, sync_mode="normal")
    _, commands = run_scripted(session.setup_connection("test.db"), [None] * 4)
    assert [c.sql for c in commands if isinstance(c, Execute)] == [
        "PRAGMA busy_timeout=250",
        "PRAGMA wal_autocheckpoint=0",
        "PRAGMA cache_size=-2048",
        "PRAGMA synchronous=NORMAL",
    ]


def test_message_and_stats_values() -> None:
    message = Message("hello", 42)
    body, ts = message
    assert (body, ts, message.timestamp, message.id) == ("hello", 42, 42, 42)
    queue, pending, total = QueueStats("q", 1, 3)
    assert (queue, pending, total, QueueStats("q", 1, 3).claimed) == ("q", 1, 3, 2)


def test_core_session_factory_gives_independent_sessions() -> None:
    session = make_session()
    other = session.core.session()
    assert other is not session
    assert other.core is session.core
    assert other.in_transaction is False and other.stream_holding_lock is None


def test_plain_claim_statements_are_reused_and_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from sansio_broker import core as core_module

    monkeypatch.setattr(core_module, "PLAIN_CLAIM_CACHE_SIZE", 3)
    core = BrokerCore()
    first = core.plain_claim("q0")
    assert core.plain_claim("q0") is first  # built once per queue
    for n in range(1, 10):
        statement = core.plain_claim(f"q{n}")
        assert statement.params == (f"q{n}", 1)
        assert len(core._plain_claims) <= 3
    # An evicted name is rebuilt identically.
    assert core.plain_claim("q0") == first
