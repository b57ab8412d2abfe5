"""Aliases: SimpleBroker's ``@name`` rules (``sansio_broker.aliases``), the
alias operations of the session, ``rename_queue`` and streams on ``@alias``.

Texts and check order are SimpleBroker 8.7.2's (``db.py`` ``add_alias`` /
``_validate_alias_target`` / ``_validate_alias_invariants_locked`` /
``rename_queue``, ``_aliases.resolve_queue_operand``); the SQL is compared
with SimpleBroker's own statements where it has one.
"""

from __future__ import annotations

from typing import Any

import pytest
from simplebroker._sql import sqlite as sb_sql

from sansio_broker import (
    AliasError,
    AliasShadowsQueueWarning,
    DatabaseError,
    InvalidInputError,
    InvalidTypeError,
    Message,
    QueueNameError,
    QueueNameTypeError,
    RenameResult,
)
from sansio_broker import aliases as rules
from sansio_broker.driver import (
    Begin,
    ClaimStream,
    Commit,
    Execute,
    Fetch,
    PeekStream,
    ReadClock,
    Rollback,
    Stepper,
    open_stream,
)
from sansio_broker.streams import AliasStream
from sansio_broker.testing import run_scripted
from tests.core.core_testkit import NOW, PENDING, SQL, claim_sql, make_session, peek_sql

ALIAS_TARGET = "SELECT target FROM queue_aliases WHERE alias = ?"
LIST_ALIASES = "SELECT alias, target FROM queue_aliases ORDER BY alias"
INSERT_ALIAS = "INSERT INTO queue_aliases (alias, target) VALUES (?, ?)"
DELETE_ALIAS = "DELETE FROM queue_aliases WHERE alias = ?"
SET_ALIAS_VERSION = "UPDATE meta SET value = ? WHERE key = 'alias_version'"
RETARGET_ALIASES = "UPDATE queue_aliases SET target = ? WHERE target = ?"
RENAME_QUEUE = "UPDATE messages SET queue = ? WHERE queue = ?"
QUEUE_EXISTS = SQL.QUEUE_EXISTS


def flat(sql: str) -> str:
    """A statement with its layout folded, for comparing with SimpleBroker's."""
    return " ".join(sql.split())


def target_of(alias: str) -> Execute:
    return Execute(ALIAS_TARGET, (alias,), Fetch.ONE)


def exists(queue: str) -> Execute:
    return Execute(QUEUE_EXISTS, (queue,), Fetch.ONE)


BUMP = [ReadClock(), Execute(SET_ALIAS_VERSION, (NOW,))]


def test_alias_statements_are_the_contract_text_and_simplebrokers() -> None:
    assert (SQL.ALIAS_TARGET, SQL.LIST_ALIASES) == (ALIAS_TARGET, LIST_ALIASES)
    assert (SQL.INSERT_ALIAS, SQL.DELETE_ALIAS, SQL.SET_ALIAS_VERSION) == (
        INSERT_ALIAS,
        DELETE_ALIAS,
        SET_ALIAS_VERSION,
    )
    assert (SQL.RETARGET_ALIASES, SQL.RENAME_QUEUE) == (RETARGET_ALIASES, RENAME_QUEUE)
    # The same statements SimpleBroker runs on the same tables (layout aside).
    assert flat(sb_sql.INSERT_ALIAS) == INSERT_ALIAS
    assert flat(sb_sql.DELETE_ALIAS) == DELETE_ALIAS
    assert flat(sb_sql.UPDATE_ALIAS_VERSION) == SET_ALIAS_VERSION
    assert flat(sb_sql.RETARGET_ALIASES) == RETARGET_ALIASES
    assert flat(sb_sql.RENAME_QUEUE_MESSAGES) == RENAME_QUEUE
    assert flat(sb_sql.SELECT_ALIASES) + " ORDER BY alias" == LIST_ALIASES


# -------------------------------------------------------------- the rules
@pytest.mark.parametrize("name", ["q", "jobs.a", "", "a@b", 7, None, b"@w"])
def test_only_an_at_sign_prefix_names_an_alias(name: object) -> None:
    assert rules.alias_of(name) is None


def test_alias_of_strips_the_prefix_once() -> None:
    assert rules.alias_of("@w") == "w"
    assert rules.alias_of("@@w") == "@w"  # then "not defined": no alias may start with "@"
    assert rules.alias_of("@bad name") == "bad name"  # looked up, never a queue name


def test_a_bare_at_sign_is_an_empty_alias() -> None:
    with pytest.raises(AliasError, match=r"^Alias name cannot be empty$") as caught:
        rules.alias_of("@")
    assert isinstance(caught.value, InvalidInputError) and isinstance(caught.value, ValueError)


def test_not_defined_text() -> None:
    error = rules.not_defined("nope")
    assert isinstance(error, AliasError)
    assert str(error) == "Alias 'nope' is not defined"


@pytest.mark.parametrize(
    ("alias", "target", "error", "text"),
    [
        # SimpleBroker's order: same names, "@" target, empty target, then the names.
        ("same", "same", AliasError, "Alias and target must differ"),
        ("", "", AliasError, "Alias and target must differ"),
        ("-x", "-x", AliasError, "Alias and target must differ"),
        ("w2", "@tasks", AliasError, "Target names should not include the '@' prefix"),
        ("bad name", "@tasks", AliasError, "Target names should not include the '@' prefix"),
        ("w", "", AliasError, "Alias target cannot be empty"),
        ("bad name", "", AliasError, "Alias target cannot be empty"),
        ("@w2", "tasks", QueueNameError, "Invalid queue name '@w2'"),
        ("", "tasks", QueueNameError, "Invalid queue name ''"),
        ("w", ".tasks", QueueNameError, "Invalid queue name '.tasks'"),
        ("w", 5, InvalidTypeError, "alias and target must be str"),
        (None, "t", InvalidTypeError, "alias and target must be str"),
    ],
)
def test_check_new_refuses_in_simplebrokers_order(alias: Any, target: Any, error: type[Exception], text: str) -> None:
    with pytest.raises(error) as caught:
        rules.check_new(alias, target)
    assert str(caught.value).startswith(text)


def test_check_new_returns_both_names() -> None:
    assert rules.check_new("w", "jobs") == ("w", "jobs")


@pytest.mark.parametrize(
    ("alias", "target", "text"),
    [
        ("w", "jobs", "Alias 'w' already exists"),
        ("w", "x", "Alias 'w' already exists"),  # before "Cannot target another alias"
        ("y", "w", "Cannot target another alias"),
        ("jobs", "w", "Cannot target another alias"),  # before "existing alias target"
        ("jobs", "other", "Cannot turn an existing alias target into an alias"),
    ],
)
def test_check_against_the_aliases_that_exist(alias: str, target: str, text: str) -> None:
    current = {"w": "jobs", "x": "logs"}
    with pytest.raises(AliasError, match=f"^{text}$"):
        rules.check_against(alias, target, current)


def test_check_against_passes_a_new_alias_of_a_shared_target() -> None:
    rules.check_against("w2", "jobs", {"w": "jobs"})  # two aliases may share a target
    rules.check_against("w", "jobs", {})


def test_shadow_warning_is_simplebrokers_text() -> None:
    assert rules.shadow_warning("tasks2", "tasks") == (
        "Queue 'tasks2' already exists with messages. The alias @tasks2 will redirect to 'tasks' "
        "while the queue tasks2 remains accessible directly."
    )
    assert issubclass(AliasShadowsQueueWarning, UserWarning)


def test_check_operand() -> None:
    assert rules.check_operand("q") == "q"
    assert rules.check_operand("@w") == "@w"
    assert rules.check_operand("@not a queue name") == "@not a queue name"  # resolved later, not a name
    with pytest.raises(AliasError, match=r"^Alias name cannot be empty$"):
        rules.check_operand("@")
    with pytest.raises(QueueNameError):
        rules.check_operand("bad name")
    with pytest.raises(QueueNameTypeError):
        rules.check_operand(5)


# ------------------------------------------------------------- resolution
def test_a_plain_name_resolves_to_itself_without_a_statement() -> None:
    step = Stepper(make_session().resolve_queue("w"))
    assert step.start() is None  # a plain name is always the literal queue, even if alias "w" exists
    assert step.result == "w"


def test_resolving_an_alias_reads_its_target() -> None:
    result, commands = run_scripted(make_session().resolve_queue("@w"), [("jobs",)])
    assert result == "jobs"
    assert commands == [target_of("w")]


def test_an_unknown_alias_is_not_defined() -> None:
    with pytest.raises(AliasError, match=r"^Alias 'nope' is not defined$"):
        run_scripted(make_session().resolve_queue("@nope"), [None])


def test_resolve_refuses_before_any_statement() -> None:
    session = make_session()
    with pytest.raises(AliasError, match=r"^Alias name cannot be empty$"):
        session.resolve_queue("@")
    with pytest.raises(QueueNameError):
        session.resolve_queue("bad name")
    with pytest.raises(QueueNameTypeError):
        session.resolve_queue(None)  # type: ignore[arg-type]


def test_list_aliases_reads_them_sorted_by_the_database() -> None:
    result, commands = run_scripted(make_session().list_aliases(), [[("a", "jobs"), ("w", "logs")]])
    assert result == [("a", "jobs"), ("w", "logs")]
    assert commands == [Execute(LIST_ALIASES, (), Fetch.ALL)]
    assert run_scripted(make_session().list_aliases(), [[]])[0] == []


# -------------------------------------------------------------- add_alias
@pytest.mark.parametrize(("has_rows", "shadows"), [((0,), False), ((1,), True)])
def test_add_alias_is_one_transaction_that_bumps_the_alias_version(has_rows: tuple[int], shadows: bool) -> None:
    session = make_session()
    result, commands = run_scripted(
        session.add_alias("w", "jobs"), [None, [("x", "logs")], has_rows, None, NOW, None, None]
    )
    assert result is shadows  # True: a queue "w" has rows, the caller warns
    assert commands == [
        Begin(),
        Execute(LIST_ALIASES, (), Fetch.ALL),
        exists("w"),
        Execute(INSERT_ALIAS, ("w", "jobs")),
        *BUMP,  # SimpleBroker's readers cache aliases by meta.alias_version = time_ns()
        Commit(),
    ]


@pytest.mark.parametrize(
    ("alias", "target", "text"),
    [
        ("w", "jobs", "Alias 'w' already exists"),
        ("y", "w", "Cannot target another alias"),
        ("jobs", "z", "Cannot turn an existing alias target into an alias"),
    ],
)
def test_add_alias_refused_by_the_table_rolls_back_without_writing(alias: str, target: str, text: str) -> None:
    step = Stepper(make_session().add_alias(alias, target))
    assert step.start() == Begin()
    assert step.send(None) == Execute(LIST_ALIASES, (), Fetch.ALL)
    assert step.send([("w", "jobs")]) == Rollback()
    with pytest.raises(AliasError, match=f"^{text}$"):
        step.send(None)
    assert Execute(INSERT_ALIAS, (alias, target)) not in step.commands


def test_add_alias_a_failing_insert_rolls_back() -> None:
    step = Stepper(make_session().add_alias("w", "jobs"))
    step.start()
    answers: tuple[Any, ...] = (None, [], (0,))
    for answer in answers:
        step.send(answer)
    assert step.commands[-1] == Execute(INSERT_ALIAS, ("w", "jobs"))
    assert step.throw(DatabaseError("UNIQUE constraint failed: queue_aliases.alias")) == Rollback()
    with pytest.raises(DatabaseError, match="UNIQUE"):
        step.send(None)


def test_add_alias_validates_before_any_statement() -> None:
    session = make_session()
    for alias, target, error in (
        ("w", "w", AliasError),
        ("w", "@jobs", AliasError),
        ("w", "", AliasError),
        ("@w", "jobs", QueueNameError),
        ("w", "bad name", QueueNameError),
        ("w", None, InvalidTypeError),
    ):
        with pytest.raises(error):
            session.add_alias(alias, target)  # type: ignore[arg-type]


# ----------------------------------------------------------- remove_alias
def test_remove_alias_deletes_and_bumps_the_version() -> None:
    result, commands = run_scripted(make_session().remove_alias("w"), [None, 1, NOW, None, None])
    assert result is True
    assert commands == [Begin(), Execute(DELETE_ALIAS, ("w",), Fetch.ROWCOUNT), *BUMP, Commit()]


def test_removing_an_alias_that_does_not_exist_changes_nothing() -> None:
    result, commands = run_scripted(make_session().remove_alias("nope"), [None, 0, None])
    assert result is False
    assert commands == [Begin(), Execute(DELETE_ALIAS, ("nope",), Fetch.ROWCOUNT), Commit()]


def test_remove_alias_takes_the_name_literally() -> None:
    # SimpleBroker: `alias remove @w` -> "alias '@w' does not exist": no sigil, no resolution.
    result, commands = run_scripted(make_session().remove_alias("@w"), [None, 0, None])
    assert result is False
    assert commands[1] == Execute(DELETE_ALIAS, ("@w",), Fetch.ROWCOUNT)


def test_remove_alias_refuses_a_non_str() -> None:
    with pytest.raises(InvalidTypeError, match=r"^alias must be a str, not int$"):
        make_session().remove_alias(5)  # type: ignore[arg-type]


# ---------------------------------------------------------- rename_queue
def test_rename_moves_every_row_and_retargets_the_aliases() -> None:
    session = make_session()
    result, commands = run_scripted(session.rename_queue("tasks", "jobs"), [None, (0,), 2, 3, NOW, None, None])
    assert result == RenameResult("tasks", "jobs", 2, 3, True)
    assert commands == [
        Begin(),
        exists("jobs"),
        Execute(RENAME_QUEUE, ("jobs", "tasks"), Fetch.ROWCOUNT),  # claimed rows too
        Execute(RETARGET_ALIASES, ("jobs", "tasks"), Fetch.ROWCOUNT),
        *BUMP,
        Commit(),
    ]
    assert session.take_changes() == frozenset({"jobs"})  # its pending messages may wake a waiter


def test_rename_without_aliases_to_retarget_leaves_the_version() -> None:
    result, commands = run_scripted(make_session().rename_queue("tasks", "jobs"), [None, (0,), 2, 0, None])
    assert result == RenameResult("tasks", "jobs", 2, 0, True)
    assert ReadClock() not in commands
    assert commands[-2:] == [Execute(RETARGET_ALIASES, ("jobs", "tasks"), Fetch.ROWCOUNT), Commit()]


@pytest.mark.parametrize("retarget", [False, 0, None])
def test_rename_can_leave_the_aliases_alone(retarget: Any) -> None:
    result, commands = run_scripted(
        make_session().rename_queue("jobs", "tasks", retarget_aliases=retarget), [None, (0,), 2, None]
    )
    assert result == RenameResult("jobs", "tasks", 2, 0, True)
    assert commands == [Begin(), exists("tasks"), Execute(RENAME_QUEUE, ("tasks", "jobs"), Fetch.ROWCOUNT), Commit()]


def test_renaming_a_queue_without_rows_is_no_error_and_retargets_nothing() -> None:
    session = make_session()
    result, commands = run_scripted(session.rename_queue("nothere", "zz"), [None, (0,), 0, None])
    assert result == RenameResult("nothere", "zz", 0, 0, False)
    assert commands == [Begin(), exists("zz"), Execute(RENAME_QUEUE, ("zz", "nothere"), Fetch.ROWCOUNT), Commit()]
    assert session.take_changes() == frozenset()


def test_renaming_onto_a_queue_with_rows_is_refused_before_any_change() -> None:
    step = Stepper(make_session().rename_queue("tasks", "zz"))
    step.start()
    assert step.send(None) == exists("zz")
    assert step.send((1,)) == Rollback()
    with pytest.raises(InvalidInputError, match=r"^Target queue already exists$"):
        step.send(None)


def test_renaming_a_queue_to_itself_is_refused() -> None:
    step = Stepper(make_session().rename_queue("tasks", "tasks"))
    step.start()
    assert step.send(None) == Rollback()  # nothing read or written
    with pytest.raises(InvalidInputError, match=r"^Source and target queues cannot be the same$"):
        step.send(None)


def test_rename_resolves_both_operands_and_answers_with_the_queues() -> None:
    # SimpleBroker: `rename @w x` -> {"old_queue": "jobs", ...}; `rename tasks @w` renames into w's target.
    result, commands = run_scripted(
        make_session().rename_queue("@w", "x"), [None, ("jobs",), (0,), 2, 3, NOW, None, None]
    )
    assert result == RenameResult("jobs", "x", 2, 3, True)
    assert commands[1:4] == [target_of("w"), exists("x"), Execute(RENAME_QUEUE, ("x", "jobs"), Fetch.ROWCOUNT)]
    result, commands = run_scripted(make_session().rename_queue("tasks", "@w"), [None, ("jobs",), (0,), 1, 0, None])
    assert result == RenameResult("tasks", "jobs", 1, 0, True)
    assert commands[1:3] == [target_of("w"), exists("jobs")]


def test_renaming_a_queue_onto_its_own_alias_is_the_same_queue() -> None:
    step = Stepper(make_session().rename_queue("jobs", "@w"))
    step.start()
    assert step.send(None) == target_of("w")
    assert step.send(("jobs",)) == Rollback()
    with pytest.raises(InvalidInputError, match=r"^Source and target queues cannot be the same$"):
        step.send(None)


def test_rename_with_an_unknown_alias_rolls_back() -> None:
    step = Stepper(make_session().rename_queue("@nope", "x"))
    step.start()
    assert step.send(None) == target_of("nope")
    assert step.send(None) == Rollback()
    with pytest.raises(AliasError, match=r"^Alias 'nope' is not defined$"):
        step.send(None)


def test_rename_validates_before_any_statement() -> None:
    session = make_session()
    with pytest.raises(AliasError, match=r"^Alias name cannot be empty$"):
        session.rename_queue("@", "x")
    with pytest.raises(AliasError):
        session.rename_queue("x", "@")
    with pytest.raises(QueueNameError):
        session.rename_queue("bad name", "x")
    with pytest.raises(QueueNameError):
        session.rename_queue("x", ".hidden")
    with pytest.raises(QueueNameTypeError):
        session.rename_queue("x", None)  # type: ignore[arg-type]


# ------------------------------------------------------ streams on @alias
def test_an_alias_stream_resolves_once_then_claims_from_the_target() -> None:
    session = make_session()
    stream = open_stream(session, "@w")
    assert isinstance(stream, AliasStream)
    statement = Execute(claim_sql(PENDING), ("jobs", 1), Fetch.ALL, "jobs")
    batch, commands = run_scripted(stream.next_batch(), [("jobs",), None, [("a", 1)], None])
    assert batch == [Message("a", 1)]
    assert commands == [target_of("w"), Begin(), statement, Commit()]
    # The next batch claims from the same target without looking the alias up
    # again: an alias retargeted meanwhile does not move a running stream.
    batch, commands = run_scripted(stream.next_batch(), [None, [], None])
    assert (batch, commands) == ([], [Begin(), statement, Commit()])
    assert run_scripted(stream.close(), []) == (None, [])


def test_an_alias_stream_closed_before_its_first_batch_sends_nothing() -> None:
    stream = open_stream(make_session(), "@w")
    assert run_scripted(stream.close(), []) == (None, [])


def test_an_at_least_once_alias_stream_rolls_its_open_batch_back_on_close() -> None:
    session = make_session()
    stream = open_stream(session, "@w", commit_interval=5)
    batch, commands = run_scripted(stream.next_batch(), [("jobs",), None, [("b", 2), ("a", 1)]])
    assert batch == [Message("a", 1), Message("b", 2)]
    assert commands == [target_of("w"), Begin(), Execute(claim_sql(PENDING), ("jobs", 5), Fetch.ALL, "jobs")]
    assert session.stream_holding_lock is not None
    _, commands = run_scripted(stream.close(), [None])
    assert commands == [Rollback()]  # delivered again
    assert session.stream_holding_lock is None


@pytest.mark.parametrize(
    ("options", "answers", "statement"),
    [
        ({"peek": True}, [("jobs",), [("a", 1)]], Execute(peek_sql(PENDING), ("jobs", 100), Fetch.ALL)),
        (
            {"all_messages": False, "peek": True},
            [("jobs",), [("a", 1)]],
            Execute(peek_sql(PENDING), ("jobs", 1), Fetch.ALL),
        ),
        (
            {"message_id": "0000000000000000001"},
            [("jobs",), None, [("a", 1)], None],
            Execute(claim_sql("ts = ? AND queue = ? AND claimed = 0"), (1, "jobs", 1), Fetch.ALL, "jobs"),
        ),
    ],
)
def test_an_alias_stream_keeps_every_option(options: dict[str, Any], answers: list[Any], statement: Execute) -> None:
    stream = open_stream(make_session(), "@w", **options)
    batch, commands = run_scripted(stream.next_batch(), answers)
    assert batch == [Message("a", 1)]
    assert commands[0] == target_of("w")
    assert statement in commands


def test_an_alias_stream_on_an_unknown_alias_fails_at_its_first_batch() -> None:
    stream = open_stream(make_session(), "@nope")
    with pytest.raises(AliasError, match=r"^Alias 'nope' is not defined$"):
        run_scripted(stream.next_batch(), [None])


def test_a_stream_on_a_bare_at_sign_is_refused_when_opened() -> None:
    with pytest.raises(AliasError, match=r"^Alias name cannot be empty$"):
        open_stream(make_session(), "@")


def test_plain_names_still_open_the_plain_streams() -> None:
    session = make_session()
    assert isinstance(open_stream(session, "w"), ClaimStream)
    assert isinstance(open_stream(session, "w", peek=True), PeekStream)


@pytest.mark.parametrize(
    "options",
    [{"commit_interval": 0}, {"after": "5"}, {"message_id": "123"}, {"message_id": 1, "after": 2}],
)
def test_an_alias_stream_refuses_bad_arguments_when_opened(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        open_stream(make_session(), "q", **options)  # a plain name: refused at once
    with pytest.raises(InvalidInputError):
        open_stream(make_session(), "@w", **options)
