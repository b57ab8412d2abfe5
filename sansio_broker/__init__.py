"""sansio-broker: a durable message queue in one SQLite file, sans I/O.

The core here decides every operation and emits commands; the adapters in
:mod:`sansio_broker.adapters` carry them out against SQLite. Files are
compatible with SimpleBroker 8 (schema v6).
"""

from .commands import (
    Begin,
    Command,
    Commit,
    Execute,
    ExecuteMany,
    Fetch,
    LockVacuumFile,
    Operation,
    ReadClock,
    Rollback,
    SealGroup,
    Sleep,
    UnlockVacuumFile,
)
from .config import Config
from .core import BrokerCore, RetryPolicy, Session
from .errors import (
    BrokerClosedError,
    BrokerError,
    BusyError,
    ConfigError,
    DatabaseError,
    ForeignDatabaseError,
    IncompatibleDatabaseError,
    IntegrityError,
    InvalidInputError,
    InvalidTypeError,
    MessageError,
    MessageIdError,
    MessageTypeError,
    NotADatabaseError,
    OperationCancelled,
    OutcomeUnknownError,
    QueueNameError,
    QueueNameTypeError,
    SchemaVersionError,
    StatementInterruptedError,
    TimestampError,
    TransactionError,
)
from .streams import ClaimStream, PeekStream, Stream
from .types import Message, QueueStats

__version__ = "0.1.0"

__all__ = [
    "Begin",
    "BrokerClosedError",
    "BrokerCore",
    "BrokerError",
    "BusyError",
    "ClaimStream",
    "Command",
    "Commit",
    "Config",
    "ConfigError",
    "DatabaseError",
    "Execute",
    "ExecuteMany",
    "Fetch",
    "ForeignDatabaseError",
    "IncompatibleDatabaseError",
    "IntegrityError",
    "InvalidInputError",
    "InvalidTypeError",
    "LockVacuumFile",
    "Message",
    "MessageError",
    "MessageIdError",
    "MessageTypeError",
    "NotADatabaseError",
    "Operation",
    "OperationCancelled",
    "OutcomeUnknownError",
    "PeekStream",
    "QueueNameError",
    "QueueNameTypeError",
    "QueueStats",
    "ReadClock",
    "RetryPolicy",
    "Rollback",
    "SchemaVersionError",
    "SealGroup",
    "Session",
    "Sleep",
    "StatementInterruptedError",
    "Stream",
    "TimestampError",
    "TransactionError",
    "UnlockVacuumFile",
    "__version__",
]
