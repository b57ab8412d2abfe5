"""Group operations: write_group (group commit), claim_group (shared claims),
return_claims, check_write, and the auto-vacuum check scheduling they rely on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sansio_broker import (
    BusyError,
    Config,
    DatabaseError,
    IntegrityError,
    InvalidInputError,
    InvalidTypeError,
    Message,
    MessageError,
    MessageTypeError,
    OperationCancelled,
    QueueNameError,
    QueueNameTypeError,
    TransactionError,
)
from sansio_broker.commands import SEAL_GROUP, Command
from sansio_broker.core import INSERT_CHUNK_ROWS, VACUUM_CLAIMED_CEILING
from sansio_broker.driver import (
    Begin,
    BrokerCore,
    Commit,
    Execute,
    ExecuteMany,
    Fetch,
    LockVacuumFile,
    ReadClock,
    RetryPolicy,
    Rollback,
    SealGroup,
    Sleep,
    UnlockVacuumFile,
)
from sansio_broker.testing import Stepper, run_scripted, run_with
from tests.core.core_testkit import NOW, PENDING, SQL, FakeDb, claim_sql, housekeeping, kinds, make_session

ADVANCE = "UPDATE meta SET value = ? WHERE key = 'last_ts' AND value < ? RETURNING value"
INSERT = "INSERT INTO messages (queue, body, ts) VALUES (?, ?, ?)"
MAX_TS = "SELECT MAX(ts) FROM messages"
DELETE_BY_ID = "DELETE FROM messages WHERE ts = ?"
UNCLAIM_BY_ID = "UPDATE messages SET claimed = 0 WHERE ts = ?"
RETURN_CLAIMED = (
    "INSERT INTO messages (queue, body, ts, claimed) VALUES (?, ?, ?, 0)\nON CONFLICT(ts) DO UPDATE SET claimed = 0"
)
CLAIM = claim_sql(PENDING)
OVERALL = "SELECT SUM(CASE WHEN claimed = 1 THEN 1 ELSE 0 END) as claimed, COUNT(*) as total FROM messages"
ANY_CLAIMED = "SELECT EXISTS(SELECT 1 FROM messages WHERE claimed = 1 LIMIT 1)"
DELETE_BATCH = (
    "DELETE FROM messages\nWHERE ts IN (\n    SELECT ts FROM messages\n"
    "    WHERE claimed = 1\n    ORDER BY ts\n    LIMIT ?\n)"
)
BUSY = BusyError("database is locked", 5)


def advance(last: int, first: int) -> Execute:
    return Execute(ADVANCE, (last, first), Fetch.ONE)


def claim(queue: str, limit: int) -> Execute:
    """The claim statement of ``claim_group``: it claims messages of ``queue``."""
    return Execute(CLAIM, (queue, limit), Fetch.ALL, queue)


def count(commands: list[Command], kind: type) -> int:
    return sum(1 for c in commands if type(c) is kind)


def failing_body(db: FakeDb, body: str, error: Callable[[], BaseException]) -> Callable[[Command], Any]:
    """``db``, except that every insert carrying ``body`` fails with a fresh ``error()``."""

    def respond(command: Command) -> Any:
        if isinstance(command, Execute) and command.sql == INSERT and command.params[1] == body:
            return error()
        if isinstance(command, ExecuteMany) and command.sql == INSERT and any(r[1] == body for r in command.rows):
            return error()
        return db(command)

    return respond


def test_sql_is_the_contract_text() -> None:
    assert SQL.DELETE_BY_ID == DELETE_BY_ID
    assert SQL.UNCLAIM_BY_ID == UNCLAIM_BY_ID
    assert SQL.RETURN_CLAIMED == RETURN_CLAIMED
    assert SealGroup() == SEAL_GROUP


# ------------------------------------------------------------- write_group
def test_write_group_ids_follow_item_order_from_one_block_in_one_transaction() -> None:
    session = make_session()
    items = [("a", "x"), ("b", "y"), ("a", "z")]
    result, commands = run_scripted(session.write_group(items), [None, NOW, (NOW + 2,), None, frozenset(), None])
    assert result == [NOW, NOW + 1, NOW + 2]
    assert commands == [
        Begin(),
        ReadClock(),
        advance(NOW + 2, NOW),
        ExecuteMany(INSERT, [("a", "x", NOW), ("b", "y", NOW + 1), ("a", "z", NOW + 2)]),
        SealGroup(),
        Commit(),
    ]
    assert session.core.mutations == 3
    assert session.core.last_id == NOW + 2


def test_write_group_returns_a_generator_that_has_not_run() -> None:
    step = Stepper(make_session().write_group([("q", "a"), ("q", "b")]))
    assert step.commands == []
    assert step.start() == Begin()


def test_write_group_seals_after_the_inserts_just_before_commit() -> None:
    step = Stepper(make_session().write_group([("q", "a"), ("q", "b")]))
    step.start()
    step.send(None)
    step.send(NOW)
    assert step.send((NOW + 1,)) == ExecuteMany(INSERT, [("q", "a", NOW), ("q", "b", NOW + 1)])
    assert step.send(None) == SealGroup()
    assert step.send(frozenset()) == Commit()
    assert step.send(None) is None
    assert step.result == [NOW, NOW + 1]


def test_withdrawn_writes_are_deleted_before_commit_and_answered_none() -> None:
    session = make_session()
    db = FakeDb()
    db.withdrawn = frozenset({1, 3})
    items = [("q", "a"), ("q", "b"), ("r", "c"), ("q", "d")]
    result, commands = run_with(session.write_group(items), db)
    # IDs still come from the one block: the withdrawn ones are simply unused.
    assert result == [NOW, None, NOW + 2, None]
    assert commands[-3:] == [SealGroup(), ExecuteMany(DELETE_BY_ID, [(NOW + 1,), (NOW + 3,)]), Commit()]
    assert count(commands, Begin) == 1
    assert db.inserted == [("q", "a", NOW), ("r", "c", NOW + 2)]
    assert db.last_ts == NOW + 3
    assert session.core.mutations == 2  # only the writes that were kept


def test_every_write_withdrawn_rolls_back_and_answers_none() -> None:
    session = make_session()
    db = FakeDb()
    db.withdrawn = frozenset({0, 1})
    result, commands = run_with(session.write_group([("q", "a"), ("q", "b")]), db)
    assert result == [None, None]
    assert commands == [
        Begin(),
        ReadClock(),
        advance(NOW + 1, NOW),
        ExecuteMany(INSERT, [("q", "a", NOW), ("q", "b", NOW + 1)]),
        SealGroup(),
        Rollback(),
    ]
    assert db.inserted == []
    assert db.last_ts == 0  # the allocation rolled back too
    assert db.in_tx is False
    assert session.core.mutations == 0


def test_a_lone_write_withdrawn_rolls_back() -> None:
    session = make_session(auto_vacuum_interval=1)
    db = FakeDb()
    db.withdrawn = frozenset({0})
    result, commands = run_with(session.write_group([("q", "a")]), db)
    assert result == [None]
    assert commands[-2:] == [SealGroup(), Rollback()]
    assert db.inserted == []
    assert session.core.mutations == 0
    assert housekeeping(session, db) == []  # nothing written: no auto-vacuum check


def test_a_lone_write_uses_execute_like_write() -> None:
    session = make_session()
    result, commands = run_scripted(session.write_group([("q", "hi")]), [None, NOW, (NOW,), None, frozenset(), None])
    assert result == [NOW]
    assert commands == [
        Begin(),
        ReadClock(),
        advance(NOW, NOW),
        Execute(INSERT, ("q", "hi", NOW)),
        SealGroup(),
        Commit(),
    ]
    assert session.core.mutations == 1


def test_a_big_group_is_inserted_in_chunks_in_one_transaction() -> None:
    session = make_session(auto_vacuum=False)
    db = FakeDb()
    size = INSERT_CHUNK_ROWS * 3 + 3  # chunks grow: 25, 50, then the last 3
    db.withdrawn = frozenset({0, INSERT_CHUNK_ROWS, size - 1})  # one in each chunk
    items = [("q", f"m{n}") for n in range(size)]
    result, commands = run_with(session.write_group(items), db)
    inserts = [c for c in commands if isinstance(c, ExecuteMany) and c.sql == INSERT]
    assert [len(c.rows) for c in inserts] == [INSERT_CHUNK_ROWS, 2 * INSERT_CHUNK_ROWS, 3]
    assert [row for c in inserts for row in c.rows] == [("q", f"m{n}", NOW + n) for n in range(size)]
    assert kinds(commands) == (
        ["Begin", "ReadClock", "Execute"] + ["ExecuteMany"] * 3 + ["SealGroup", "ExecuteMany", "Commit"]
    )
    assert commands[-2] == ExecuteMany(DELETE_BY_ID, [(NOW,), (NOW + INSERT_CHUNK_ROWS,), (NOW + size - 1,)])
    kept = [n for n in range(size) if n not in db.withdrawn]
    assert result == [None if n in db.withdrawn else NOW + n for n in range(size)]
    assert db.inserted == [("q", f"m{n}", NOW + n) for n in kept]
    assert session.core.mutations == size - 3


def test_kept_writes_count_for_auto_vacuum() -> None:
    session = make_session(auto_vacuum_interval=2)
    db = FakeDb().answer(OVERALL, (0, 10))
    db.withdrawn = frozenset({0})
    run_with(session.write_group([("q", "a"), ("q", "b")]), db)
    assert session.core.mutations == 1  # one kept write: no check yet
    assert housekeeping(session, db) == []
    db.withdrawn = frozenset()
    _, commands = run_with(session.write_group([("q", "c")]), db)
    assert commands[-1] == Commit()  # the check is housekeeping, not part of the group
    assert session.core.mutations == 2
    assert housekeeping(session, db) == [Execute(OVERALL, (), Fetch.ONE)]
    assert session.core.mutations == 0


@pytest.mark.parametrize(
    "error",
    [
        lambda: DatabaseError("SQL logic error", 1),
        lambda: TypeError("Error binding parameter 2: type 'list' is not supported"),
    ],
    ids=["DatabaseError", "TypeError"],
)
def test_a_failing_group_retries_each_write_alone(error: Callable[[], BaseException]) -> None:
    session = make_session(auto_vacuum=False)
    db = FakeDb()
    items = [("q", "a"), ("q", "bad"), ("q", "c")]
    result, commands = run_with(session.write_group(items), failing_body(db, "bad", error))
    # The group rolled back; then one transaction per write. The failed block
    # left the in-memory hint ahead (a hint only), so the IDs skip, in order.
    assert result[0] == NOW + 3
    assert type(result[1]) is type(error())
    assert result[2] == NOW + 5
    assert commands == [
        Begin(),
        ReadClock(),
        advance(NOW + 2, NOW),
        ExecuteMany(INSERT, [("q", "a", NOW), ("q", "bad", NOW + 1), ("q", "c", NOW + 2)]),
        Rollback(),
        # alone: the first one seals the group (it never sealed)
        Begin(),
        ReadClock(),
        advance(NOW + 3, NOW + 3),
        Execute(INSERT, ("q", "a", NOW + 3)),
        SealGroup(),
        Commit(),
        Begin(),
        ReadClock(),
        advance(NOW + 4, NOW + 4),
        Execute(INSERT, ("q", "bad", NOW + 4)),
        Rollback(),
        Begin(),
        ReadClock(),
        advance(NOW + 5, NOW + 5),
        Execute(INSERT, ("q", "c", NOW + 5)),
        Commit(),
    ]
    assert db.inserted == [("q", "a", NOW + 3), ("q", "c", NOW + 5)]
    assert db.in_tx is False
    assert session.core.mutations == 2


def test_a_duplicate_id_twice_fails_the_group_then_only_the_bad_write() -> None:
    session = make_session(auto_vacuum=False)
    db = FakeDb().answer(MAX_TS, (None,))
    result, commands = run_with(
        session.write_group([("q", "a"), ("q", "bad")]), failing_body(db, "bad", lambda: IntegrityError("dup", 19))
    )
    assert isinstance(result[0], int)
    assert isinstance(result[1], IntegrityError)
    # the group resynced once and failed again, then the bad write alone did the same
    assert sum(1 for c in commands if isinstance(c, Execute) and c.sql == MAX_TS) == 2
    assert count(commands, SealGroup) == 1
    assert db.inserted == [("q", "a", result[0])]
    assert session.core.mutations == 1


def test_a_duplicate_id_once_is_resynced_and_the_group_stays_one_transaction() -> None:
    session = make_session(auto_vacuum=False)
    db = FakeDb().answer(MAX_TS, (NOW + 9,))
    db.script(ExecuteMany, IntegrityError("dup", 19))
    result, commands = run_with(session.write_group([("q", "a"), ("q", "b")]), db)
    assert result == [NOW + 10, NOW + 11]
    assert count(commands, SealGroup) == 1
    assert not any(isinstance(c, Execute) and c.sql == INSERT for c in commands)  # never alone
    assert db.inserted == [("q", "a", NOW + 10), ("q", "b", NOW + 11)]


def test_a_failure_after_the_seal_retries_alone_without_sealing_again() -> None:
    session = make_session(auto_vacuum=False)
    db = FakeDb()
    db.withdrawn = frozenset({1})
    db.script(Commit, DatabaseError("disk I/O error", 10))
    items = [("q", "a"), ("q", "b"), ("q", "c")]
    result, commands = run_with(session.write_group(items), db)
    assert result[1] is None
    assert isinstance(result[0], int) and isinstance(result[2], int) and result[0] < result[2]
    assert count(commands, SealGroup) == 1
    after = commands[commands.index(Rollback()) + 1 :]
    assert not any(isinstance(c, Execute) and c.sql == INSERT and c.params[1] == "b" for c in after)
    assert db.inserted == [("q", "a", result[0]), ("q", "c", result[2])]


def test_a_group_failing_before_its_seal_is_sealed_by_the_first_write_retried_alone() -> None:
    session = make_session(auto_vacuum=False)
    db = FakeDb().script(ExecuteMany, DatabaseError("SQL logic error", 1))
    db.withdrawn = frozenset({0})
    result, commands = run_with(session.write_group([("q", "a"), ("q", "b")]), db)
    assert result == [None, NOW + 3]
    assert commands[commands.index(Rollback()) + 1 :] == [
        Begin(),
        ReadClock(),
        advance(NOW + 2, NOW + 2),
        Execute(INSERT, ("q", "a", NOW + 2)),
        SealGroup(),
        Rollback(),  # its one member withdrew: as if never begun
        Begin(),
        ReadClock(),
        advance(NOW + 3, NOW + 3),
        Execute(INSERT, ("q", "b", NOW + 3)),
        Commit(),
    ]
    assert db.inserted == [("q", "b", NOW + 3)]
    assert session.core.mutations == 1


def test_cancelled_while_retrying_alone_before_anything_committed_raises() -> None:
    session = make_session()
    db = FakeDb().script(ExecuteMany, DatabaseError("SQL logic error", 1))
    db.script(Begin, None, OperationCancelled("cancelled"))  # the group's BEGIN, then the first alone one
    with pytest.raises(OperationCancelled):
        run_with(session.write_group([("q", "a"), ("q", "b")]), db)
    assert db.inserted == []
    assert db.in_tx is False


def test_busy_while_retrying_alone_keeps_the_outcomes_of_writes_that_committed() -> None:
    session = make_session(auto_vacuum=False, retry=RetryPolicy(attempts=2))
    db = FakeDb().script(ExecuteMany, DatabaseError("SQL logic error", 1))
    # the group's BEGIN and the first write's alone go through; the second stays locked out
    db.script(Begin, None, None, BUSY, BUSY)
    result, _ = run_with(session.write_group([("q", "a"), ("q", "b")]), db)
    assert db.inserted == [("q", "a", NOW + 2)]
    assert result[0] == NOW + 2
    assert isinstance(result[1], BusyError)


def test_a_lone_write_failing_raises_its_error() -> None:
    session = make_session()
    db = FakeDb()
    db.script(INSERT, DatabaseError("disk I/O error", 10))
    with pytest.raises(DatabaseError, match="disk I/O"):
        run_with(session.write_group([("q", "a")]), db)
    assert db.inserted == []
    assert db.in_tx is False


@pytest.mark.parametrize(
    "error",
    [OperationCancelled("cancelled"), KeyboardInterrupt()],
    ids=["OperationCancelled", "KeyboardInterrupt"],
)
def test_cancellation_is_not_retried_alone(error: BaseException) -> None:
    step = Stepper(make_session().write_group([("q", "a"), ("q", "b")]))
    assert step.start() == Begin()
    assert step.send(None) == ReadClock()
    assert step.send(NOW) == advance(NOW + 1, NOW)
    assert step.send((NOW + 1,)) == ExecuteMany(INSERT, [("q", "a", NOW), ("q", "b", NOW + 1)])
    assert step.throw(error) == Rollback()
    with pytest.raises(type(error)):
        step.send(None)  # raised at once: no write is retried alone


def test_cancellation_at_the_seal_rolls_back() -> None:
    session = make_session()
    db = FakeDb().script(SealGroup, OperationCancelled("cancelled"))
    with pytest.raises(OperationCancelled):
        run_with(session.write_group([("q", "a"), ("q", "b")]), db)
    assert db.inserted == []
    assert db.in_tx is False


def test_busy_is_not_retried_alone() -> None:
    session = make_session(retry=RetryPolicy(attempts=2))
    db = FakeDb().script(ExecuteMany, BUSY, BUSY)
    with pytest.raises(BusyError, match="gave up after 2 attempts"):
        run_with(session.write_group([("q", "a"), ("q", "b")]), db)
    assert db.sleeps == [0.05]  # one back-off between the two group attempts, nothing after
    assert db.inserted == []
    assert db.in_tx is False


def test_busy_at_begin_retries_the_group_with_a_single_seal() -> None:
    session = make_session()
    db = FakeDb().script(Begin, BUSY, BUSY)
    db.withdrawn = frozenset({0})
    result, commands = run_with(session.write_group([("q", "a"), ("q", "b")]), db)
    assert kinds(commands)[:5] == ["Begin", "Sleep", "Begin", "Sleep", "Begin"]
    assert count(commands, SealGroup) == 1
    assert result[0] is None and isinstance(result[1], int)
    assert db.inserted == [("q", "b", result[1])]


def test_busy_at_commit_retries_with_the_first_seal_and_only_the_kept_writes() -> None:
    session = make_session()
    db = FakeDb()
    db.script(SealGroup, frozenset({1}))  # asked twice, a second seal would keep everyone
    db.script(Commit, BUSY)
    items = [("q", "a"), ("q", "b"), ("q", "c")]
    result, commands = run_with(session.write_group(items), db)
    first = commands.index(Rollback())
    assert commands[: first + 1] == [
        Begin(),
        ReadClock(),
        advance(NOW + 2, NOW),
        ExecuteMany(INSERT, [("q", "a", NOW), ("q", "b", NOW + 1), ("q", "c", NOW + 2)]),
        SealGroup(),
        ExecuteMany(DELETE_BY_ID, [(NOW + 1,)]),
        Commit(),
        Rollback(),
    ]
    retry = commands[first + 1 :]
    assert kinds(retry) == ["Sleep", "Begin", "ReadClock", "Execute", "ExecuteMany", "Commit"]
    (rows,) = [c.rows for c in retry if isinstance(c, ExecuteMany)]
    # a fresh block for the two kept writes only: nothing to delete this time
    assert rows == [("q", "a", result[0]), ("q", "c", result[2])]
    assert result[1] is None and result[2] == result[0] + 1
    assert db.inserted == rows
    assert session.core.mutations == 2


def test_busy_at_commit_with_one_kept_write_retries_it_with_execute() -> None:
    session = make_session()
    db = FakeDb()
    db.withdrawn = frozenset({0})
    db.script(Commit, BUSY)
    result, commands = run_with(session.write_group([("q", "a"), ("q", "b")]), db)
    retry = commands[commands.index(Rollback()) + 1 :]
    assert result[0] is None
    assert retry[-2:] == [Execute(INSERT, ("q", "b", result[1])), Commit()]
    assert db.inserted == [("q", "b", result[1])]


@pytest.mark.parametrize("operation", ["write_group", "claim_group"])
def test_group_operations_are_refused_inside_a_transaction(operation: str) -> None:
    session = make_session()
    run_scripted(session.begin_transaction(), [None])
    args: tuple[Any, ...] = ([("q", "a")],) if operation == "write_group" else ("q", 2)
    with pytest.raises(TransactionError, match="explicit transaction"):
        getattr(session, operation)(*args)
    assert session.in_transaction is True  # the transaction is untouched


@pytest.mark.parametrize("operation", ["write_group", "claim_group"])
def test_group_operations_are_refused_while_a_stream_holds_the_lock(operation: str) -> None:
    session = make_session()
    session.stream_holding_lock = object()
    args: tuple[Any, ...] = ([("q", "a")],) if operation == "write_group" else ("q", 2)
    with pytest.raises(TransactionError, match="run a group operation"):
        getattr(session, operation)(*args)


# ------------------------------------------------------------- claim_group
def test_claim_group_claims_for_every_member_with_one_update_in_id_order() -> None:
    session = make_session()
    result, commands = run_scripted(
        session.claim_group("q", 3), [None, [("b", NOW + 1), ("a", NOW)], frozenset(), None]
    )
    assert result == [Message("a", NOW), Message("b", NOW + 1), None]
    assert commands == [Begin(), claim("q", 3), SealGroup(), Commit()]
    assert session.core.mutations == 2


def test_claim_group_gives_withdrawn_members_nothing_and_unclaims_their_messages() -> None:
    session = make_session()
    db = FakeDb().answer(CLAIM, [("c", 3), ("a", 1), ("b", 2)])
    db.withdrawn = frozenset({0})
    result, commands = run_with(session.claim_group("q", 3), db)
    # the oldest messages go to the members still waiting, in position order
    assert result == [None, Message("a", 1), Message("b", 2)]
    assert commands == [Begin(), claim("q", 3), SealGroup(), ExecuteMany(UNCLAIM_BY_ID, [(3,)]), Commit()]
    assert db.unclaimed == [3]
    assert session.core.mutations == 2


def test_claim_group_with_withdrawals_on_both_sides() -> None:
    session = make_session()
    db = FakeDb().answer(CLAIM, [("a", 1), ("b", 2), ("c", 3), ("d", 4)])
    db.withdrawn = frozenset({0, 2})
    result, commands = run_with(session.claim_group("q", 4), db)
    assert result == [None, Message("a", 1), None, Message("b", 2)]
    assert commands[-2:] == [ExecuteMany(UNCLAIM_BY_ID, [(3,), (4,)]), Commit()]


def test_claim_group_with_fewer_messages_than_members_gives_trailing_none() -> None:
    session = make_session()
    db = FakeDb().answer(CLAIM, [("a", 1)])
    db.withdrawn = frozenset({1})
    result, commands = run_with(session.claim_group("q", 3), db)
    assert result == [Message("a", 1), None, None]
    assert commands == [Begin(), claim("q", 3), SealGroup(), Commit()]  # nothing to unclaim
    assert db.unclaimed == []
    assert session.core.mutations == 1


def test_claim_group_on_an_empty_queue() -> None:
    session = make_session(auto_vacuum_interval=1)
    result, commands = run_scripted(session.claim_group("q", 2), [None, [], frozenset(), None])
    assert result == [None, None]
    assert commands == [Begin(), claim("q", 2), SealGroup(), Commit()]
    assert session.core.mutations == 0  # no claim: no auto-vacuum check
    assert session.core.take_auto_vacuum() is False


def test_claim_group_every_member_withdrawn_rolls_back() -> None:
    session = make_session()
    db = FakeDb().answer(CLAIM, [("a", 1), ("b", 2)])
    db.withdrawn = frozenset({0, 1})
    result, commands = run_with(session.claim_group("q", 2), db)
    assert result == [None, None]
    assert commands == [Begin(), claim("q", 2), SealGroup(), Rollback()]
    assert db.unclaimed == []
    assert db.in_tx is False
    assert session.core.mutations == 0


def test_claim_group_of_one_uses_the_cached_plain_claim() -> None:
    session = make_session()
    step = Stepper(session.claim_group("q", 1))
    assert step.start() == Begin()
    statement = step.send(None)
    assert statement is session.core.plain_claim("q")
    assert statement == claim("q", 1)
    assert step.send([("a", 1)]) == SealGroup()
    assert step.send(frozenset()) == Commit()
    assert step.send(None) is None
    assert step.result == [Message("a", 1)]


def test_claim_group_of_one_withdrawn_rolls_back() -> None:
    session = make_session()
    result, commands = run_scripted(session.claim_group("q", 1), [None, [("a", 1)], frozenset({0}), None])
    assert result == [None]
    assert commands == [Begin(), claim("q", 1), SealGroup(), Rollback()]


@pytest.mark.parametrize(
    ("queue", "members", "error"),
    [
        ("-bad", 2, QueueNameError),
        ("", 2, QueueNameError),
        (b"q", 2, QueueNameTypeError),
        ("q", 0, InvalidInputError),
        ("q", -1, InvalidInputError),
        ("q", True, InvalidTypeError),
        ("q", "2", InvalidTypeError),
        ("q", 2.0, InvalidTypeError),
    ],
)
def test_claim_group_validates_before_any_command(queue: Any, members: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        make_session().claim_group(queue, members)


def test_claim_group_busy_at_commit_claims_and_seals_again() -> None:
    # The first attempt rolled back, so nobody got anything yet: the retry
    # asks again who still waits, and honours a member that left meanwhile.
    session = make_session()
    db = FakeDb().script(CLAIM, [("a", 1), ("b", 2)], [("a", 1), ("b", 2)])
    db.script(SealGroup, frozenset(), frozenset({0}))
    db.script(Commit, BUSY)
    result, commands = run_with(session.claim_group("q", 2), db)
    assert commands == [
        Begin(),
        claim("q", 2),
        SealGroup(),
        Commit(),
        Rollback(),
        Sleep(0.05),
        Begin(),
        claim("q", 2),
        SealGroup(),
        ExecuteMany(UNCLAIM_BY_ID, [(2,)]),
        Commit(),
    ]
    assert result == [None, Message("a", 1)]
    assert db.unclaimed == [2]
    assert session.core.mutations == 1


def test_claim_group_cancelled_rolls_back_and_raises() -> None:
    step = Stepper(make_session().claim_group("q", 2))
    step.start()
    assert step.send(None) == claim("q", 2)
    assert step.send([("a", 1)]) == SealGroup()
    assert step.throw(OperationCancelled("cancelled")) == Rollback()
    with pytest.raises(OperationCancelled):
        step.send(None)


def test_claim_group_database_error_propagates_after_rollback() -> None:
    session = make_session()
    db = FakeDb().script(CLAIM, DatabaseError("disk I/O error", 10))
    with pytest.raises(DatabaseError, match="disk I/O"):
        run_with(session.claim_group("q", 3), db)
    assert db.in_tx is False


def test_claim_group_counts_handed_over_claims_for_auto_vacuum() -> None:
    session = make_session(auto_vacuum_interval=3)
    db = FakeDb().answer(OVERALL, (0, 100))
    db.script(CLAIM, [("a", 1), ("b", 2), ("c", 3)], [("d", 4), ("e", 5)])
    db.script(SealGroup, frozenset({2}))
    _, commands = run_with(session.claim_group("q", 3), db)
    assert session.core.mutations == 2  # the third message went back
    assert commands[-1] == Commit()
    assert housekeeping(session, db) == []
    _, commands = run_with(session.claim_group("q", 2), db)
    assert commands[-1] == Commit()
    assert session.core.mutations == 4
    assert housekeeping(session, db) == [Execute(OVERALL, (), Fetch.ONE)]
    assert session.core.mutations == 1  # 4 % 3


# ------------------------------------------------------------ return_claims
def test_return_claims_is_one_transaction_of_one_upsert() -> None:
    session = make_session(auto_vacuum_interval=1)
    messages = [Message("a", NOW), Message("b", NOW + 7)]
    result, commands = run_scripted(session.return_claims("q", messages), [None, None, None])
    assert result is None
    assert commands == [
        Begin(),
        ExecuteMany(RETURN_CLAIMED, [("q", "a", NOW), ("q", "b", NOW + 7)]),
        Commit(),
    ]
    assert session.core.mutations == 0  # giving back is no claim: no vacuum check
    assert session.core.take_auto_vacuum() is False


def test_return_claims_retries_when_busy() -> None:
    session = make_session()
    db = FakeDb().script(Begin, BUSY)
    run_with(session.return_claims("q", [Message("a", 1)]), db)
    assert db.returned == [("q", "a", 1)]
    assert db.sleeps == [0.05]


def test_return_claims_rolls_back_on_error() -> None:
    db = FakeDb().script(ExecuteMany, DatabaseError("disk I/O error", 10))
    with pytest.raises(DatabaseError):
        run_with(make_session().return_claims("q", [Message("a", 1)]), db)
    assert db.returned == []
    assert db.in_tx is False


@pytest.mark.parametrize(("queue", "error"), [("-q", QueueNameError), (None, QueueNameTypeError)])
def test_return_claims_validates_the_queue_before_any_command(queue: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        make_session().return_claims(queue, [Message("a", 1)])


# -------------------------------------------------------------- check_write
def test_check_write_returns_the_validated_item() -> None:
    core = BrokerCore(Config(max_message_size=4))
    assert core.check_write("q", "abcd") == ("q", "abcd")
    assert core.check_write("q.1-x_", "éé") == ("q.1-x_", "éé")  # 4 bytes in UTF-8


@pytest.mark.parametrize(
    ("queue", "body", "error"),
    [
        ("-q", "x", QueueNameError),
        (".q", "x", QueueNameError),
        ("", "x", QueueNameError),
        ("a b", "x", QueueNameError),
        ("q" * 513, "x", QueueNameError),
        (1, "x", QueueNameTypeError),
        ("q", b"x", MessageTypeError),
        ("q", None, MessageTypeError),
        ("q", 5, MessageTypeError),
        ("q", "abcde", MessageError),  # 5 bytes
        ("q", "ééé", MessageError),  # 3 characters, 6 bytes
        ("q", "\ud800", MessageError),  # a lone surrogate is no UTF-8 text
    ],
)
def test_check_write_refuses_bad_input(queue: Any, body: Any, error: type[Exception]) -> None:
    core = BrokerCore(Config(max_message_size=4))
    with pytest.raises(error):
        core.check_write(queue, body)


# --------------------------------------------------- auto-vacuum scheduling
def auto_db(stats: tuple[object, object]) -> FakeDb:
    return FakeDb().answer(OVERALL, stats).answer(ANY_CLAIMED, (0,))


def checks(commands: list[Command]) -> int:
    return sum(1 for c in commands if isinstance(c, Execute) and c.sql == OVERALL)


def least_claims_to_due(core: BrokerCore, claimed: int, total: int) -> int:
    """Brute force: how many more claims (the table unchanged) make vacuum due."""
    k = 0
    while not core.vacuum_is_due(claimed + k, total):
        k += 1
    return k


@pytest.mark.parametrize(
    ("percent", "claimed", "total"),
    [
        (10.0, 0, 1_000_000),  # the 10,000-row ceiling comes first
        (10.0, 5_000, 1_000_000),
        (10.0, 0, 50_000),  # the threshold comes first
        (10.0, 1_000, 50_000),
        (10.0, 0, 12_345),  # a fractional threshold
        (50.0, 10, 1_000),
        (1.0, 0, 100_000),
        (100.0, 0, 5_000),
    ],
)
def test_checked_vacuum_waits_for_the_least_number_of_claims_that_could_make_it_due(
    percent: float, claimed: int, total: int
) -> None:
    core = BrokerCore(Config(auto_vacuum_interval=1, vacuum_threshold_percent=percent))
    core.checked_vacuum(claimed, total)
    least = least_claims_to_due(core, claimed, total)
    # never later than the first claim that makes it due, at most one early
    assert least - 1 <= core.next_vacuum_check <= least


def test_checked_vacuum_on_a_million_rows() -> None:
    core = BrokerCore(Config(auto_vacuum_interval=100, vacuum_threshold_percent=10))
    core.mutations = 150
    core.checked_vacuum(0, 1_000_000)
    # 10% would be 100,000, but more than 10,000 claimed rows make vacuum due anyway
    assert core.next_vacuum_check == VACUUM_CLAIMED_CEILING + 1
    assert core.mutations == 50
    core.checked_vacuum(0, 20_000)  # 10%: 2,000 claims
    assert core.next_vacuum_check == 2_000


@pytest.mark.parametrize(
    ("claimed", "total"),
    [(0, 0), (0, 50), (3, 50), (60, 100), (20_000, 1_000_000)],
    ids=["empty", "small", "small-some-claimed", "overdue", "over-ceiling"],
)
def test_checked_vacuum_never_waits_less_than_the_interval(claimed: int, total: int) -> None:
    core = BrokerCore(Config(auto_vacuum_interval=100, vacuum_threshold_percent=10))
    core.checked_vacuum(claimed, total)
    assert core.next_vacuum_check == 100


def test_a_big_table_defers_the_next_check() -> None:
    session = make_session(auto_vacuum_interval=100)
    db = auto_db((0, 1_000_000))
    _, commands = run_with(session.write_many("q", ["m"] * 100), db)
    assert checks(commands) == 0  # never inside the write
    assert checks(housekeeping(session, db)) == 1
    assert session.core.next_vacuum_check == 10_001
    assert session.core.mutations == 0
    _, commands = run_with(session.write_many("q", ["m"] * 10_000), db)
    assert checks(commands) == 0
    assert housekeeping(session, db) == []  # SimpleBroker would have counted the table 100 times
    assert session.core.mutations == 10_000
    _, commands = run_with(session.write("q", "m"), db)
    assert commands[-1] == Commit()
    assert housekeeping(session, db) == [Execute(OVERALL, (), Fetch.ONE)]
    assert session.core.mutations == 1  # 10,001 % 100


def test_a_small_table_keeps_checking_every_interval() -> None:
    session = make_session(auto_vacuum_interval=3)
    db = auto_db((0, 20))  # 10%: 2 claims, fewer than the interval
    seen = []
    for n in range(9):
        _, commands = run_with(session.write("q", str(n)), db)
        assert checks(commands) == 0
        seen.append(checks(housekeeping(session, db)))
    assert seen == [0, 0, 1] * 3
    assert session.core.next_vacuum_check == 3


def test_after_a_vacuum_the_gap_comes_from_what_remains() -> None:
    session = make_session(auto_vacuum_interval=1, vacuum_threshold_percent=10)
    db = FakeDb().answer(OVERALL, (3_000, 20_000))
    db.script(ANY_CLAIMED, (1,), (0,)).answer(DELETE_BATCH, 3_000)
    db.answer("PRAGMA auto_vacuum", (0,))
    _, commands = run_with(session.write("q", "a"), db)
    assert commands[-1] == Commit()
    commands = housekeeping(session, db)
    assert LockVacuumFile() in commands and commands[-1] == UnlockVacuumFile()
    # 17,000 rows and none claimed remain: 1,700 claims make vacuum due again
    # (from the counts before the vacuum it would check again at once)
    assert session.core.next_vacuum_check == 1_700


def test_when_another_process_holds_the_vacuum_lock_the_next_check_is_after_interval() -> None:
    session = make_session(auto_vacuum_interval=5, vacuum_threshold_percent=10)
    db = auto_db((3_000, 20_000))
    db.vacuum_lock_free = False
    _, commands = run_with(session.write_many("q", ["m"] * 5), db)
    assert commands[-1] == Commit()
    assert housekeeping(session, db) == [Execute(OVERALL, (), Fetch.ONE), LockVacuumFile()]
    assert session.core.next_vacuum_check == 5
    assert session.core.mutations == 0


def test_a_vacuum_deleting_more_than_counted_does_not_defer_the_next_check_too_far() -> None:
    session = make_session(auto_vacuum_interval=1, vacuum_threshold_percent=10)
    # The stats saw 100 claimed of 1,000; by the time the vacuum ran, other
    # processes had claimed 500 more, so it deleted 600 (until none was claimed).
    db = FakeDb().answer(OVERALL, (100, 1_000))
    db.script(ANY_CLAIMED, (1,), (0,)).answer(DELETE_BATCH, 600)
    db.answer("PRAGMA auto_vacuum", (0,))
    run_with(session.write("q", "a"), db)
    assert LockVacuumFile() in housekeeping(session, db)
    # 400 rows, none claimed, remain: 40 claims make vacuum due (the product waits 540)
    assert session.core.next_vacuum_check == 40


def test_a_failed_vacuum_is_retried_after_the_interval_not_after_every_commit() -> None:
    session = make_session(auto_vacuum_interval=3, retry=RetryPolicy(attempts=1))
    db = FakeDb().answer(OVERALL, (5, 5)).answer(ANY_CLAIMED, (1,))
    db.answer(DELETE_BATCH, lambda _: BusyError("database is locked", 5))
    seen: list[Command] = []

    def record(command: Command) -> Any:
        seen.append(command)
        return db(command)

    _, commands = run_with(session.write_many("q", ["a", "b", "c"]), db)
    assert checks(commands) == 0
    with pytest.raises(BusyError):
        housekeeping(session, record)
    assert isinstance(session.core.last_vacuum_error, BusyError)
    assert checks(seen) == 1
    for body in ("d", "e"):
        _, commands = run_with(session.write("q", body), db)
        assert checks(commands) == 0
        assert housekeeping(session, db) == []  # not after every commit
    run_with(session.write("q", "f"), db)
    seen.clear()
    with pytest.raises(BusyError):  # after the interval: checked (and failing) again
        housekeeping(session, record)
    assert checks(seen) == 1
