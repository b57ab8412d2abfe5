"""ClaimStream (exactly-once / at-least-once) and PeekStream (keyset paging)."""

from __future__ import annotations

import pytest

from sansio_broker import (
    BusyError,
    DatabaseError,
    InvalidInputError,
    InvalidTypeError,
    Message,
    MessageIdError,
    QueueNameError,
    TransactionError,
)
from sansio_broker.driver import (
    Begin,
    ClaimStream,
    Commit,
    Execute,
    Fetch,
    LockVacuumFile,
    PeekStream,
    Rollback,
    Sleep,
    UnlockVacuumFile,
)
from sansio_broker.testing import Stepper, run_scripted, run_with
from tests.core.core_testkit import NOW, PENDING, SQL, FakeDb, claim_sql, housekeeping, kinds, make_session, peek_sql


# ------------------------------------------------- exactly-once (interval 1)
def test_exactly_once_stream_is_one_transaction_per_message() -> None:
    session = make_session()
    stream = ClaimStream(session, "q")
    assert stream.at_least_once is False
    statement = Execute(claim_sql(PENDING), ("q", 1), Fetch.ALL, "q")
    batch, commands = run_scripted(stream.next_batch(), [None, [("a", 1)], None])
    assert batch == [Message("a", 1)]
    assert commands == [Begin(), statement, Commit()]  # committed before it is handed over
    assert session.stream_holding_lock is None
    batch, commands = run_scripted(stream.next_batch(), [None, [], None])
    assert batch == []
    assert commands == [Begin(), statement, Commit()]
    assert stream.done is True
    batch, commands = run_scripted(stream.next_batch(), [])
    assert (batch, commands) == ([], [])


def test_exactly_once_stream_passes_bounds_and_counts_mutations() -> None:
    session = make_session(auto_vacuum_interval=2)
    stream = ClaimStream(session, "q", after=5, before=50)
    db = FakeDb().answer(claim_sql(PENDING + " AND ts > ? AND ts < ?"), [("m", 7)]).answer(SQL.OVERALL_STATS, (0, 1))
    _, commands = run_with(stream.next_batch(), db)
    assert commands[1] == Execute(claim_sql(PENDING + " AND ts > ? AND ts < ?"), ("q", 5, 50, 1), Fetch.ALL, "q")
    assert session.core.mutations == 1
    assert housekeeping(session, db) == []  # one claim of an interval of 2: no check yet
    _, commands = run_with(stream.next_batch(), db)
    assert commands[-1] == Commit()  # the check is not part of the batch
    assert session.core.mutations == 2
    assert housekeeping(session, db) == [Execute(SQL.OVERALL_STATS, (), Fetch.ONE)]
    assert session.core.mutations == 0


def test_exactly_once_stream_lets_the_consumer_write_between_messages() -> None:
    session = make_session()
    stream = ClaimStream(session, "q")
    db = FakeDb().answer(claim_sql(PENDING), [("m", 1)])
    run_with(stream.next_batch(), db)
    result, _ = run_with(session.write("other", "x"), db)
    assert result == NOW


def test_exactly_once_stream_works_inside_an_explicit_transaction() -> None:
    session = make_session()
    run_scripted(session.begin_transaction(), [None])
    stream = ClaimStream(session, "q")
    batch, commands = run_scripted(stream.next_batch(), [[("m", 1)]])
    assert batch == [Message("m", 1)]
    assert commands == [Execute(claim_sql(PENDING), ("q", 1), Fetch.ALL, "q")]


def test_exactly_once_close_emits_nothing() -> None:
    stream = ClaimStream(make_session(), "q")
    _, commands = run_scripted(stream.close(), [])
    assert commands == []
    assert stream.done is True
    assert run_scripted(stream.next_batch(), []) == ([], [])


# ------------------------------------------------ at-least-once (interval > 1)
def test_at_least_once_batch_stays_open_until_the_next_batch() -> None:
    session = make_session()
    stream = ClaimStream(session, "q", commit_interval=3)
    assert stream.at_least_once is True
    statement = Execute(claim_sql(PENDING), ("q", 3), Fetch.ALL, "q")

    batch, commands = run_scripted(stream.next_batch(), [None, [("c", 3), ("a", 1), ("b", 2)]])
    assert batch == [Message("a", 1), Message("b", 2), Message("c", 3)]
    assert commands == [Begin(), statement]  # no Commit: the batch is still open
    assert session.stream_holding_lock is stream

    batch, commands = run_scripted(stream.next_batch(), [None, None, [("d", 4)]])
    assert batch == [Message("d", 4)]
    assert commands == [Commit(), Begin(), statement]
    assert session.core.mutations == 3

    batch, commands = run_scripted(stream.next_batch(), [None, None, [], None])
    assert batch == []
    assert commands == [Commit(), Begin(), statement, Rollback()]
    assert stream.done is True
    assert session.stream_holding_lock is None
    assert session.core.mutations == 4

    assert run_scripted(stream.next_batch(), []) == ([], [])


def test_at_least_once_close_rolls_back_the_open_batch() -> None:
    session = make_session()
    stream = ClaimStream(session, "q", commit_interval=2)
    run_scripted(stream.next_batch(), [None, [("a", 1), ("b", 2)]])
    _, commands = run_scripted(stream.close(), [None])
    assert commands == [Rollback()]
    assert session.stream_holding_lock is None
    assert session.core.mutations == 0
    assert run_scripted(stream.next_batch(), []) == ([], [])
    # The connection is free again.
    result, _ = run_with(session.write("q", "after"), FakeDb())
    assert result == NOW


def test_at_least_once_close_swallows_a_failing_rollback() -> None:
    stream = ClaimStream(make_session(), "q", commit_interval=2)
    run_scripted(stream.next_batch(), [None, [("a", 1)]])
    result, commands = run_scripted(stream.close(), [DatabaseError("no transaction is active")])
    assert result is None
    assert commands == [Rollback()]


def test_close_without_an_open_batch_emits_nothing() -> None:
    stream = ClaimStream(make_session(), "q", commit_interval=5)
    assert run_scripted(stream.close(), []) == (None, [])


@pytest.mark.parametrize(
    "operation",
    [
        lambda s: s.write("other", "x"),
        lambda s: s.write_many("other", ["x"]),
        lambda s: s.broadcast("x"),
        lambda s: s.claim("other"),
        lambda s: s.claim_many("other", 2),
        lambda s: s.move("a", "b"),
        lambda s: s.delete_queue("a"),
        lambda s: s.delete_messages("a", [1]),
    ],
)
def test_writes_while_the_batch_holds_the_lock_fail_with_advice(operation: object) -> None:
    session = make_session()
    stream = ClaimStream(session, "q", commit_interval=2)
    run_scripted(stream.next_batch(), [None, [("a", 1)]])
    step = Stepper(operation(session))  # type: ignore[operator]
    with pytest.raises(TransactionError, match=r"close\(\) the stream"):
        step.start()
    assert step.commands == []


def test_transaction_and_vacuum_refused_while_the_batch_holds_the_lock() -> None:
    session = make_session()
    stream = ClaimStream(session, "q", commit_interval=2)
    run_scripted(stream.next_batch(), [None, [("a", 1)]])
    with pytest.raises(TransactionError, match="close"):
        session.begin_transaction()
    with pytest.raises(TransactionError, match="close"):
        session.vacuum()
    other = ClaimStream(session, "r", commit_interval=2)
    with pytest.raises(TransactionError, match="close"):
        Stepper(other.next_batch()).start()
    # reads are fine: they run inside the open batch
    result, _ = run_scripted(session.peek("q"), [[]])
    assert result is None


def test_at_least_once_stream_inside_an_explicit_transaction_is_refused() -> None:
    session = make_session()
    run_scripted(session.begin_transaction(), [None])
    with pytest.raises(TransactionError, match="commit_interval=1"):
        ClaimStream(session, "q", commit_interval=2)


def test_at_least_once_batch_refused_when_a_transaction_was_opened_after_creation() -> None:
    session = make_session()
    stream = ClaimStream(session, "q", commit_interval=2)
    run_scripted(session.begin_transaction(), [None])
    step = Stepper(stream.next_batch())
    try:
        first = step.start()
    except TransactionError:
        first = None
    assert first is None, f"emitted {first!r} inside the open transaction"


def test_claim_error_rolls_back_and_ends_the_stream() -> None:
    session = make_session()
    stream = ClaimStream(session, "q", commit_interval=2)
    step = Stepper(stream.next_batch())
    step.start()
    step.send(None)
    assert step.throw(DatabaseError("boom")) == Rollback()
    with pytest.raises(DatabaseError):
        step.send(None)
    assert stream.done is True
    assert session.stream_holding_lock is None


def test_commit_error_rolls_back_and_ends_the_stream() -> None:
    session = make_session(auto_vacuum_interval=1)
    stream = ClaimStream(session, "q", commit_interval=2)
    run_scripted(stream.next_batch(), [None, [("a", 1)]])
    step = Stepper(stream.next_batch())
    assert step.start() == Commit()
    assert step.throw(DatabaseError("disk full")) == Rollback()
    with pytest.raises(DatabaseError, match="disk full"):
        step.send(None)
    assert stream.done is True
    assert session.stream_holding_lock is None
    assert session.core.mutations == 0
    assert session.core.take_auto_vacuum() is False  # the failed batch counted nothing


def test_at_least_once_begin_retries_busy() -> None:
    stream = ClaimStream(make_session(), "q", commit_interval=2)
    busy = BusyError("database is locked", 5)
    batch, commands = run_scripted(stream.next_batch(), [busy, None, None, [("a", 1)]])
    assert batch == [Message("a", 1)]
    assert kinds(commands) == ["Begin", "Sleep", "Begin", "Execute"]
    assert commands[1] == Sleep(0.05)


def test_commit_of_a_batch_makes_auto_vacuum_due_as_housekeeping_after_releasing_the_lock() -> None:
    session = make_session(auto_vacuum_interval=2)
    stream = ClaimStream(session, "q", commit_interval=2)
    statement = claim_sql(PENDING)
    db = (
        FakeDb()
        .script(statement, [("a", 1), ("b", 2)], [])
        .answer(SQL.OVERALL_STATS, (2, 2))
        .answer(SQL.ANY_CLAIMED, (0,))
    )
    run_with(stream.next_batch(), db)
    assert session.core.mutations == 0  # the batch is open: nothing counted yet
    assert housekeeping(session, db) == []
    batch, commands = run_with(stream.next_batch(), db)
    assert batch == []
    # The batch's own commands hold no vacuum: it commits, finds nothing more and ends.
    assert commands == [Commit(), Begin(), Execute(statement, ("q", 2), Fetch.ALL, "q"), Rollback()]
    assert session.stream_holding_lock is None
    assert session.core.mutations == 2
    # The check runs on its own, once the batch released the lock.
    assert housekeeping(session, db) == [
        Execute(SQL.OVERALL_STATS, (), Fetch.ONE),
        LockVacuumFile(),
        Begin(),
        Execute(SQL.ANY_CLAIMED, (), Fetch.ONE),
        Commit(),
        UnlockVacuumFile(),
    ]
    assert db.in_tx is False
    assert session.core.mutations == 0


def test_at_least_once_stream_with_bounds() -> None:
    stream = ClaimStream(make_session(), "q", commit_interval=10, after=1, before=2)
    _, commands = run_scripted(stream.next_batch(), [None, [], None])
    assert commands[1] == Execute(claim_sql(PENDING + " AND ts > ? AND ts < ?"), ("q", 1, 2, 10), Fetch.ALL, "q")


def test_claim_stream_validates_when_created() -> None:
    session = make_session()
    with pytest.raises(QueueNameError):
        ClaimStream(session, "-q")
    with pytest.raises(InvalidInputError):
        ClaimStream(session, "q", commit_interval=0)
    with pytest.raises(InvalidTypeError):
        ClaimStream(session, "q", commit_interval=1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError):
        ClaimStream(session, "q", after=True)
    with pytest.raises(MessageIdError):
        ClaimStream(session, "q", before=2**63)


# -------------------------------------------------------------- PeekStream
def test_peek_stream_pages_by_keyset_and_a_short_page_ends() -> None:
    session = make_session()
    stream = PeekStream(session, "q", page_size=2)
    page, commands = run_scripted(stream.next_batch(), [[("a", 10), ("b", 20)]])
    assert page == [Message("a", 10), Message("b", 20)]
    assert commands == [Execute(peek_sql(PENDING), ("q", 2), Fetch.ALL)]
    assert stream.done is False
    page, commands = run_scripted(stream.next_batch(), [[("c", 30)]])
    assert page == [Message("c", 30)]
    assert commands == [Execute(peek_sql(PENDING + " AND ts > ?"), ("q", 20, 2), Fetch.ALL)]
    assert stream.done is True
    assert run_scripted(stream.next_batch(), []) == ([], [])


def test_peek_stream_full_page_then_empty_page_ends() -> None:
    stream = PeekStream(make_session(), "q", page_size=1, include_claimed=True, before=99)
    page, commands = run_scripted(stream.next_batch(), [[("a", 1)]])
    assert commands == [Execute(peek_sql("queue = ? AND ts < ?"), ("q", 99, 1), Fetch.ALL)]
    page, commands = run_scripted(stream.next_batch(), [[]])
    assert page == []
    assert commands == [Execute(peek_sql("queue = ? AND ts > ? AND ts < ?"), ("q", 1, 99, 1), Fetch.ALL)]
    assert stream.done is True


def test_peek_stream_default_page_is_the_generator_batch_size() -> None:
    stream = PeekStream(make_session(generator_batch_size=7), "q", after=3)
    _, commands = run_scripted(stream.next_batch(), [[]])
    assert commands == [Execute(peek_sql(PENDING + " AND ts > ?"), ("q", 3, 7), Fetch.ALL)]


def test_peek_stream_never_takes_the_write_lock() -> None:
    session = make_session()
    stream = PeekStream(session, "q", page_size=2)
    _, commands = run_scripted(stream.next_batch(), [[("a", 1), ("b", 2)]])
    assert all(isinstance(c, Execute) for c in commands)
    assert session.stream_holding_lock is None
    result, _ = run_with(session.write("q", "x"), FakeDb())
    assert result == NOW


def test_peek_stream_close() -> None:
    stream = PeekStream(make_session(), "q")
    assert run_scripted(stream.close(), []) == (None, [])
    assert stream.done is True
    assert run_scripted(stream.next_batch(), []) == ([], [])


def test_peek_stream_validates_when_created() -> None:
    session = make_session()
    with pytest.raises(QueueNameError):
        PeekStream(session, "")
    with pytest.raises(InvalidInputError):
        PeekStream(session, "q", page_size=0)
    with pytest.raises(MessageIdError):
        PeekStream(session, "q", after=-1)
    with pytest.raises(InvalidTypeError):
        PeekStream(session, "q", before="1")  # type: ignore[arg-type]
