"""Configuration: a frozen value parsed from a mapping of ``BROKER_*`` keys.

The core never reads the environment; adapters pass ``os.environ`` when the
user gives no config. Keys this broker does not use (SimpleBroker has many
more ``BROKER_*`` settings) are ignored so one environment serves both.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from .errors import ConfigError

SYNC_MODES = ("FULL", "NORMAL", "OFF", "EXTRA")
_INTEGER = re.compile(r"-?[0-9]+")


@dataclass(frozen=True, slots=True)
class Config:
    """Broker settings. Defaults are SimpleBroker's, so shared files behave alike."""

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

    def __post_init__(self) -> None:
        # Typed construction gets the same checks as parsing from strings.
        for f in fields(self):
            key, parse, _ = _FIELDS[f.name]
            value = getattr(self, f.name)
            object.__setattr__(self, f.name, parse(key, value))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> Config:
        """Parse ``BROKER_*`` keys (strings from the environment, or typed values)."""
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


def _int(minimum: int) -> Callable[[str, Any], int]:
    def parse(key: str, value: Any) -> int:
        expected = "an integer" if minimum < -(2**62) else f"an integer >= {minimum}"
        if isinstance(value, bool):
            raise ConfigError(key, value, expected)
        if isinstance(value, int):
            number = value
        elif isinstance(value, str):
            text = value.strip()
            if not _INTEGER.fullmatch(text):
                raise ConfigError(key, value, expected)
            number = int(text)
        else:
            raise ConfigError(key, value, expected)
        if number < minimum:
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
    return _int(-(2**63))(key, value) == 1


def _at_least_one(key: str, value: Any) -> int:
    # SimpleBroker accepts any integer here and treats values below 1 as 1.
    return max(1, _int(-(2**63))(key, value))


def _percent(key: str, value: Any) -> float:
    expected = "a number of percent from 0 to 100"
    if isinstance(value, bool):
        raise ConfigError(key, value, expected)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(key, value, expected) from None
    if not math.isfinite(number) or not 0.0 <= number <= 100.0:
        raise ConfigError(key, value, expected)
    return number


_FIELDS: dict[str, tuple[str, Callable[[str, Any], Any], Callable[[Any], str]]] = {
    "busy_timeout_ms": ("BROKER_BUSY_TIMEOUT", _int(0), str),
    "cache_mb": ("BROKER_CACHE_MB", _int(1), str),
    "sync_mode": ("BROKER_SYNC_MODE", _sync_mode, str),
    "wal_autocheckpoint": ("BROKER_WAL_AUTOCHECKPOINT", _int(0), str),
    "max_message_size": ("BROKER_MAX_MESSAGE_SIZE", _int(1), str),
    "auto_vacuum": ("BROKER_AUTO_VACUUM", _only_one_enables, lambda v: "1" if v else "0"),
    "auto_vacuum_interval": ("BROKER_AUTO_VACUUM_INTERVAL", _at_least_one, str),
    "vacuum_threshold_percent": ("BROKER_VACUUM_THRESHOLD", _percent, repr),
    "vacuum_batch_size": ("BROKER_VACUUM_BATCH_SIZE", _int(1), str),
    "generator_batch_size": ("BROKER_GENERATOR_BATCH_SIZE", _int(1), str),
}

CONFIG_KEYS = tuple(key for key, _, _ in _FIELDS.values())
