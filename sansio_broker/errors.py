"""The one exception hierarchy users catch.

Every error the broker raises on purpose derives from :class:`BrokerError`.
Input errors also derive from ``ValueError``/``TypeError`` so code written
against SimpleBroker's conventions keeps catching them.
"""

from __future__ import annotations


class BrokerError(Exception):
    """Root of every error raised by sansio-broker."""


class ConfigError(BrokerError, ValueError):
    """A configuration value is invalid; the message names the key."""

    def __init__(self, key: str, value: object, expected: str) -> None:
        super().__init__(f"invalid configuration {key}={value!r}: expected {expected}")
        self.key = key
        self.value = value
        self.expected = expected


class InvalidInputError(BrokerError, ValueError):
    """An argument was refused before anything touched the database."""


class InvalidTypeError(InvalidInputError, TypeError):
    """An argument has the wrong type (also a ``TypeError``)."""


class QueueNameError(InvalidInputError):
    """A queue name does not match the allowed pattern or length."""


class MessageError(InvalidInputError):
    """A message body is not a UTF-8 encodable ``str`` or is too large."""


class QueueNameTypeError(QueueNameError, InvalidTypeError):
    """A queue name that is not a ``str``."""


class MessageTypeError(MessageError, InvalidTypeError):
    """A message body that is not a ``str`` (bytes are refused: SimpleBroker stores TEXT)."""


class MessageIdError(InvalidInputError):
    """A message ID or timestamp bound is malformed or out of range."""


class IncompatibleDatabaseError(BrokerError):
    """The file is not a database this broker may use; nothing was written."""


class NotADatabaseError(IncompatibleDatabaseError):
    """The file exists but is not a database of the engine (SQLite)."""


class ForeignDatabaseError(IncompatibleDatabaseError):
    """A database that belongs to something other than a broker."""


class SchemaVersionError(IncompatibleDatabaseError):
    """The broker schema is older or newer than this version supports."""


class TimestampError(BrokerError):
    """No message ID could be allocated (clock or counter exhausted)."""


class TransactionError(BrokerError):
    """An operation would conflict with a transaction this caller holds."""


class BrokerClosedError(BrokerError, RuntimeError):
    """The broker was closed; open a new one to continue."""


class OperationCancelled(BrokerError):
    """Thrown into an operation by an adapter whose caller was cancelled; the
    core rolls back whatever the operation had started, then re-raises it."""


class OutcomeUnknownError(BrokerError):
    """A COMMIT was interrupted: the transaction may or may not have landed.

    ``message_ids`` names the messages concerned where they are known (the
    IDs of a write that landed after all), so a caller can check or undo.
    """

    def __init__(self, message: str = "", message_ids: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.message_ids = message_ids


class DatabaseError(BrokerError):
    """The database reported an error the broker does not handle itself.

    ``code`` is the engine's code when the driver knows it: SQLite's primary
    result code (an ``int``), PostgreSQL's SQLSTATE (a ``str`` such as
    ``"40001"``). The dialect (``Dialect.classify_error``) picks the
    subclass, so retry and refusal policy can live in the core.
    """

    def __init__(self, message: str, code: int | str | None = None) -> None:
        super().__init__(message)
        self.code = code


class BusyError(DatabaseError):
    """The database stayed locked by another connection past every retry."""


class IntegrityError(DatabaseError):
    """A constraint failed (for example a duplicate message ID)."""


class StatementInterruptedError(DatabaseError):
    """A statement was interrupted by the adapter (cancellation)."""


class NotADatabaseDriverError(DatabaseError):
    """Raw driver signal that the file is not a database of the engine; the
    core turns it into :class:`NotADatabaseError` with the path in the message."""


class AliasError(InvalidInputError):
    """An alias cannot be added, removed or resolved (SimpleBroker's rules and texts)."""


class DumpFormatError(InvalidInputError):
    """A dump line is not SimpleBroker's ``simplebroker-dump`` v1 format; ``line`` is 1-based (0: no line)."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.line = line


class AliasShadowsQueueWarning(UserWarning):
    """An alias was added whose name is also a queue with messages: ``@name``
    and ``name`` now mean different queues."""


class ClockSkewWarning(UserWarning):
    """A loaded dump's last ID is ahead of the wall clock: new IDs follow it,
    so the clock effectively jumps forward."""
