"""Configuration: a frozen value parsed from a mapping of ``BROKER_*`` keys.

The core never reads the environment; adapters pass ``os.environ`` when the
user gives no config. Keys this broker does not use (SimpleBroker has many
more ``BROKER_*`` settings) are ignored so one environment serves both. An
explicit mapping is parsed with ``strict=True``: there a key neither this
broker nor SimpleBroker reads is a typo (``SYNC_MODE``), refused by name.

Integers are bounded so no value can overflow where it is used: SQLite reads
its ``busy_timeout``, ``cache_size`` and ``wal_autocheckpoint`` settings as 32-bit
ints, and binds every other count as a 64-bit one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from .errors import ConfigError, InvalidTypeError

SYNC_MODES = ("FULL", "NORMAL", "OFF", "EXTRA")
_INTEGER = re.compile(r"-?[0-9]+")
INT32_MAX = 2**31 - 1  # SQLite's busy_timeout / wal_autocheckpoint / cache_size, and sqlite3's timeout
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # SQLite's integers
MAX_CACHE_MB = INT32_MAX // 1024  # cache_size is set as -(MB * 1024) KiB


@dataclass(frozen=True, slots=True)
class Config:
    """Broker settings. Defaults are SimpleBroker's, so shared files behave alike.

    ``relaxed_order`` (``BROKER_RELAXED_ORDER=1``; off by default) trades the
    order in which concurrent consumers receive messages for throughput, on
    PostgreSQL: claims and moves run ``SELECT ... FOR UPDATE SKIP LOCKED``, so
    a claim passes over the messages other claims or moves are taking at
    that moment instead of waiting for them to commit. Each message is still
    delivered once, and one consumer's messages still come oldest first
    unless another's claim rolls back (a cancelled transaction): the message
    it held is pending again and older than what others took meanwhile. A
    claim may also come back empty while others hold the last pending
    messages (claims that have yet to commit). Off, every claim takes the
    oldest pending message, waiting for a concurrent claim of it to end,
    exactly as simplebroker-pg does. SQLite ignores it: its write
    transactions take the database's one write lock up front, so claims
    never overlap and there is no locked row to skip.
    """

    busy_timeout_ms: int = 5000
    cache_mb: int = 10
    sync_mode: str = "FULL"
    wal_autocheckpoint: int = 1000
    max_message_size: int = 10 * 1024 * 1024
    auto_vacuum: bool = True
    auto_vacuum_interval: int = 100
    vacuum_threshold_percent: float = 10.0
    vacuum_batch_size: int = 1000
    generator_batch_size: int = 100
    # Waiting consumers (get/watch): the cross-process watcher's polling
    # schedule, under SimpleBroker's watcher keys but with defaults of ours
    # (docs/waiting.md says how they trade latency for idle CPU).
    watch_max_interval: float = 0.006
    watch_burst_sleep: float = 0.001
    watch_jitter: float = 0.15
    # Loading a dump whose last ID is further ahead of the clock is refused.
    load_max_future_skew_seconds: int = 300
    # The PostgreSQL schema a ``postgresql://`` target uses (SimpleBroker's key
    # and default); the dialect refuses ``public`` and names outside its pattern.
    backend_schema: str = "simplebroker_pg_v1"
    # Opt-in, PostgreSQL only: claims and moves skip rows others hold (see the class docstring).
    relaxed_order: bool = False

    def __post_init__(self) -> None:
        # Typed construction gets the same checks as parsing from strings.
        for f in fields(self):
            key, parse, _ = _FIELDS[f.name]
            value = getattr(self, f.name)
            object.__setattr__(self, f.name, parse(key, value))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], *, strict: bool = False) -> Config:
        """Parse ``BROKER_*`` keys (strings from the environment, or typed values).

        ``strict`` refuses keys unknown to this broker and to SimpleBroker (a
        mapping written for the broker); without it they are ignored (the
        environment holds every other program's variables too).
        """
        if strict:
            if not isinstance(mapping, Mapping):
                raise InvalidTypeError(
                    f"config must be a Config, a mapping of BROKER_* keys or None, not {type(mapping).__name__}"
                )
            for key, value in mapping.items():
                if key not in KNOWN_KEYS:
                    raise ConfigError(str(key), value, _known_key_hint(key))
        kwargs: dict[str, Any] = {}
        for name, (key, parse, _) in _FIELDS.items():
            if key in mapping:
                kwargs[name] = parse(key, mapping[key])
        return cls(**kwargs)

    def to_mapping(self) -> dict[str, str]:
        """The ``BROKER_*`` form, e.g. to hand to a subprocess's environment."""
        out = {}
        for name, (key, _, render) in _FIELDS.items():
            out[key] = render(getattr(self, name))
        return out


def _int(minimum: int, maximum: int = INT64_MAX) -> Callable[[str, Any], int]:
    if minimum == INT64_MIN:
        expected = f"an integer from {INT64_MIN} to {maximum}"
    else:
        expected = f"an integer >= {minimum} and <= {maximum}"

    def parse(key: str, value: Any) -> int:
        if isinstance(value, bool):
            raise ConfigError(key, value, expected)
        if isinstance(value, int):
            number = value
        elif isinstance(value, str):
            text = value.strip()
            # Length first: int() of thousands of digits raises its own ValueError.
            if len(text) > 20 or not _INTEGER.fullmatch(text):
                raise ConfigError(key, value, expected)
            number = int(text)
        else:
            raise ConfigError(key, value, expected)
        if not minimum <= number <= maximum:
            raise ConfigError(key, value, expected)
        return number

    return parse


def _sync_mode(key: str, value: Any) -> str:
    if isinstance(value, str) and value.strip().upper() in SYNC_MODES:
        return value.strip().upper()
    raise ConfigError(key, value, "one of " + ", ".join(SYNC_MODES) + " (any case)")


def _only_one_enables(key: str, value: Any) -> bool:
    # SimpleBroker accepts any integer and enables the feature only for 1.
    if isinstance(value, bool):
        return value
    return _int(INT64_MIN)(key, value) == 1


def _at_least_one(key: str, value: Any) -> int:
    # SimpleBroker accepts any integer here and treats values below 1 as 1.
    return max(1, _int(INT64_MIN)(key, value))


def _percent(key: str, value: Any) -> float:
    expected = "a number of percent from 0 to 100"
    number = _real(key, value, expected)
    if not 0.0 <= number <= 100.0:
        raise ConfigError(key, value, expected)
    return number


def _seconds(key: str, value: Any) -> float:
    expected = "a number of seconds > 0 and <= 60"
    number = _real(key, value, expected)
    if not 0.0 < number <= 60.0:
        raise ConfigError(key, value, expected)
    return number


def _fraction(key: str, value: Any) -> float:
    expected = "a fraction >= 0 and < 1"
    number = _real(key, value, expected)
    if not 0.0 <= number < 1.0:
        raise ConfigError(key, value, expected)
    return number


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, value, "a str")
    return value


def _real(key: str, value: Any, expected: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(key, value, expected)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond a float
        raise ConfigError(key, value, expected) from None
    if not math.isfinite(number):
        raise ConfigError(key, value, expected)
    return number


_FIELDS: dict[str, tuple[str, Callable[[str, Any], Any], Callable[[Any], str]]] = {
    # sqlite3.connect(timeout=ms / 1000) becomes a C int of milliseconds again.
    "busy_timeout_ms": ("BROKER_BUSY_TIMEOUT", _int(0, INT32_MAX), str),
    "cache_mb": ("BROKER_CACHE_MB", _int(1, MAX_CACHE_MB), str),
    "sync_mode": ("BROKER_SYNC_MODE", _sync_mode, str),
    "wal_autocheckpoint": ("BROKER_WAL_AUTOCHECKPOINT", _int(0, INT32_MAX), str),
    "max_message_size": ("BROKER_MAX_MESSAGE_SIZE", _int(1), str),
    "auto_vacuum": ("BROKER_AUTO_VACUUM", _only_one_enables, lambda v: "1" if v else "0"),
    "auto_vacuum_interval": ("BROKER_AUTO_VACUUM_INTERVAL", _at_least_one, str),
    "vacuum_threshold_percent": ("BROKER_VACUUM_THRESHOLD", _percent, repr),
    "vacuum_batch_size": ("BROKER_VACUUM_BATCH_SIZE", _int(1), str),
    "generator_batch_size": ("BROKER_GENERATOR_BATCH_SIZE", _int(1), str),
    "watch_max_interval": ("BROKER_MAX_INTERVAL", _seconds, repr),
    "watch_burst_sleep": ("BROKER_BURST_SLEEP", _seconds, repr),
    "watch_jitter": ("BROKER_JITTER_FACTOR", _fraction, repr),
    "load_max_future_skew_seconds": ("BROKER_LOAD_MAX_FUTURE_SKEW_SECONDS", _int(0), str),
    "backend_schema": ("BROKER_BACKEND_SCHEMA", _text, str),
    "relaxed_order": ("BROKER_RELAXED_ORDER", _only_one_enables, lambda v: "1" if v else "0"),
}

CONFIG_KEYS = tuple(key for key, _, _ in _FIELDS.values())
# Keys of this broker's own, which SimpleBroker does not read (it ignores them).
OWN_KEYS = ("BROKER_RELAXED_ORDER",)

# Every key SimpleBroker 8.7.2 reads (``simplebroker._constants.DEFAULT_CONFIG``,
# prefixed): accepted in an explicit mapping, since one mapping may serve both.
SIMPLEBROKER_ONLY_KEYS = tuple(
    "BROKER_" + name
    for name in (
        "READ_COMMIT_INTERVAL",
        "POSTGRES_CAPACITY_WAIT_SECONDS",
        "SKIP_IDLE_CHECK",
        "INITIAL_CHECKS",
        "DEBUG",
        "LOGGING_ENABLED",
        "DEFAULT_DB_LOCATION",
        "DEFAULT_DB_NAME",
        "PROJECT_CONFIG_PATH",
        "PROJECT_CONFIG_NAME",
        "PROJECT_SCOPE",
        "BACKEND",
        "BACKEND_HOST",
        "BACKEND_PORT",
        "BACKEND_USER",
        "BACKEND_PASSWORD",
        "BACKEND_DATABASE",
        "BACKEND_TARGET",
    )
)
KNOWN_KEYS = frozenset(CONFIG_KEYS + SIMPLEBROKER_ONLY_KEYS)


def _known_key_hint(key: object) -> str:
    """What an unknown key should have been: SimpleBroker's unprefixed names and near misses get a suggestion."""
    expected = "a BROKER_* key this broker or SimpleBroker reads"
    if not isinstance(key, str):
        return expected + f" (keys are str, not {type(key).__name__})"
    name = key.strip().upper().replace("-", "_").removeprefix("BROKER_")
    names = sorted(k.removeprefix("BROKER_") for k in KNOWN_KEYS)
    import difflib  # only for a mistyped key: keeps every start-up from paying for it

    matches = [name] if name in names else difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    return expected + (f" (did you mean BROKER_{matches[0]}?)" if matches else "")
