"""sansio-broker: a durable message queue in one SQLite file, sans I/O.

An application uses a broker from an adapter (:mod:`sansio_broker.adapters`:
``blocking``, ``asyncio``, ``trio``) and, from here, the configuration, the
message types and the errors. The core that decides every operation, and
what a driver author or a test needs to drive it, is in
:mod:`sansio_broker.driver`. Files are compatible with SimpleBroker 8
(schema v6).
"""

from .config import Config
from .errors import (
    AliasError,
    AliasShadowsQueueWarning,
    BrokerClosedError,
    BrokerError,
    BusyError,
    ClockSkewWarning,
    ConfigError,
    DatabaseError,
    DumpFormatError,
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
from .types import BrokerStatus, LoadResult, Message, Order, QueueStats, RenameResult

__version__ = "0.1.0"

__all__ = [
    "AliasError",
    "AliasShadowsQueueWarning",
    "BrokerClosedError",
    "BrokerError",
    "BrokerStatus",
    "BusyError",
    "ClockSkewWarning",
    "Config",
    "ConfigError",
    "DatabaseError",
    "DumpFormatError",
    "ForeignDatabaseError",
    "IncompatibleDatabaseError",
    "IntegrityError",
    "InvalidInputError",
    "InvalidTypeError",
    "LoadResult",
    "Message",
    "MessageError",
    "MessageIdError",
    "MessageTypeError",
    "NotADatabaseError",
    "OperationCancelled",
    "Order",
    "OutcomeUnknownError",
    "QueueNameError",
    "QueueNameTypeError",
    "QueueStats",
    "RenameResult",
    "SchemaVersionError",
    "StatementInterruptedError",
    "TimestampError",
    "TransactionError",
    "__version__",
]
