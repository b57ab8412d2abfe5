"""vacuum (claimed-row removal under <db>.vacuum.lock) and auto-vacuum: counted by commits, run as housekeeping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sansio_broker import BusyError, Config, DatabaseError, OperationCancelled, TransactionError
from sansio_broker.commands import Command
from sansio_broker.driver import (
    Begin,
    BrokerCore,
    Commit,
    Execute,
    Fetch,
    LockVacuumFile,
    RetryPolicy,
    Rollback,
    Sleep,
    UnlockVacuumFile,
)
from sansio_broker.testing import Stepper, run_scripted, run_with
from tests.core.core_testkit import NOW, SQL, FakeDb, housekeeping, kinds, make_session

ANY_CLAIMED = "SELECT EXISTS(SELECT 1 FROM messages WHERE claimed = 1 LIMIT 1)"
DELETE_BATCH = (
    "DELETE FROM messages\nWHERE ts IN (\n    SELECT ts FROM messages\n"
    "    WHERE claimed = 1\n    ORDER BY ts\n    LIMIT ?\n)"
)
OVERALL = "SELECT SUM(CASE WHEN claimed = 1 THEN 1 ELSE 0 END) as claimed, COUNT(*) as total FROM messages"


def any_claimed() -> Execute:
    return Execute(ANY_CLAIMED, (), Fetch.ONE)


def delete_batch(size: int = 1000) -> Execute:
    return Execute(DELETE_BATCH, (size,), Fetch.ROWCOUNT)


def test_sql_is_the_contract_text() -> None:
    assert SQL.ANY_CLAIMED == ANY_CLAIMED
    assert SQL.DELETE_CLAIMED_BATCH == DELETE_BATCH
    assert SQL.OVERALL_STATS == OVERALL


# ------------------------------------------------------------------ vacuum
def test_vacuum_skips_when_the_lock_is_held_elsewhere() -> None:
    result, commands = run_scripted(make_session().vacuum(), [False])
    assert result == 0
    assert commands == [LockVacuumFile()]


def test_vacuum_deletes_in_batches_until_none_is_claimed() -> None:
    session = make_session(vacuum_batch_size=1000)
    script = [True, None, (1,), 1000, None, None, None, (1,), 5, None, None, None, (0,), None, (2,), [], None]
    result, commands = run_scripted(session.vacuum(), script)
    assert result == 1005
    assert commands == [
        LockVacuumFile(),
        Begin(),
        any_claimed(),
        delete_batch(),
        Commit(),
        Sleep(0.001),
        Begin(),
        any_claimed(),
        delete_batch(),
        Commit(),
        Sleep(0.001),
        Begin(),
        any_claimed(),
        Commit(),
        Execute("PRAGMA auto_vacuum", (), Fetch.ONE),
        Execute("PRAGMA incremental_vacuum(100)", (), Fetch.ALL),
        UnlockVacuumFile(),
    ]
    assert session.core.mutations == 0  # vacuum is not a counted mutation


def test_vacuum_uses_the_configured_batch_size() -> None:
    session = make_session(vacuum_batch_size=7)
    _, commands = run_scripted(session.vacuum(), [True, None, (1,), 3, None, None, None, (0,), None, (0,), None])
    assert delete_batch(7) in commands
    assert commands[-2:] == [Execute("PRAGMA auto_vacuum", (), Fetch.ONE), UnlockVacuumFile()]


def test_vacuum_with_nothing_claimed() -> None:
    result, commands = run_scripted(make_session().vacuum(), [True, None, (0,), None, None])
    assert result == 0
    assert commands == [LockVacuumFile(), Begin(), any_claimed(), Commit(), UnlockVacuumFile()]


def test_incremental_vacuum_errors_are_ignored() -> None:
    result, commands = run_scripted(
        make_session().vacuum(),
        [True, None, (1,), 2, None, None, None, (0,), None, DatabaseError("locked"), None],
    )
    assert result == 2
    assert commands[-2:] == [Execute("PRAGMA auto_vacuum", (), Fetch.ONE), UnlockVacuumFile()]


def test_compact_runs_auto_vacuum_pragma_then_vacuum() -> None:
    result, commands = run_scripted(
        make_session().vacuum(compact=True), [True, None, (1,), 4, None, None, None, (0,), None, None, None, None]
    )
    assert result == 4
    assert commands[-3:] == [Execute("PRAGMA auto_vacuum=2"), Execute("VACUUM"), UnlockVacuumFile()]
    assert Execute("PRAGMA incremental_vacuum(100)", (), Fetch.ALL) not in commands


def test_compact_even_when_nothing_was_claimed() -> None:
    _, commands = run_scripted(make_session().vacuum(compact=True), [True, None, (0,), None, None, None, None])
    assert kinds(commands) == ["LockVacuumFile", "Begin", "Execute", "Commit", "Execute", "Execute", "UnlockVacuumFile"]


def test_error_in_a_batch_rolls_back_unlocks_and_raises() -> None:
    step = Stepper(make_session().vacuum())
    assert step.start() == LockVacuumFile()
    step.send(True)
    step.send(None)
    assert step.send((1,)) == delete_batch()
    assert step.throw(DatabaseError("disk I/O error")) == Rollback()
    assert step.send(None) == UnlockVacuumFile()
    with pytest.raises(DatabaseError, match="disk I/O"):
        step.send(None)


def test_interrupt_while_sleeping_between_batches_unlocks() -> None:
    step = Stepper(make_session().vacuum())
    assert step.start() == LockVacuumFile()
    assert [step.send(a) for a in (True, None, (1,), 10)] == [Begin(), any_claimed(), delete_batch(), Commit()]
    assert step.send(None) == Sleep(0.001)
    assert step.throw(KeyboardInterrupt()) == UnlockVacuumFile()
    with pytest.raises(KeyboardInterrupt):
        step.send(None)


def test_error_in_compact_unlocks() -> None:
    with pytest.raises(DatabaseError, match="SQLITE_FULL"):
        run_scripted(
            make_session().vacuum(compact=True),
            [True, None, (0,), None, None, DatabaseError("SQLITE_FULL"), None],
        )
    step = Stepper(make_session().vacuum(compact=True))
    step.start()
    for answer in (True, None, (0,), None):
        step.send(answer)
    assert step.send(None) == Execute("VACUUM")
    assert step.throw(DatabaseError("SQLITE_FULL")) == UnlockVacuumFile()


def test_vacuum_busy_batches_are_retried_with_back_off() -> None:
    db = FakeDb().answer(ANY_CLAIMED, (0,))
    db.script(Begin, BusyError("locked", 5))
    result, commands = run_with(make_session().vacuum(), db)
    assert result == 0
    assert kinds(commands)[:4] == ["LockVacuumFile", "Begin", "Sleep", "Begin"]
    assert commands[-1] == UnlockVacuumFile()


def test_vacuum_is_refused_while_a_stream_holds_the_lock() -> None:
    session = make_session()
    session.stream_holding_lock = object()
    with pytest.raises(TransactionError, match="close"):
        session.vacuum()


def test_vacuum_is_refused_inside_a_transaction() -> None:
    session = make_session()
    run_scripted(session.begin_transaction(), [None])
    with pytest.raises(TransactionError):
        session.vacuum()


# ------------------------------------------------------------- auto-vacuum
# An operation only counts its committed mutations; the adapter asks
# take_auto_vacuum() afterwards and runs session.auto_vacuum() on its own
# (core_testkit.housekeeping does the same), never inside the operation.
def test_record_mutations_only_counts() -> None:
    core = BrokerCore(Config(auto_vacuum_interval=3))
    # It no longer reports whether a check is due (take_auto_vacuum does).
    assert core.record_mutations(2) is None  # type: ignore[func-returns-value]
    assert core.record_mutations(0) is None  # type: ignore[func-returns-value]
    assert core.mutations == 2
    assert core.next_vacuum_check == 3
    core.record_mutations(5)
    assert core.mutations == 7  # counting never starts a check


def test_take_auto_vacuum_reports_once_when_a_check_is_due() -> None:
    core = BrokerCore(Config(auto_vacuum_interval=3))
    assert core.take_auto_vacuum() is False
    core.record_mutations(1)
    assert core.take_auto_vacuum() is False
    core.record_mutations(1)
    assert core.take_auto_vacuum() is False
    core.record_mutations(1)
    assert core.take_auto_vacuum() is True
    assert core.mutations == 3  # taking a check counts nothing off
    # A check under way is not handed out again, however many commits follow.
    assert core.take_auto_vacuum() is False
    core.record_mutations(10)
    assert core.take_auto_vacuum() is False
    core.auto_vacuum_ended()
    assert core.take_auto_vacuum() is True  # still due: nothing was counted off
    core.auto_vacuum_ended()
    core.auto_vacuum_ended()  # harmless when no check is under way
    core.mutations = 0
    assert core.take_auto_vacuum() is False


def test_take_auto_vacuum_waits_for_the_scheduled_check() -> None:
    core = BrokerCore(Config(auto_vacuum_interval=3))
    core.next_vacuum_check = 10  # a big table deferred the next check
    core.record_mutations(9)
    assert core.take_auto_vacuum() is False
    core.record_mutations(1)
    assert core.take_auto_vacuum() is True


def test_take_auto_vacuum_is_never_true_when_disabled() -> None:
    core = BrokerCore(Config(auto_vacuum=False, auto_vacuum_interval=1))
    core.record_mutations(10**6)
    assert core.take_auto_vacuum() is False
    assert core.mutations == 10**6


@pytest.mark.parametrize(
    ("percent", "claimed", "total", "due"),
    [
        (10.0, 10, 100, True),  # exactly at the threshold
        (10.0, 9, 100, False),
        (10.0, 0, 0, False),  # empty database
        (0.0, 0, 100, False),  # nothing to remove
        (0.0, 1, 100, True),
        (100.0, 10_001, 1_000_000, True),  # more than 10,000 claimed: due whatever the threshold
        (100.0, 10_000, 1_000_000, False),
        (50.0, 50, 100, True),
        (100.0, 100, 100, True),
    ],
)
def test_vacuum_is_due(percent: float, claimed: int, total: int, due: bool) -> None:
    core = BrokerCore(Config(vacuum_threshold_percent=percent))
    assert core.vacuum_is_due(claimed, total) is due


def auto_db(stats: tuple[object, object]) -> FakeDb:
    return FakeDb().answer(OVERALL, stats).answer(ANY_CLAIMED, (0,))


def recording(db: FakeDb, seen: list[Command]) -> Callable[[Command], Any]:
    """``db``, noting every command in ``seen`` (for a check that raises)."""

    def respond(command: Command) -> Any:
        seen.append(command)
        return db(command)

    return respond


def test_auto_vacuum_checks_every_interval_mutations_and_vacuums_when_due() -> None:
    session = make_session(auto_vacuum_interval=3)
    db = auto_db((1, 10))
    for body in ("a", "b"):
        _, commands = run_with(session.write("q", body), db)
        assert commands[-1] == Commit()
        assert session.core.take_auto_vacuum() is False
    result, commands = run_with(session.write("q", "c"), db)
    assert result == NOW + 2  # the write's own answer is unchanged
    assert commands[-1] == Commit()  # and its commands end at its COMMIT
    assert session.core.mutations == 3
    assert housekeeping(session, db) == [
        Execute(OVERALL, (), Fetch.ONE),
        LockVacuumFile(),
        Begin(),
        any_claimed(),
        Commit(),
        UnlockVacuumFile(),
    ]
    assert session.core.mutations == 0
    assert session.core.last_vacuum_error is None
    assert session.core.take_auto_vacuum() is False  # the check ended; the next waits an interval


def test_auto_vacuum_not_due_below_the_threshold() -> None:
    session = make_session(auto_vacuum_interval=1, vacuum_threshold_percent=50)
    db = auto_db((4, 10))
    _, commands = run_with(session.write("q", "a"), db)
    assert commands[-1] == Commit()
    assert housekeeping(session, db) == [Execute(OVERALL, (), Fetch.ONE)]
    assert session.core.mutations == 0


def test_auto_vacuum_counter_keeps_the_remainder() -> None:
    session = make_session(auto_vacuum_interval=2)
    db = auto_db((0, 5))
    run_with(session.write_many("q", ["a", "b", "c"]), db)
    assert session.core.mutations == 3
    assert housekeeping(session, db) == [Execute(OVERALL, (), Fetch.ONE)]
    assert session.core.mutations == 1  # 3 % 2


def test_auto_vacuum_ceiling_of_ten_thousand_claimed_rows() -> None:
    session = make_session(auto_vacuum_interval=1, vacuum_threshold_percent=100)
    run_with(session.write("q", "a"), FakeDb())
    assert LockVacuumFile() in housekeeping(session, auto_db((10_001, 1_000_000)))
    run_with(session.write("q", "b"), FakeDb())
    assert housekeeping(session, auto_db((10_000, 1_000_000))) == [Execute(OVERALL, (), Fetch.ONE)]


def test_auto_vacuum_handles_null_sums() -> None:
    session = make_session(auto_vacuum_interval=1)
    db = auto_db((None, 0))
    run_with(session.write("q", "a"), db)
    assert housekeeping(session, db) == [Execute(OVERALL, (), Fetch.ONE)]
    assert session.core.last_vacuum_error is None
    assert session.core.mutations == 0


def test_auto_vacuum_disabled() -> None:
    session = make_session(auto_vacuum=False, auto_vacuum_interval=1)
    _, commands = run_with(session.write("q", "a"), FakeDb())
    assert commands[-1] == Commit()
    assert session.core.mutations == 1
    assert housekeeping(session, FakeDb()) == []


def test_auto_vacuum_skipped_when_the_lock_is_held() -> None:
    session = make_session(auto_vacuum_interval=1)
    db = auto_db((5, 5))
    db.vacuum_lock_free = False
    result, commands = run_with(session.write("q", "a"), db)
    assert result == NOW
    assert commands[-1] == Commit()
    assert housekeeping(session, db) == [Execute(OVERALL, (), Fetch.ONE), LockVacuumFile()]
    assert session.core.last_vacuum_error is None


def test_database_error_in_the_stats_check_fails_the_check_not_the_write() -> None:
    session = make_session(auto_vacuum_interval=2)
    core = session.core
    error = DatabaseError("database disk image is malformed")
    db = FakeDb().script(OVERALL, error)
    run_with(session.write("q", "a"), db)
    result, commands = run_with(session.write("q", "b"), db)
    assert result == NOW + 1  # the write's result is unaffected
    assert commands[-1] == Commit()
    assert OVERALL not in [getattr(c, "sql", None) for c in commands]
    assert db.inserted == [("q", "a", NOW), ("q", "b", NOW + 1)]
    with pytest.raises(DatabaseError) as caught:
        housekeeping(session, db)
    assert caught.value is error
    assert core.last_vacuum_error is error
    # Failed before the count: the counter restarts, so the next check waits an interval.
    assert core.mutations == 0
    run_with(session.write("q", "c"), db)
    assert housekeeping(session, db) == []
    # After the interval it checks again; success clears the stored error.
    db.answer(OVERALL, (0, 4))
    run_with(session.write("q", "d"), db)
    assert housekeeping(session, db) == [Execute(OVERALL, (), Fetch.ONE)]
    assert core.last_vacuum_error is None
    assert core.mutations == 0


def test_database_error_during_the_vacuum_fails_the_check_not_the_write() -> None:
    session = make_session(auto_vacuum_interval=1, retry=RetryPolicy(attempts=1))
    db = FakeDb().answer(OVERALL, (1, 1)).answer(ANY_CLAIMED, (1,))
    db.script(DELETE_BATCH, BusyError("database is locked", 5))
    result, commands = run_with(session.write("q", "a"), db)
    assert result == NOW
    assert commands[-1] == Commit()
    assert db.inserted == [("q", "a", NOW)]
    seen: list[Command] = []
    with pytest.raises(BusyError) as caught:
        housekeeping(session, recording(db, seen))
    assert session.core.last_vacuum_error is caught.value
    assert seen[0] == Execute(OVERALL, (), Fetch.ONE)
    assert seen[-3:] == [delete_batch(), Rollback(), UnlockVacuumFile()]
    assert db.in_tx is False
    # The count ran before the failure: the next check is scheduled from it.
    assert session.core.mutations == 0
    assert session.core.next_vacuum_check == 1
    assert session.core.take_auto_vacuum() is False


def test_a_failure_after_the_count_keeps_the_counted_remainder() -> None:
    session = make_session(auto_vacuum_interval=3, retry=RetryPolicy(attempts=1))
    session.core.record_mutations(4)
    db = FakeDb().answer(OVERALL, (5, 5)).answer(ANY_CLAIMED, (1,))
    db.script(DELETE_BATCH, DatabaseError("disk I/O error", 10))
    with pytest.raises(DatabaseError, match="disk I/O"):
        housekeeping(session, db)
    assert session.core.mutations == 1  # 4 % 3, not reset
    session.core.record_mutations(2)
    assert session.core.take_auto_vacuum() is True  # the check ended: a new one can be taken


def test_non_database_errors_during_auto_vacuum_are_recorded_and_propagate() -> None:
    session = make_session(auto_vacuum_interval=1)
    interrupt = KeyboardInterrupt()
    db = FakeDb().script(OVERALL, interrupt)
    result, commands = run_with(session.write("q", "a"), db)
    assert result == NOW
    assert commands[-1] == Commit()
    with pytest.raises(KeyboardInterrupt):
        housekeeping(session, db)
    assert session.core.last_vacuum_error is interrupt
    assert session.core.mutations == 0
    run_with(session.write("q", "b"), db)
    assert session.core.take_auto_vacuum() is True  # ended despite the interrupt


def test_auto_vacuum_ends_the_check_when_interrupted_at_the_count() -> None:
    session = make_session(auto_vacuum_interval=1)
    session.core.record_mutations(1)
    assert session.core.take_auto_vacuum() is True
    step = Stepper(session.auto_vacuum())
    assert step.start() == Execute(OVERALL, (), Fetch.ONE)
    assert session.core.take_auto_vacuum() is False  # still under way
    error = OperationCancelled("cancelled")
    with pytest.raises(OperationCancelled):
        step.throw(error)
    assert session.core.last_vacuum_error is error
    assert session.core.mutations == 0
    session.core.record_mutations(1)
    assert session.core.take_auto_vacuum() is True


def test_claims_and_moves_count_rows_for_auto_vacuum() -> None:
    session = make_session(auto_vacuum_interval=3)
    claim = SQL.claim(SQL.where(by_id=False, unclaimed_only=True, after=False, before=False))
    db = FakeDb().script(claim, [("a", 1), ("b", 2)], [("c", 3)]).answer(OVERALL, (0, 0))
    _, commands = run_with(session.claim_many("q", 2), db)
    assert session.core.mutations == 2
    assert housekeeping(session, db) == []
    _, commands = run_with(session.claim("q"), db)
    assert commands[-1] == Commit()
    assert housekeeping(session, db) == [Execute(OVERALL, (), Fetch.ONE)]
    assert session.core.mutations == 0
    move = SQL.move(SQL.where(by_id=False, unclaimed_only=True, after=False, before=False))
    db.answer(move, [("d", 4), ("e", 5), ("f", 6)])
    _, commands = run_with(session.move_many("q", "r", 3), db)
    assert commands[-1] == Commit()
    assert session.core.mutations == 3
    assert housekeeping(session, db) == [Execute(OVERALL, (), Fetch.ONE)]


def test_closing_a_running_vacuum_does_not_yield() -> None:
    operation = make_session().vacuum()
    assert next(operation) == LockVacuumFile()
    assert operation.send(True) == Begin()
    operation.close()  # drivers throw instead of closing; close() must still not yield
    with pytest.raises(StopIteration):
        next(operation)
