"""Commands are values: equal by their fields, hashable, printable, copyable, never changed."""

from __future__ import annotations

import copy
import pickle

import pytest

from sansio_broker.commands import (
    COMMIT,
    ROLLBACK,
    Begin,
    Commit,
    Execute,
    ExecuteMany,
    Fetch,
    ReadClock,
    Sleep,
)


def test_equal_by_fields_and_type() -> None:
    assert Execute("SELECT 1", (1,), Fetch.ALL, "q") == Execute("SELECT 1", (1,), Fetch.ALL, "q")
    assert Execute("SELECT 1", (1,)) != Execute("SELECT 1", (2,))
    assert Execute("SELECT 1") != Execute("SELECT 1", claims="q")
    assert Commit() == COMMIT and Commit() != ROLLBACK  # two commands without fields still differ
    assert Execute("x") != ("x", (), Fetch.NONE, None)  # not a tuple
    # Every Begin asks for the same thing, whatever the dialect spells it.
    assert Begin("BEGIN IMMEDIATE") == Begin("START TRANSACTION") and hash(Begin("a")) == hash(Begin("b"))
    assert len({Sleep(0.5), Sleep(0.5), Sleep(1.0), ReadClock(), ReadClock()}) == 3


def test_shown_with_their_fields() -> None:
    assert repr(Execute("SELECT 1", (1,), Fetch.ONE)) == (
        "Execute(sql='SELECT 1', params=(1,), fetch=<Fetch.ONE: 'one'>, claims=None)"
    )
    assert repr(COMMIT) == "Commit()" and repr(Sleep(0.25)) == "Sleep(seconds=0.25)"


def test_never_changed() -> None:
    command = ExecuteMany("INSERT", [(1,)])
    with pytest.raises(AttributeError, match="immutable"):
        command.sql = "DELETE"
    with pytest.raises(AttributeError, match="immutable"):
        del command.rows
    assert command.sql == "INSERT"


@pytest.mark.parametrize(
    "command", [Execute("SELECT ?", (1,), Fetch.ALL, "q"), ExecuteMany("I", [(1,)]), Begin("B"), COMMIT, Sleep(0.1)]
)
def test_copied_and_pickled_whole(command: object) -> None:
    for twin in (copy.copy(command), copy.deepcopy(command), pickle.loads(pickle.dumps(command))):
        assert twin == command and repr(twin) == repr(command)
