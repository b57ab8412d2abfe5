"""The SimpleBroker operations of issue 12 in the session: ``write(keep_newest=)``,
``order="newest"`` on bounded claims, peeks and moves, ``broadcast(queues=)``,
``find_message_ids``, ``has_pending``, ``status``; their argument checks
against SimpleBroker 8.7.2's own validators; and every new operation
through the second, fake dialect of ``test_core_dialect``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from simplebroker._delivery import validate_keep_newest
from simplebroker._message_search import validate_body_contains, validate_body_search_limit
from simplebroker._selection import validate_selection_order
from simplebroker._sql import sqlite as sb_sql

from sansio_broker import (
    BrokerStatus,
    IntegrityError,
    InvalidInputError,
    InvalidTypeError,
    Message,
    MessageIdError,
    QueueNameError,
)
from sansio_broker.commands import Command, Operation
from sansio_broker.driver import Begin, Commit, Execute, ExecuteMany, Fetch, ReadClock
from sansio_broker.streams import AliasStream, open_stream
from sansio_broker.testing import run_scripted, run_with
from sansio_broker.validation import check_keep_newest, check_needle, check_order, check_search_limit
from tests.core.core_testkit import NOW, PENDING, SQL, FakeDb, claim_sql, make_session, move_sql, peek_sql
from tests.core.test_core_dialect import FAKE, TAG, FakeServer, assert_all_fake, fake_session

ADVANCE = "UPDATE meta SET value = ? WHERE key = 'last_ts' AND value < ? RETURNING value"
INSERT = "INSERT INTO messages (queue, body, ts) VALUES (?, ?, ?)"
LIST_QUEUES = "SELECT DISTINCT queue FROM messages ORDER BY queue"
READ_LAST = "SELECT value FROM meta WHERE key = 'last_ts'"
CLAIM_OLDER_PENDING = (
    "UPDATE messages\nSET claimed = 1\nWHERE queue = ? AND claimed = 0 AND ts < (\n"
    "    SELECT ts\n    FROM messages\n    WHERE queue = ? AND claimed = 0\n"
    "    ORDER BY ts DESC\n    LIMIT 1 OFFSET ?\n)"
)
HAS_PENDING = "SELECT EXISTS(SELECT 1 FROM messages WHERE queue = ? AND claimed = 0 LIMIT 1)"
HAS_PENDING_AFTER = "SELECT EXISTS(SELECT 1 FROM messages WHERE queue = ? AND claimed = 0 AND ts > ? LIMIT 1)"
COUNT_MESSAGES = "SELECT COUNT(*) FROM messages"
DATABASE_SIZE = "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"
ORDER = "order must be 'oldest' or 'newest'"
ID = 1_750_000_000_000_004_096


def flat(sql: str) -> str:
    return " ".join(sql.split())


def newest(sql: str) -> str:
    """A bounded selection's statement, newest first."""
    assert sql.count("ORDER BY ts ASC") == 1
    return sql.replace("ORDER BY ts ASC", "ORDER BY ts DESC")


def test_statements_are_the_contract_text_and_simplebrokers() -> None:
    assert SQL.CLAIM_OLDER_PENDING == CLAIM_OLDER_PENDING
    assert (SQL.HAS_PENDING, SQL.HAS_PENDING_AFTER) == (HAS_PENDING, HAS_PENDING_AFTER)
    assert (SQL.COUNT_MESSAGES, SQL.DATABASE_SIZE) == (COUNT_MESSAGES, DATABASE_SIZE)
    assert flat(sb_sql.CLAIM_OLDER_PENDING) == flat(CLAIM_OLDER_PENDING)
    assert sb_sql.CHECK_PENDING_MESSAGES == HAS_PENDING
    assert sb_sql.CHECK_PENDING_MESSAGES_AFTER == HAS_PENDING_AFTER
    assert flat(sb_sql.GET_TOTAL_MESSAGE_COUNT) == COUNT_MESSAGES


# --------------------------------------------------- write(keep_newest=)
def test_keep_newest_claims_all_but_the_newest_in_the_same_transaction() -> None:
    session = make_session()
    result, commands = run_scripted(session.write("q", "m5", keep_newest=2), [None, NOW, (NOW,), None, None, None])
    assert result == NOW
    assert commands == [
        Begin(),
        ReadClock(),
        Execute(ADVANCE, (NOW, NOW), Fetch.ONE),
        Execute(INSERT, ("q", "m5", NOW)),
        # OFFSET N-1 counts the new message among the N kept; the rest are claimed, not deleted.
        Execute(CLAIM_OLDER_PENDING, ("q", "q", 1)),
        Commit(),
    ]
    assert session.core.mutations == 1
    assert session.take_changes() == frozenset({"q"})


@pytest.mark.parametrize(("keep", "offset"), [(1, 0), (3, 2), (9999, 9998)])
def test_keep_newest_offset(keep: int, offset: int) -> None:
    _, commands = run_with(make_session().write("q", "m", keep_newest=keep), FakeDb().answer(CLAIM_OLDER_PENDING, None))
    assert commands[-2] == Execute(CLAIM_OLDER_PENDING, ("q", "q", offset))


def test_write_without_keep_newest_claims_nothing() -> None:
    _, commands = run_with(make_session().write("q", "m", keep_newest=None), FakeDb())
    assert all(not (isinstance(c, Execute) and c.sql == CLAIM_OLDER_PENDING) for c in commands)


def test_keep_newest_retries_a_duplicate_id_like_any_write() -> None:
    # meta.last_ts fell behind the stored rows: the insert collides, the
    # transaction rolls back, last_ts is resynced, and the write runs again.
    db = FakeDb().answer(SQL.MAX_TS, (NOW + 7,)).answer(CLAIM_OLDER_PENDING, None)
    db.script(INSERT, IntegrityError("UNIQUE constraint failed: messages.ts"))
    result, commands = run_with(make_session().write("q", "m", keep_newest=1), db)
    claims = [c for c in commands if isinstance(c, Execute) and c.sql == CLAIM_OLDER_PENDING]
    assert claims == [Execute(CLAIM_OLDER_PENDING, ("q", "q", 0))]  # only in the attempt that committed
    assert result == NOW + 8
    assert [type(c).__name__ for c in commands].count("Rollback") == 1


@pytest.mark.parametrize("value", [0, 10000, -1, True, False, 2.0, "3", [1]])
def test_keep_newest_refused_before_any_statement(value: Any) -> None:
    with pytest.raises(InvalidInputError, match="keep_newest must be"):
        make_session().write("q", "m", keep_newest=value)


# ---------------------------------------------------------------- order=
def test_claim_newest_takes_the_highest_id() -> None:
    session = make_session()
    result, commands = run_scripted(session.claim("q", order="newest"), [None, [("e", ID)], None])
    assert result == Message("e", ID)
    assert commands == [Begin(), Execute(newest(claim_sql(PENDING)), ("q", 1), Fetch.ALL, "q"), Commit()]
    _, commands = run_scripted(session.claim("q", order="oldest"), [None, [], None])
    assert commands[1] == Execute(claim_sql(PENDING), ("q", 1), Fetch.ALL, "q")


def test_claim_newest_within_bounds() -> None:
    where = PENDING + " AND ts > ? AND ts < ?"
    _, commands = run_scripted(make_session().claim("q", after=1, before=9, order="newest"), [None, [], None])
    assert commands[1] == Execute(newest(claim_sql(where)), ("q", 1, 9, 1), Fetch.ALL, "q")


def test_order_is_ignored_by_id_but_still_checked() -> None:
    by_id = "ts = ? AND queue = ? AND claimed = 0"
    result, commands = run_scripted(make_session().claim("q", message_id=ID, order="newest"), [None, [("b", ID)], None])
    assert result == Message("b", ID)
    assert commands[1] == Execute(newest(claim_sql(by_id)), (ID, "q", 1), Fetch.ALL, "q")  # one row either way
    with pytest.raises(InvalidInputError, match=f"^{ORDER}$"):
        make_session().claim("q", message_id=ID, order="latest")


def test_claim_many_newest_hands_over_newest_first() -> None:
    # SimpleBroker: read_many(2, order="newest") on a..e -> ["e", "d"]
    session = make_session()
    rows = [("d", 4), ("e", 5)]
    result, commands = run_scripted(session.claim_many("q", 2, order="newest"), [None, rows, None])
    assert result == [Message("e", 5), Message("d", 4)]
    assert commands[1] == Execute(newest(claim_sql(PENDING)), ("q", 2), Fetch.ALL, "q")
    assert session.core.mutations == 2
    result, _ = run_scripted(session.claim_many("q", 2), [None, [("b", 2), ("a", 1)], None])
    assert result == [Message("a", 1), Message("b", 2)]


def test_peek_and_peek_many_newest() -> None:
    one, commands = run_scripted(make_session().peek("q", order="newest"), [[("e", 5)]])
    assert one == Message("e", 5)
    assert commands == [Execute(newest(peek_sql(PENDING)), ("q", 1), Fetch.ALL)]
    rows = [("e", 5), ("d", 4)]  # the database orders a plain SELECT
    result, commands = run_scripted(make_session().peek_many("q", 2, include_claimed=True, order="newest"), [rows])
    assert result == [Message("e", 5), Message("d", 4)]
    assert commands == [Execute(newest(peek_sql("queue = ?")), ("q", 2), Fetch.ALL)]


def test_move_and_move_many_newest() -> None:
    session = make_session()
    one, commands = run_scripted(session.move("src", "dst", order="newest"), [None, [("z", 9)], None])
    assert one == Message("z", 9)
    assert commands == [Begin(), Execute(newest(move_sql(PENDING)), ("dst", "src", 1), Fetch.ALL), Commit()]
    rows = [("y", 8), ("z", 9)]
    result, commands = run_scripted(session.move_many("src", "dst", 2, after=3, order="newest"), [None, rows, None])
    assert result == [Message("z", 9), Message("y", 8)]  # SimpleBroker: move_many(..., order="newest") -> z, y
    assert commands == [
        Begin(),
        Execute(newest(move_sql(PENDING + " AND ts > ?")), ("dst", "src", 3, 2), Fetch.ALL),
        Commit(),
    ]
    assert session.take_changes() == frozenset({"dst"})


@pytest.mark.parametrize("order", ["Newest", "", "desc", None, 1, ["newest"]])
def test_a_bad_order_is_refused_before_any_statement(order: Any) -> None:
    session = make_session()
    for make in (
        lambda: session.claim("q", order=order),
        lambda: session.claim_many("q", 2, order=order),
        lambda: session.peek("q", order=order),
        lambda: session.peek_many("q", 2, order=order),
        lambda: session.move("a", "b", order=order),
        lambda: session.move_many("a", "b", 2, order=order),
    ):
        with pytest.raises(InvalidInputError, match=f"^{ORDER}$"):
            make()


# ------------------------------------------------------ broadcast(queues=)
def test_broadcast_to_listed_queues_reaches_only_those_that_exist() -> None:
    session = make_session()
    db = FakeDb().answer(LIST_QUEUES, [("a",), ("b",), ("c",)])
    count, commands = run_with(session.broadcast("hi", queues=["c", "zz", "a", "c"]), db)
    assert count == 2
    assert sorted(row[0] for row in db.inserted) == ["a", "c"]  # "zz" has no rows: not created
    assert {row[1] for row in db.inserted} == {"hi"}
    assert [type(c).__name__ for c in commands] == ["Begin", "Execute", "ReadClock", "Execute", "ExecuteMany", "Commit"]
    assert session.core.mutations == 2


def test_broadcast_to_no_listed_queue_writes_nothing() -> None:
    for queues in ([], ["zz"], iter(["zz"])):
        count, commands = run_scripted(make_session().broadcast("hi", queues=queues), [None, [("a",)], None])
        assert count == 0
        assert commands == [Begin(), Execute(LIST_QUEUES, (), Fetch.ALL), Commit()]


def test_broadcast_queues_are_literal_names_checked_first() -> None:
    session = make_session()
    with pytest.raises(InvalidInputError, match=r"^broadcast takes a pattern or a list of queues, not both$"):
        session.broadcast("hi", pattern="*", queues=["a"])
    with pytest.raises(InvalidTypeError, match=r"^queues must be an iterable of queue names, not a single str$"):
        session.broadcast("hi", queues="abc")
    with pytest.raises(InvalidTypeError):
        session.broadcast("hi", queues=b"abc")  # type: ignore[arg-type]
    with pytest.raises(QueueNameError):
        session.broadcast("hi", queues=["ok", "bad name"])
    with pytest.raises(QueueNameError):
        session.broadcast("hi", queues=["@w"])  # aliases are not resolved for broadcast


# ------------------------------------------------------- find_message_ids
def find_sql(*conditions: str) -> str:
    return "SELECT ts FROM messages\nWHERE " + " AND ".join(conditions) + "\nORDER BY ts\nLIMIT ?"


@pytest.mark.parametrize(
    ("options", "sql", "params"),
    [
        ({}, find_sql("queue = ?", "claimed = 0", "instr(body, ?) > 0"), ("q", "err", 100)),
        (
            {"include_claimed": True, "limit": 7},
            find_sql("queue = ?", "instr(body, ?) > 0"),
            ("q", "err", 7),
        ),
        (
            {"after": 10, "before": 20},
            find_sql("queue = ?", "claimed = 0", "instr(body, ?) > 0", "ts > ?", "ts < ?"),
            ("q", "err", 10, 20, 100),
        ),
        ({"after": 0}, find_sql("queue = ?", "claimed = 0", "instr(body, ?) > 0", "ts > ?"), ("q", "err", 0, 100)),
        (
            {"before": 20, "include_claimed": 1},
            find_sql("queue = ?", "instr(body, ?) > 0", "ts < ?"),
            ("q", "err", 20, 100),
        ),
    ],
)
def test_find_message_ids_is_a_literal_substring_search(
    options: dict[str, Any], sql: str, params: tuple[Any, ...]
) -> None:
    result, commands = run_scripted(make_session().find_message_ids("q", "err", **options), [[(3,), (True,)]])
    assert result == [3, 1] and all(type(i) is int for i in result)
    assert commands == [Execute(sql, params, Fetch.ALL)]  # a plain read: no transaction
    # SimpleBroker's conditions (instr, not LIKE: "%" and "_" are literal), in any order.
    theirs = sb_sql.build_find_message_ids_query(
        after_timestamp=options.get("after"),
        before_timestamp=options.get("before"),
        include_claimed=bool(options.get("include_claimed")),
    )
    conditions = flat(theirs).split(" WHERE ")[1].split(" ORDER BY ")[0].split(" AND ")
    assert sorted(conditions) == sorted(sql.split("WHERE ")[1].split("\n")[0].split(" AND "))


@pytest.mark.parametrize(
    ("args", "options", "error", "text"),
    [
        (("q", "ab"), {}, InvalidInputError, "body_contains must contain at least 3 non-whitespace characters"),
        (("q", "x" * 1025), {}, InvalidInputError, "body_contains must be at most 1024 characters"),
        (("q", 123), {}, InvalidTypeError, "body_contains must be a string"),
        (("q", "err"), {"limit": 0}, InvalidInputError, "limit must be at least 1"),
        (("q", "err"), {"limit": 1001}, InvalidInputError, "limit must be at most 1000"),
        (("q", "err"), {"limit": True}, InvalidTypeError, "limit must be an int"),
        (("q", "err"), {"after": "5"}, InvalidTypeError, "after_timestamp must be an int, not str"),
        (("q", "err"), {"before": -1}, MessageIdError, "before_timestamp=-1 is out of range"),
        (("bad name", "err"), {}, QueueNameError, "Invalid queue name 'bad name'"),
        (("@w", "err"), {}, QueueNameError, "Invalid queue name '@w'"),  # the adapter resolves aliases
    ],
)
def test_find_message_ids_refuses_before_any_statement(
    args: tuple[Any, ...], options: dict[str, Any], error: type[Exception], text: str
) -> None:
    with pytest.raises(error) as caught:
        make_session().find_message_ids(*args, **options)
    assert str(caught.value).startswith(text)


# -------------------------------------------------------- has_pending
@pytest.mark.parametrize(("answer", "expected"), [((1,), True), ((0,), False)])
def test_has_pending(answer: tuple[int], expected: bool) -> None:
    result, commands = run_scripted(make_session().has_pending("q"), [answer])
    assert result is expected
    assert commands == [Execute(HAS_PENDING, ("q",), Fetch.ONE)]
    result, commands = run_scripted(make_session().has_pending("q", after=ID), [answer])
    assert result is expected
    assert commands == [Execute(HAS_PENDING_AFTER, ("q", ID), Fetch.ONE)]


def test_has_pending_after_zero_is_a_bound() -> None:
    _, commands = run_scripted(make_session().has_pending("q", after=0), [(1,)])
    assert commands == [Execute(HAS_PENDING_AFTER, ("q", 0), Fetch.ONE)]


def test_has_pending_refuses_before_any_statement() -> None:
    with pytest.raises(QueueNameError):
        make_session().has_pending("")
    with pytest.raises(InvalidTypeError):
        make_session().has_pending("q", after=1.5)  # type: ignore[arg-type]
    with pytest.raises(MessageIdError):
        make_session().has_pending("q", after=2**63)


# ------------------------------------------------------------- status
def test_status_counts_every_row_and_reads_last_ts_and_size() -> None:
    result, commands = run_scripted(make_session().status(), [(5,), (ID,), (3 * 4096,)])
    assert result == BrokerStatus(5, ID, 12288)
    assert commands == [
        Execute(COUNT_MESSAGES, (), Fetch.ONE),
        Execute(READ_LAST, (), Fetch.ONE),
        Execute(DATABASE_SIZE, (), Fetch.ONE),
    ]
    assert all(not isinstance(c, Begin) for c in commands)


def test_status_of_a_database_without_last_ts() -> None:
    result, _ = run_scripted(make_session().status(), [(0,), None, (4096,)])
    assert result == BrokerStatus(0, 0, 4096)


# ---------------------------------------------- SimpleBroker's validators
def same_verdict(ours: Callable[[Any], Any], theirs: Callable[[Any], Any], value: Any) -> Any:
    """Both accept ``value`` (returning ours' answer) or refuse it with the same
    text, ours as the library's error of the same family."""
    try:
        expected = theirs(value)
    except (TypeError, ValueError) as exc:
        family = InvalidTypeError if isinstance(exc, TypeError) else InvalidInputError
        with pytest.raises(family) as caught:
            ours(value)
        assert str(caught.value) == str(exc)
        return caught.value
    return ours(value), expected


@pytest.mark.parametrize("value", [None, 1, 3, 9999, 0, 10000, -1, True, 2.0, "3"])
def test_check_keep_newest_is_simplebrokers(value: Any) -> None:
    verdict = same_verdict(check_keep_newest, validate_keep_newest, value)
    if isinstance(verdict, tuple):
        assert verdict[0] == verdict[1] == value


@pytest.mark.parametrize(
    "value",
    ["err", " a b c ", "ab", "a b", "\t\n ab ", "x" * 1024, " " * 1000 + "x" * 25, "x" * 1025, "日本語", 5, None],
)
def test_check_needle_is_simplebrokers(value: Any) -> None:
    verdict = same_verdict(check_needle, validate_body_contains, value)
    if isinstance(verdict, tuple):
        assert verdict[0] == verdict[1] == value


@pytest.mark.parametrize("value", [1, 100, 1000, 0, 1001, -1, True, 1.0, "5", None])
def test_check_search_limit_is_simplebrokers(value: Any) -> None:
    verdict = same_verdict(check_search_limit, validate_body_search_limit, value)
    if isinstance(verdict, tuple):
        assert verdict[0] == verdict[1] == value


@pytest.mark.parametrize("value", ["oldest", "newest", "Oldest", "", None, 5])
def test_check_order_is_simplebrokers(value: Any) -> None:
    verdict = same_verdict(check_order, validate_selection_order, value)
    if isinstance(verdict, tuple):
        assert verdict[0] is (verdict[1] == "newest")


# ------------------------------------------------------- the fake dialect
class FakeAnswers(FakeServer):
    """FakeServer, with fixed answers for the new statements."""

    def __init__(self, answers: dict[str, Any]) -> None:
        super().__init__()
        self.answers = answers

    def __call__(self, command: Command) -> Any:
        if isinstance(command, Execute) and command.sql in self.answers:
            return self.answers[command.sql]
        return super().__call__(command)


ANSWERS: dict[str, Any] = {
    FAKE.ALIAS_TARGET: ("jobs",),
    FAKE.LIST_ALIASES: [("w", "jobs")],
    FAKE.QUEUE_EXISTS: (0,),
    FAKE.RENAME_QUEUE: 3,
    FAKE.LIST_QUEUES: [("a",), ("b",)],
    FAKE.HAS_PENDING: (1,),
    FAKE.HAS_PENDING_AFTER: (0,),
    FAKE.COUNT_MESSAGES: (4,),
    FAKE.READ_LAST_TS: (NOW,),
    FAKE.DATABASE_SIZE: (8192,),
    FAKE.DUMP_PAGE: [("q", "b", 5)],
    FAKE.find_ids(include_claimed=False, after=True, before=True): [(5,)],
    FAKE.find_ids(include_claimed=True, after=False, before=False): [],
}


def fake_run(operation: Operation[Any]) -> tuple[Any, list[Command]]:
    result, commands = run_with(operation, FakeAnswers(ANSWERS))
    assert_all_fake(commands)
    return result, commands


def test_the_new_operations_send_only_the_fake_dialects_text() -> None:
    session = fake_session()
    cases: list[tuple[Operation[Any], Any]] = [
        (session.write("q", "m", keep_newest=2), NOW),
        (session.claim("q", order="newest"), Message("a", NOW - 10)),
        (session.claim_many("q", 2, order="newest"), [Message("b", NOW - 5), Message("a", NOW - 10)]),
        (session.peek_many("q", 2, order="newest"), [Message("a", NOW - 10), Message("b", NOW - 5)]),
        (session.move_many("q", "r", 2, order="newest"), [Message("b", NOW - 5), Message("a", NOW - 10)]),
        (session.broadcast("m", queues=["b", "c"]), 1),
        (session.resolve_queue("@w"), "jobs"),
        (session.list_aliases(), [("w", "jobs")]),
        (session.add_alias("w2", "jobs2"), False),
        (session.remove_alias("w"), True),
        (session.rename_queue("@w", "x"), ("jobs", "x", 3, 3, True)),
        (session.insert_messages([("q", "m", 5)]), 1),
        (session.raise_last_id(9), None),
        (session.find_message_ids("q", "err", after=1, before=9), [5]),
        (session.has_pending("q"), True),
        (session.has_pending("q", after=3), False),
        (session.status(), BrokerStatus(4, NOW, 8192)),
        (session.dump_page(NOW, ("", 0), 10), [("q", "b", 5)]),
    ]
    for operation, expected in cases:
        assert fake_run(operation)[0] == expected


def test_the_fake_dialect_renders_the_new_statements() -> None:
    session = fake_session()
    _, commands = fake_run(session.write("q", "m", keep_newest=2))
    assert Execute(FAKE.CLAIM_OLDER_PENDING, ("q", "q", 1)) in commands
    assert "claimed = FALSE AND ts < (" in FAKE.CLAIM_OLDER_PENDING and "OFFSET %s" in FAKE.CLAIM_OLDER_PENDING
    _, commands = fake_run(session.peek("q", order="newest"))
    assert commands == [
        Execute(
            TAG + "SELECT body, ts FROM messages\nWHERE queue = %s AND claimed = FALSE\nORDER BY ts DESC\nLIMIT %s",
            ("q", 1),
            Fetch.ALL,
        )
    ]
    _, commands = fake_run(session.status())
    assert commands[-1] == Execute(TAG + "SELECT pg_database_size(current_database())", (), Fetch.ONE)
    _, commands = fake_run(session.insert_messages([("q", "m", 5), ("q", "n", 6)]))
    assert commands[1:3] == [
        Execute(FAKE.RAISE_LAST_TS, (7, 7)),
        ExecuteMany(FAKE.INSERT_EXACT, [("q", "m", 5), ("q", "n", 6)]),
    ]
    _, commands = fake_run(session.find_message_ids("q", "err", include_claimed=True))
    assert commands == [
        Execute(
            TAG + "SELECT ts FROM messages\nWHERE queue = %s AND instr(body, %s) > 0\nORDER BY ts\nLIMIT %s",
            ("q", "err", 100),
            Fetch.ALL,
        )
    ]


def test_an_alias_stream_through_the_fake_dialect() -> None:
    stream = open_stream(fake_session(), "@w")
    assert isinstance(stream, AliasStream)
    batch, commands = fake_run(stream.next_batch())
    assert batch == [Message("a", NOW - 10)]
    assert commands[0] == Execute(FAKE.ALIAS_TARGET, ("w",), Fetch.ONE)
    assert isinstance(commands[2], Execute) and commands[2].params == ("jobs", 1)


# ------------------------------------------------------------ generate_id
def test_generate_id_reserves_an_id_in_a_write_transaction_without_a_row() -> None:
    db = FakeDb()
    result, commands = run_with(make_session().generate_id(), db)
    assert result == db.last_ts
    assert isinstance(commands[0], Begin) and isinstance(commands[-1], Commit)
    assert not db.inserted  # no message written
    # The next write gets a larger ID.
    written, _ = run_with(make_session().write("q", "m"), db)
    assert written > result
