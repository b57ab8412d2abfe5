"""Retry on BUSY, rollback on errors, and explicit transactions."""

from __future__ import annotations

from typing import Any

import pytest

from sansio_broker import (
    BusyError,
    DatabaseError,
    IntegrityError,
    OutcomeUnknownError,
    TimestampError,
    TransactionError,
)
from sansio_broker.driver import Begin, ClaimStream, Commit, Execute, Fetch, ReadClock, RetryPolicy, Rollback, Sleep
from sansio_broker.testing import Stepper, run_scripted, run_with
from tests.core.core_testkit import NOW, SQL, FakeDb, housekeeping, kinds, make_session

BUSY = BusyError("database is locked", 5)
CLAIM = SQL.claim(SQL.where(by_id=False, unclaimed_only=True, after=False, before=False))


# ------------------------------------------------------------ RetryPolicy
def test_retry_policy_back_off_doubles_from_50ms_and_caps_at_250ms() -> None:
    policy = RetryPolicy()
    assert policy.attempts == 8
    assert [policy.delay(n) for n in range(1, 7)] == [0.05, 0.1, 0.2, 0.25, 0.25, 0.25]
    assert RetryPolicy(first_delay=0.01, max_delay=1.0).delay(3) == pytest.approx(0.04)


# ---------------------------------------------------------- BUSY at Begin
def test_busy_at_begin_sleeps_with_back_off_and_begins_again() -> None:
    session = make_session()
    db = FakeDb().script(Begin, BUSY, BUSY, BUSY, BUSY)
    result, commands = run_with(session.write("q", "x"), db)
    assert result > NOW  # the clock moved on while sleeping
    assert kinds(commands)[:9] == ["Begin", "Sleep"] * 4 + ["Begin"]
    assert [c.seconds for c in commands if isinstance(c, Sleep)] == [0.05, 0.1, 0.2, 0.25]
    assert Rollback() not in commands  # nothing to roll back: BEGIN failed
    assert db.inserted == [("q", "x", result)]


def test_busy_at_begin_gives_up_after_the_policy_attempts() -> None:
    session = make_session()
    db = FakeDb().script(Begin, *[BusyError(f"locked {n}", 5) for n in range(8)])
    with pytest.raises(BusyError, match="locked 7: gave up after 8 attempts") as raised:
        run_with(session.write("q", "x"), db)
    assert "another connection keeps the write lock" in str(raised.value)
    assert raised.value.code == 5
    assert db.sleeps == [0.05, 0.1, 0.2, 0.25, 0.25, 0.25, 0.25]


def test_custom_attempts() -> None:
    session = make_session(retry=RetryPolicy(attempts=2, first_delay=0.5, max_delay=0.5))
    db = FakeDb().script(Begin, BUSY, BUSY)
    with pytest.raises(BusyError):
        run_with(session.claim("q"), db)
    assert db.sleeps == [0.5]


def test_single_attempt_policy_never_sleeps() -> None:
    session = make_session(retry=RetryPolicy(attempts=1))
    db = FakeDb().script(Begin, BUSY)
    with pytest.raises(BusyError):
        run_with(session.delete_all(), db)
    assert db.sleeps == []


# ---------------------------------------------------- BUSY after Begin
@pytest.mark.parametrize("where", ["advance", "insert", "commit"])
def test_busy_inside_the_transaction_rolls_back_sleeps_and_retries(where: str) -> None:
    session = make_session()
    db = FakeDb()
    key: Any = {"advance": SQL.ADVANCE_LAST_TS, "insert": SQL.INSERT_MESSAGE, "commit": Commit}[where]
    db.script(key, BUSY)
    result, commands = run_with(session.write("q", "x"), db)
    rollback_at = commands.index(Rollback())
    assert commands[rollback_at : rollback_at + 3] == [Rollback(), Sleep(0.05), Begin()]
    assert kinds(commands).count("Begin") == 2
    assert db.inserted == [("q", "x", result)]
    assert db.in_tx is False
    assert session.core.mutations == 1


def test_busy_inside_the_transaction_gives_up_after_the_attempts() -> None:
    session = make_session(retry=RetryPolicy(attempts=3))
    db = FakeDb()
    db.script(CLAIM, BUSY, BUSY, BusyError("still locked", 5))
    with pytest.raises(BusyError, match="still locked"):
        run_with(session.claim("q"), db)
    assert db.sleeps == [0.05, 0.1]
    assert db.in_tx is False
    assert session.in_transaction is False


# ------------------------------------------------------- other errors
def test_other_error_rolls_back_then_is_reraised_unchanged() -> None:
    session = make_session()
    error = DatabaseError("disk I/O error", 10)
    step = Stepper(session.claim("q"))
    assert step.start() == Begin()
    assert step.send(None) == Execute(CLAIM, ("q", 1), Fetch.ALL, "q")
    assert step.throw(error) == Rollback()
    with pytest.raises(DatabaseError) as caught:
        step.send(None)
    assert caught.value is error
    assert step.commands == [Begin(), Execute(CLAIM, ("q", 1), Fetch.ALL, "q"), Rollback()]


def test_failing_rollback_is_swallowed_and_the_original_error_raised() -> None:
    session = make_session()
    original = DatabaseError("original")
    step = Stepper(session.claim("q"))
    step.start()
    step.send(None)
    assert step.throw(original) == Rollback()
    with pytest.raises(DatabaseError) as caught:
        step.throw(DatabaseError("cannot rollback - no transaction is active"))
    assert caught.value is original


def test_failing_rollback_after_busy_still_sleeps_and_retries() -> None:
    session = make_session()
    result, commands = run_scripted(
        session.delete_all(),
        [None, BUSY, DatabaseError("cannot rollback"), None, None, 3, None],
    )
    assert result == 3
    assert kinds(commands) == ["Begin", "Execute", "Rollback", "Sleep", "Begin", "Execute", "Commit"]


def test_integrity_error_outside_writes_is_not_resynced() -> None:
    session = make_session()
    step = Stepper(session.move("a", "b"))
    step.start()
    step.send(None)
    assert step.throw(IntegrityError("x", 19)) == Rollback()
    with pytest.raises(IntegrityError):
        step.send(None)
    assert kinds(step.commands) == ["Begin", "Execute", "Rollback"]


def test_keyboard_interrupt_inside_the_transaction_rolls_back_then_propagates() -> None:
    session = make_session()
    step = Stepper(session.write("q", "x"))
    step.start()
    step.send(None)
    assert step.send(NOW) == Execute(SQL.ADVANCE_LAST_TS, (NOW, NOW), Fetch.ONE)
    assert step.throw(KeyboardInterrupt()) == Rollback()
    with pytest.raises(KeyboardInterrupt):
        step.send(None)
    assert session.core.mutations == 0


def test_keyboard_interrupt_at_commit_rolls_back() -> None:
    session = make_session()
    with pytest.raises(KeyboardInterrupt):
        run_scripted(session.delete_all(), [None, 0, KeyboardInterrupt(), None])
    step = Stepper(session.delete_all())
    step.start()
    step.send(None)
    assert step.send(0) == Commit()
    assert step.throw(KeyboardInterrupt()) == Rollback()


def test_outcome_unknown_at_commit_is_raised() -> None:
    session = make_session()
    with pytest.raises(OutcomeUnknownError):
        run_scripted(session.delete_all(), [None, 0, OutcomeUnknownError("cancelled in COMMIT"), None])


def test_keyboard_interrupt_at_begin_rolls_back_quietly() -> None:
    step = Stepper(make_session().write("q", "x"))
    assert step.start() == Begin()
    # The BEGIN may or may not have run when the interrupt arrived; ROLLBACK is
    # harmless either way (its "no transaction" error is swallowed).
    try:
        command = step.throw(KeyboardInterrupt())
    except KeyboardInterrupt:
        command = None  # re-raised at once: nothing rolls back a BEGIN that succeeded
    assert command == Rollback()
    with pytest.raises(KeyboardInterrupt):
        step.send(None)


@pytest.mark.parametrize(
    "begin",
    [
        lambda s: s.begin_transaction(),
        lambda s: ClaimStream(s, "q", commit_interval=3).next_batch(),
    ],
    ids=["explicit transaction", "at-least-once batch"],
)
def test_interrupt_at_a_retrying_begin_rolls_back(begin: Any) -> None:
    session = make_session()
    step = Stepper(begin(session))
    assert step.start() == Begin()
    assert step.throw(KeyboardInterrupt()) == Rollback()
    with pytest.raises(KeyboardInterrupt):
        step.send(None)
    assert not session.in_transaction
    # The connection is usable again: a new transaction begins normally.
    assert Stepper(session.begin_transaction()).start() == Begin()


def test_interrupt_at_a_retrying_begin_survives_a_failing_rollback() -> None:
    step = Stepper(make_session().begin_transaction())
    step.start()
    assert step.throw(KeyboardInterrupt()) == Rollback()
    with pytest.raises(KeyboardInterrupt):
        step.throw(DatabaseError("cannot rollback - no transaction is active"))


def test_closing_a_running_operation_does_not_yield() -> None:
    operation = make_session().write("q", "x")
    assert next(operation) == Begin()
    assert operation.send(None) == ReadClock()
    operation.close()  # GeneratorExit must not be answered with another command (RuntimeError)
    with pytest.raises(StopIteration):
        next(operation)


def test_session_is_reusable_after_a_failed_operation() -> None:
    session = make_session()
    db = FakeDb()
    db.script(SQL.INSERT_MESSAGE, DatabaseError("boom"))
    with pytest.raises(DatabaseError):
        run_with(session.write("q", "a"), db)
    result, _ = run_with(session.write("q", "b"), db)
    assert db.inserted == [("q", "b", result)]


# ------------------------------------------------- explicit transactions
def test_explicit_transaction_operations_emit_no_begin_or_commit() -> None:
    session = make_session(auto_vacuum=False)
    db = FakeDb().answer(CLAIM, [("m", 5)])
    _, begin = run_with(session.begin_transaction(), db)
    assert begin == [Begin()]
    assert session.in_transaction is True
    written, commands = run_with(session.write("q", "x"), db)
    assert kinds(commands) == ["ReadClock", "Execute", "Execute"]
    _, commands = run_with(session.write_many("q", ["y", "z"]), db)
    assert kinds(commands) == ["ReadClock", "Execute", "ExecuteMany"]
    claimed, commands = run_with(session.claim("q"), db)
    assert commands == [Execute(CLAIM, ("q", 1), Fetch.ALL, "q")]
    assert session.core.mutations == 0  # nothing committed yet
    _, commands = run_with(session.commit_transaction(), db)
    assert commands == [Commit()]
    assert session.in_transaction is False
    assert session.core.mutations == 4  # 1 write + 2 write_many + 1 claim
    assert written == NOW
    assert claimed is not None and claimed.id == 5


def test_commit_makes_the_auto_vacuum_check_due_for_the_transaction_mutations() -> None:
    session = make_session(auto_vacuum_interval=2)
    db = FakeDb().answer(SQL.OVERALL_STATS, (0, 2))
    run_with(session.begin_transaction(), db)
    run_with(session.write("q", "a"), db)
    _, commands = run_with(session.write("q", "b"), db)
    assert SQL.OVERALL_STATS not in [getattr(c, "sql", None) for c in commands]
    assert housekeeping(session, db) == []  # nothing committed yet
    _, commands = run_with(session.commit_transaction(), db)
    assert commands == [Commit()]
    assert session.core.mutations == 2
    assert housekeeping(session, db) == [Execute(SQL.OVERALL_STATS, (), Fetch.ONE)]
    assert session.core.mutations == 0


def test_rollback_transaction_discards_the_mutation_count() -> None:
    session = make_session()
    db = FakeDb()
    run_with(session.begin_transaction(), db)
    run_with(session.write("q", "a"), db)
    _, commands = run_with(session.rollback_transaction(), db)
    assert commands == [Rollback()]
    assert session.in_transaction is False
    assert session.core.mutations == 0
    assert db.inserted == []
    # the next transaction starts counting from zero
    run_with(session.begin_transaction(), db)
    run_with(session.commit_transaction(), db)
    assert session.core.mutations == 0


def test_rollback_transaction_swallows_a_failing_rollback() -> None:
    session = make_session()
    run_scripted(session.begin_transaction(), [None])
    result, commands = run_scripted(session.rollback_transaction(), [DatabaseError("no transaction")])
    assert result is None
    assert commands == [Rollback()]


def test_nested_begin_is_refused_when_called() -> None:
    session = make_session()
    run_scripted(session.begin_transaction(), [None])
    with pytest.raises(TransactionError, match="nested"):
        session.begin_transaction()
    assert session.in_transaction is True


def test_commit_or_rollback_without_a_transaction_is_refused() -> None:
    session = make_session()
    with pytest.raises(TransactionError, match="no transaction"):
        session.commit_transaction()
    with pytest.raises(TransactionError, match="no transaction"):
        session.rollback_transaction()


def test_begin_transaction_retries_busy_with_back_off() -> None:
    session = make_session()
    result, commands = run_scripted(session.begin_transaction(), [BUSY, None, BUSY, None, None])
    assert result is None
    assert commands == [Begin(), Sleep(0.05), Begin(), Sleep(0.1), Begin()]
    assert session.in_transaction is True


def test_begin_transaction_gives_up_and_stays_outside() -> None:
    session = make_session(retry=RetryPolicy(attempts=2))
    with pytest.raises(BusyError, match="gave up after 2 attempts"):
        run_scripted(session.begin_transaction(), [BUSY, None, BUSY])
    assert session.in_transaction is False


def test_failed_commit_rolls_back_and_counts_nothing() -> None:
    session = make_session(auto_vacuum_interval=1)
    db = FakeDb()
    run_with(session.begin_transaction(), db)
    run_with(session.write("q", "a"), db)
    step = Stepper(session.commit_transaction())
    assert step.start() == Commit()
    assert step.throw(DatabaseError("disk full")) == Rollback()
    with pytest.raises(DatabaseError, match="disk full"):
        step.send(None)
    assert session.in_transaction is False
    assert session.core.mutations == 0
    assert session.core.take_auto_vacuum() is False


def test_error_inside_an_explicit_transaction_leaves_it_open_for_the_caller() -> None:
    session = make_session()
    db = FakeDb()
    run_with(session.begin_transaction(), db)
    step = Stepper(session.write("q", "x"))
    step.start()
    step.send(NOW)
    step.send((NOW,))
    with pytest.raises(DatabaseError, match="boom"):
        step.throw(DatabaseError("boom"))
    assert kinds(step.commands) == ["ReadClock", "Execute", "Execute"]  # no Rollback: the caller decides
    assert session.in_transaction is True


def test_timestamp_error_inside_an_explicit_transaction_is_raised_without_rollback() -> None:
    session = make_session()
    db = FakeDb(last_ts=None)
    run_with(session.begin_transaction(), db)
    with pytest.raises(TimestampError):
        run_with(session.write("q", "x"), db)
    assert db.in_tx is True


def test_vacuum_inside_a_transaction_is_refused() -> None:
    session = make_session()
    run_scripted(session.begin_transaction(), [None])
    with pytest.raises(TransactionError, match="vacuum"):
        session.vacuum()
