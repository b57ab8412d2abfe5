"""write, write_many, broadcast and the ID allocation they share (Session._allocate_ids)."""

from __future__ import annotations

import pytest

from sansio_broker import DatabaseError, IntegrityError, InvalidTypeError, MessageError, QueueNameError, TimestampError
from sansio_broker.driver import Begin, Commit, Execute, ExecuteMany, Fetch, ReadClock, Rollback, Sleep
from sansio_broker.testing import Stepper, run_scripted, run_with
from tests.core.core_testkit import NOW, SQL, TICK, FakeDb, kinds, make_session

ADVANCE = "UPDATE meta SET value = ? WHERE key = 'last_ts' AND value < ? RETURNING value"
READ_LAST = "SELECT value FROM meta WHERE key = 'last_ts'"
INSERT = "INSERT INTO messages (queue, body, ts) VALUES (?, ?, ?)"
LIST_QUEUES = "SELECT DISTINCT queue FROM messages ORDER BY queue"
MAX_TS = "SELECT MAX(ts) FROM messages"


def test_sql_constants_are_the_contract_text() -> None:
    assert SQL.ADVANCE_LAST_TS == ADVANCE
    assert SQL.READ_LAST_TS == READ_LAST
    assert SQL.INSERT_MESSAGE == INSERT
    assert SQL.LIST_QUEUES == LIST_QUEUES
    assert SQL.BEGIN_WRITE == "BEGIN IMMEDIATE"
    begin = Stepper(make_session().write("q", "x")).start()
    assert isinstance(begin, Begin) and begin.sql == "BEGIN IMMEDIATE"
    assert Commit.sql == "COMMIT"
    assert Rollback.sql == "ROLLBACK"


# ------------------------------------------------------------------- write
def test_write_emits_the_exact_transaction_and_returns_the_id() -> None:
    session = make_session()
    result, commands = run_scripted(session.write("tasks", "hi"), [None, NOW, (NOW,), None, None])
    assert result == NOW
    assert commands == [
        Begin(),
        ReadClock(),
        Execute(ADVANCE, (NOW, NOW), Fetch.ONE),
        Execute(INSERT, ("tasks", "hi", NOW)),
        Commit(),
    ]
    assert session.core.last_id == NOW
    assert session.core.mutations == 1


def test_second_write_in_the_same_tick_takes_the_next_counter() -> None:
    session = make_session()
    db = FakeDb()
    first, _ = run_with(session.write("q", "a"), db)
    second, commands = run_with(session.write("q", "b"), db)
    assert (first, second) == (NOW, NOW + 1)
    assert commands[2] == Execute(ADVANCE, (NOW + 1, NOW + 1), Fetch.ONE)
    assert db.inserted == [("q", "a", NOW), ("q", "b", NOW + 1)]
    assert db.last_ts == NOW + 1


def test_write_after_the_clock_moved_uses_the_new_tick_with_counter_zero() -> None:
    session = make_session()
    db = FakeDb()
    run_with(session.write("q", "a"), db)
    db.now = NOW + 3 * TICK + 17
    second, _ = run_with(session.write("q", "b"), db)
    assert second == NOW + 3 * TICK


def test_write_validates_before_any_command() -> None:
    session = make_session(max_message_size=4)
    with pytest.raises(QueueNameError):
        session.write("-bad", "x")
    with pytest.raises(MessageError):
        session.write("q", "12345")
    with pytest.raises(InvalidTypeError):
        session.write("q", b"bytes")  # type: ignore[arg-type]


def test_write_returns_generator_that_has_not_run() -> None:
    session = make_session()
    step = Stepper(session.write("q", "x"))
    assert step.commands == []
    assert step.start() == Begin()


# -------------------------------------------------------------- write_many
def test_write_many_allocates_one_block_and_inserts_with_one_executemany() -> None:
    session = make_session()
    result, commands = run_scripted(session.write_many("q", ["a", "b", "c"]), [None, NOW, (NOW + 2,), None, None])
    assert result == [NOW, NOW + 1, NOW + 2]
    assert commands == [
        Begin(),
        ReadClock(),
        Execute(ADVANCE, (NOW + 2, NOW), Fetch.ONE),
        ExecuteMany(INSERT, [("q", "a", NOW), ("q", "b", NOW + 1), ("q", "c", NOW + 2)]),
        Commit(),
    ]
    assert session.core.mutations == 3
    assert session.core.last_id == NOW + 2


def test_write_many_accepts_any_iterable_and_validates_every_body_up_front() -> None:
    session = make_session(max_message_size=3)
    db = FakeDb()
    ids, _ = run_with(session.write_many("q", (b for b in ["x", "y"])), db)
    assert ids == [NOW, NOW + 1]
    with pytest.raises(MessageError):
        session.write_many("q", ["ok", "toolong"])
    with pytest.raises(InvalidTypeError):
        session.write_many("q", "abc")
    with pytest.raises(InvalidTypeError):
        session.write_many("q", [1])  # type: ignore[list-item]
    with pytest.raises(QueueNameError):
        session.write_many(".q", ["x"])


def test_write_many_empty_inserts_nothing() -> None:
    session = make_session()
    result, commands = run_scripted(session.write_many("q", []), [None, None])
    assert result == []
    assert commands == [Begin(), Commit()]
    assert session.core.mutations == 0


def test_write_many_block_larger_than_the_counter_space_stays_consecutive() -> None:
    session = make_session(auto_vacuum=False)
    db = FakeDb()
    ids, _ = run_with(session.write_many("q", ["m"] * 5000), db)
    assert ids == list(range(NOW, NOW + 5000))
    assert db.last_ts == NOW + 4999


# --------------------------------------------------------------- broadcast
def test_broadcast_writes_to_every_existing_queue_in_one_transaction() -> None:
    session = make_session()
    result, commands = run_scripted(
        session.broadcast("hello"),
        [None, [("a",), ("b",)], NOW, (NOW + 1,), None, None],
    )
    assert result == 2
    assert commands == [
        Begin(),
        Execute(LIST_QUEUES, (), Fetch.ALL),
        ReadClock(),
        Execute(ADVANCE, (NOW + 1, NOW), Fetch.ONE),
        ExecuteMany(INSERT, [("a", "hello", NOW), ("b", "hello", NOW + 1)]),
        Commit(),
    ]
    assert session.core.mutations == 2


@pytest.mark.parametrize(
    ("pattern", "targets"),
    [
        ("a*", ["alpha", "apple"]),
        ("?eta", ["beta"]),
        ("[ab]*", ["alpha", "apple", "beta"]),
        ("A*", []),  # fnmatchcase: case-sensitive
        ("alpha", ["alpha"]),
    ],
)
def test_broadcast_pattern_filters_with_a_case_sensitive_glob(pattern: str, targets: list[str]) -> None:
    session = make_session()
    db = FakeDb().answer(LIST_QUEUES, [("alpha",), ("apple",), ("beta",), ("gamma",)])
    result, _ = run_with(session.broadcast("m", pattern=pattern), db)
    assert result == len(targets)
    assert [row[0] for row in db.inserted] == targets
    assert [row[2] for row in db.inserted] == list(range(NOW, NOW + len(targets)))


def test_broadcast_with_no_target_returns_zero_and_inserts_nothing() -> None:
    session = make_session(auto_vacuum_interval=1)
    result, commands = run_scripted(session.broadcast("m", pattern="zzz*"), [None, [("a",)], None])
    assert result == 0
    assert commands == [Begin(), Execute(LIST_QUEUES, (), Fetch.ALL), Commit()]
    # no mutation, so no auto-vacuum check either
    assert session.core.mutations == 0
    assert session.core.take_auto_vacuum() is False


def test_broadcast_to_an_empty_database() -> None:
    result, commands = run_scripted(make_session().broadcast("m"), [None, [], None])
    assert result == 0
    assert kinds(commands) == ["Begin", "Execute", "Commit"]


def test_broadcast_validates_before_any_command() -> None:
    session = make_session(max_message_size=2)
    with pytest.raises(MessageError):
        session.broadcast("abc")
    with pytest.raises(InvalidTypeError):
        session.broadcast("a", pattern=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError):
        session.broadcast(None)  # type: ignore[arg-type]


# ----------------------------------------------------- ID allocation (CAS)
def test_cas_failure_rereads_last_ts_and_retries_with_the_fresher_value() -> None:
    session = make_session()
    other = NOW + 5  # another process allocated after our cached hint
    result, commands = run_scripted(
        session.write("q", "x"),
        [None, NOW, None, (other,), (other + 1,), None, None],
    )
    assert result == other + 1
    assert commands == [
        Begin(),
        ReadClock(),
        Execute(ADVANCE, (NOW, NOW), Fetch.ONE),
        Execute(READ_LAST, (), Fetch.ONE),
        Execute(ADVANCE, (other + 1, other + 1), Fetch.ONE),
        Execute(INSERT, ("q", "x", other + 1)),
        Commit(),
    ]
    assert session.core.last_id == other + 1


def test_cas_failure_for_a_block_moves_the_whole_block() -> None:
    session = make_session()
    db = FakeDb(last_ts=NOW + 10)
    ids, commands = run_with(session.write_many("q", ["a", "b"]), db)
    assert ids == [NOW + 11, NOW + 12]
    advances = [c for c in commands if isinstance(c, Execute) and c.sql == ADVANCE]
    assert advances == [
        Execute(ADVANCE, (NOW + 1, NOW), Fetch.ONE),
        Execute(ADVANCE, (NOW + 12, NOW + 11), Fetch.ONE),
    ]


def test_missing_last_ts_row_is_a_timestamp_error_and_rolls_back() -> None:
    session = make_session()
    db = FakeDb(last_ts=None)
    with pytest.raises(TimestampError, match="last_ts"):
        run_with(session.write("q", "x"), db)
    assert db.inserted == []
    assert db.in_tx is False


def test_missing_last_ts_row_command_sequence() -> None:
    step = Stepper(make_session().write("q", "x"))
    step.start()
    step.send(None)
    assert step.send(NOW) == Execute(ADVANCE, (NOW, NOW), Fetch.ONE)
    assert step.send(None) == Execute(READ_LAST, (), Fetch.ONE)
    assert step.send(None) == Rollback()
    with pytest.raises(TimestampError):
        step.send(None)


def test_cas_that_never_succeeds_gives_up_after_six_attempts() -> None:
    session = make_session()

    def respond(command: object) -> object:
        if isinstance(command, ReadClock):
            return NOW
        if isinstance(command, Execute) and command.sql == ADVANCE:
            return None
        if isinstance(command, Execute) and command.sql == READ_LAST:
            return (NOW - 1,)  # a value the next CAS would beat, yet the CAS keeps losing
        return None

    with pytest.raises(TimestampError, match="6 attempts"):
        run_with(session.write("q", "x"), respond)


def _exhausted_future_db(ahead_ns: int) -> FakeDb:
    last = ((NOW + ahead_ns) & ~0xFFF) | 0xFFE
    return FakeDb(last_ts=last)


def test_far_future_last_ts_continues_with_last_plus_one() -> None:
    session = make_session()
    db = FakeDb(last_ts=NOW + 2_000_000_000)
    first, _ = run_with(session.write("q", "a"), db)
    second, _ = run_with(session.write("q", "b"), db)
    assert (first, second) == (NOW + 2_000_000_001, NOW + 2_000_000_002)
    assert db.sleeps == []


def test_exhausted_counter_sleeps_then_reads_the_clock_again() -> None:
    session = make_session()
    db = _exhausted_future_db(2_000_000_000)
    last = db.last_ts
    assert last is not None
    first, _ = run_with(session.write("q", "a"), db)
    assert first == last + 1  # counter 0xFFF: the last one of that tick
    second, commands = run_with(session.write("q", "b"), db)
    # The counter is used up: the op waits (Sleep) for the clock, then reads it again.
    sleep_at = kinds(commands).index("Sleep")
    assert kinds(commands)[sleep_at : sleep_at + 2] == ["Sleep", "ReadClock"]
    assert kinds(commands)[:2] == ["Begin", "ReadClock"]
    assert 1.9 < sum(db.sleeps) <= 2.1
    assert second == (last & ~0xFFF) + TICK  # the next tick, counter 0
    assert second > first


def test_clock_that_never_catches_up_gives_up_after_about_five_seconds() -> None:
    session = make_session()
    db = _exhausted_future_db(1_000_000_000)
    run_with(session.write("q", "a"), db)  # takes the last counter value
    db.sleep_advances_clock = False  # a stuck clock
    db.inserted.clear()
    with pytest.raises(TimestampError, match="counter exhausted"):
        run_with(session.write("q", "b"), db)
    assert 4.0 <= sum(db.sleeps) <= 5.0
    assert db.inserted == []
    assert db.in_tx is False  # rolled back


def test_last_ts_further_ahead_than_the_wait_budget_never_sleeps_past_it() -> None:
    session = make_session()
    db = _exhausted_future_db(30_000_000_000)
    run_with(session.write("q", "a"), db)
    with pytest.raises(TimestampError):
        run_with(session.write("q", "b"), db)
    assert sum(db.sleeps) <= 5.0
    assert db.in_tx is False


def test_ids_past_the_int64_limit_are_a_timestamp_error() -> None:
    session = make_session()
    db = FakeDb(last_ts=2**63 - 3)
    with pytest.raises(TimestampError, match="2\\*\\*63"):
        run_with(session.write_many("q", ["a", "b", "c"]), db)
    assert db.in_tx is False
    assert db.last_ts == 2**63 - 3
    # two IDs still fit
    ids, _ = run_with(session.write_many("q", ["a", "b"]), db)
    assert ids == [2**63 - 2, 2**63 - 1]


# ------------------------------------------------- IntegrityError -> resync
def test_duplicate_id_resyncs_last_ts_once_and_retries() -> None:
    session = make_session()
    newest = NOW + 500
    dup = IntegrityError("UNIQUE constraint failed: messages.ts", 19)
    result, commands = run_scripted(
        session.write("q", "x"),
        [
            None,  # Begin
            NOW,  # ReadClock
            (NOW,),  # ADVANCE
            dup,  # INSERT
            None,  # Rollback
            None,  # Begin (resync)
            (newest,),  # MAX_TS
            (newest,),  # ADVANCE to MAX(ts)
            None,  # Commit (resync)
            None,  # Begin (retry)
            NOW,  # ReadClock
            None,  # ADVANCE loses: last_ts is now `newest`
            (newest,),  # READ_LAST
            (newest + 1,),  # ADVANCE
            None,  # INSERT
            None,  # Commit
        ],
    )
    assert result == newest + 1
    assert commands == [
        Begin(),
        ReadClock(),
        Execute(ADVANCE, (NOW, NOW), Fetch.ONE),
        Execute(INSERT, ("q", "x", NOW)),
        Rollback(),
        Begin(),
        Execute(MAX_TS, (), Fetch.ONE),
        Execute(ADVANCE, (newest, newest), Fetch.ONE),
        Commit(),
        Begin(),
        ReadClock(),
        Execute(ADVANCE, (NOW, NOW), Fetch.ONE),
        Execute(READ_LAST, (), Fetch.ONE),
        Execute(ADVANCE, (newest + 1, newest + 1), Fetch.ONE),
        Execute(INSERT, ("q", "x", newest + 1)),
        Commit(),
    ]
    assert session.core.mutations == 1


def test_second_duplicate_id_is_raised_after_rollback() -> None:
    session = make_session()
    db = FakeDb().answer(MAX_TS, (None,))
    db.script(INSERT, IntegrityError("dup 1", 19), IntegrityError("dup 2", 19))
    with pytest.raises(IntegrityError, match="dup 2"):
        run_with(session.write("q", "x"), db)
    assert db.in_tx is False
    assert session.core.mutations == 0


def test_resync_on_empty_table_only_reads_max_ts() -> None:
    session = make_session()
    db = FakeDb().answer(MAX_TS, (None,))
    db.script(INSERT, IntegrityError("dup", 19))
    _, commands = run_with(session.write("q", "x"), db)
    resync = commands[commands.index(Rollback()) + 1 :][:3]
    assert resync == [Begin(), Execute(MAX_TS, (), Fetch.ONE), Commit()]


def test_write_many_also_resyncs_on_a_duplicate() -> None:
    session = make_session()
    db = FakeDb().answer(MAX_TS, (NOW + 9,))
    db.script(ExecuteMany, IntegrityError("dup", 19))
    ids, commands = run_with(session.write_many("q", ["a", "b"]), db)
    assert MAX_TS in [c.sql for c in commands if isinstance(c, Execute)]
    assert ids == [NOW + 10, NOW + 11]


def test_broadcast_duplicate_is_raised_after_rollback() -> None:
    session = make_session()
    db = FakeDb().answer(LIST_QUEUES, [("a",)])
    db.script(ExecuteMany, IntegrityError("dup", 19))
    with pytest.raises(IntegrityError):
        run_with(session.broadcast("m"), db)
    assert db.in_tx is False


def test_other_database_error_on_insert_is_not_retried() -> None:
    session = make_session()
    db = FakeDb()
    db.script(INSERT, DatabaseError("disk I/O error", 10))
    with pytest.raises(DatabaseError, match="disk I/O"):
        run_with(session.write("q", "x"), db)
    assert db.sleeps == []
    assert db.in_tx is False


def test_a_sleep_in_the_id_wait_is_a_real_sleep_command() -> None:
    session = make_session()
    db = _exhausted_future_db(1_000_000)
    run_with(session.write("q", "a"), db)
    _, commands = run_with(session.write("q", "b"), db)
    sleeps = [c for c in commands if isinstance(c, Sleep)]
    assert sleeps and all(0 < s.seconds <= 0.0011 for s in sleeps)
