"""The SQLite dialect's error classification, and the exception hierarchy."""

from __future__ import annotations

import pytest

from sansio_broker import (
    BrokerError,
    BusyError,
    ConfigError,
    DatabaseError,
    IntegrityError,
    InvalidInputError,
    InvalidTypeError,
    MessageError,
    MessageIdError,
    OutcomeUnknownError,
    QueueNameError,
    StatementInterruptedError,
)
from sansio_broker.errors import NotADatabaseDriverError
from sansio_broker.sqlite import SQLITE

classify = SQLITE.classify_error


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("database is locked", 5),
        ("anything", 5),  # SQLITE_BUSY
        ("anything", 6),  # SQLITE_LOCKED
        ("anything", 517),  # SQLITE_BUSY_SNAPSHOT
        ("anything", 261),  # SQLITE_BUSY_RECOVERY
        ("anything", 262),  # SQLITE_LOCKED_SHAREDCACHE
        ("database is locked", None),
        ("Database Is Locked", None),
        ("database table is locked: messages", None),
        ("database schema is locked: main", None),
        ("database is busy", None),
        ("database busy", None),
        ("database is locked", 1),  # the text wins over a generic code
    ],
)
def test_busy_and_locked(message: str, code: int | None) -> None:
    error = classify(message, code)
    assert type(error) is BusyError
    assert str(error) == message
    assert error.code == (None if code is None else code & 0xFF)


@pytest.mark.parametrize("code", [19, 2067, 1555, 787, 275])
def test_constraint_codes_are_integrity_errors(code: int) -> None:
    error = classify("UNIQUE constraint failed: messages.ts", code)
    assert type(error) is IntegrityError
    assert error.code == 19


def test_constraint_text_alone_is_not_enough() -> None:
    assert type(classify("UNIQUE constraint failed: messages.ts", None)) is DatabaseError


def test_interrupt() -> None:
    error = classify("interrupted", 9)
    assert type(error) is StatementInterruptedError
    assert error.code == 9


@pytest.mark.parametrize(
    ("message", "code"), [("file is not a database", 26), ("x", 26), ("File is not a database", None)]
)
def test_not_a_database(message: str, code: int | None) -> None:
    assert type(classify(message, code)) is NotADatabaseDriverError


@pytest.mark.parametrize(
    ("message", "code", "primary"),
    [("disk I/O error", 10, 10), ("disk I/O error", 266, 10), ("no such table: messages", 1, 1), ("oops", None, None)],
)
def test_others_are_plain_database_errors(message: str, code: int | None, primary: int | None) -> None:
    error = classify(message, code)
    assert type(error) is DatabaseError
    assert error.code == primary
    assert str(error) == message


def test_hierarchy() -> None:
    for cls in (BusyError, IntegrityError, StatementInterruptedError, NotADatabaseDriverError):
        assert issubclass(cls, DatabaseError)
    assert issubclass(DatabaseError, BrokerError)
    for cls in (QueueNameError, MessageError, MessageIdError, InvalidTypeError):
        assert issubclass(cls, InvalidInputError)
        assert issubclass(cls, ValueError)
    assert issubclass(InvalidTypeError, TypeError)
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, BrokerError)
    assert DatabaseError("x").code is None


def test_public_names_resolve() -> None:
    import sansio_broker

    assert sansio_broker.__version__ == "0.1.0"
    missing = [name for name in sansio_broker.__all__ if not hasattr(sansio_broker, name)]
    assert missing == []


def test_outcome_unknown_names_the_messages_concerned_when_known() -> None:
    unknown = OutcomeUnknownError("cancelled in COMMIT")
    assert unknown.message_ids == ()
    assert str(unknown) == "cancelled in COMMIT"
    assert OutcomeUnknownError().message_ids == ()
    landed = OutcomeUnknownError("cancelled in COMMIT", (7, 8))
    assert landed.message_ids == (7, 8)
    assert str(landed) == "cancelled in COMMIT"
    assert isinstance(landed, BrokerError)
