"""Config: BROKER_* keys, strict parsing, errors naming the key."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sansio_broker import Config, ConfigError, InvalidTypeError
from sansio_broker.config import CONFIG_KEYS, KNOWN_KEYS, OWN_KEYS, SIMPLEBROKER_ONLY_KEYS
from sansio_broker.sqlite import SQLITE

DEFAULTS = {
    "busy_timeout_ms": 5000,
    "cache_mb": 10,
    "sync_mode": "FULL",
    "wal_autocheckpoint": 1000,
    "max_message_size": 10 * 1024 * 1024,
    "auto_vacuum": True,
    "auto_vacuum_interval": 100,
    "vacuum_threshold_percent": 10.0,
    "vacuum_batch_size": 1000,
    "generator_batch_size": 100,
    "watch_max_interval": 0.006,
    "watch_burst_sleep": 0.001,
    "watch_jitter": 0.15,
    "load_max_future_skew_seconds": 300,
    "backend_schema": "simplebroker_pg_v1",
    "relaxed_order": False,
}


def test_defaults() -> None:
    assert dataclasses.asdict(Config()) == DEFAULTS
    assert Config.from_mapping({}) == Config()


def test_defaults_equal_simplebrokers() -> None:
    constants = pytest.importorskip("simplebroker._constants")
    sb = {key: field.default for key, field in constants.DEFAULT_CONFIG.items()}
    ours = Config()
    assert ours.busy_timeout_ms == sb["BUSY_TIMEOUT"]
    assert ours.cache_mb == sb["CACHE_MB"]
    assert ours.sync_mode == sb["SYNC_MODE"]
    assert ours.wal_autocheckpoint == sb["WAL_AUTOCHECKPOINT"]
    assert ours.max_message_size == sb["MAX_MESSAGE_SIZE"]
    assert ours.auto_vacuum == (sb["AUTO_VACUUM"] == 1)
    assert ours.auto_vacuum_interval == sb["AUTO_VACUUM_INTERVAL"]
    assert ours.vacuum_threshold_percent == sb["VACUUM_THRESHOLD"]
    assert ours.vacuum_batch_size == sb["VACUUM_BATCH_SIZE"]
    assert ours.generator_batch_size == sb["GENERATOR_BATCH_SIZE"]
    assert ours.load_max_future_skew_seconds == sb["LOAD_MAX_FUTURE_SKEW_SECONDS"]
    assert ours.backend_schema == sb["BACKEND_SCHEMA"]


def test_config_keys() -> None:
    assert CONFIG_KEYS == (
        "BROKER_BUSY_TIMEOUT",
        "BROKER_CACHE_MB",
        "BROKER_SYNC_MODE",
        "BROKER_WAL_AUTOCHECKPOINT",
        "BROKER_MAX_MESSAGE_SIZE",
        "BROKER_AUTO_VACUUM",
        "BROKER_AUTO_VACUUM_INTERVAL",
        "BROKER_VACUUM_THRESHOLD",
        "BROKER_VACUUM_BATCH_SIZE",
        "BROKER_GENERATOR_BATCH_SIZE",
        "BROKER_MAX_INTERVAL",
        "BROKER_BURST_SLEEP",
        "BROKER_JITTER_FACTOR",
        "BROKER_LOAD_MAX_FUTURE_SKEW_SECONDS",
        "BROKER_BACKEND_SCHEMA",
        "BROKER_RELAXED_ORDER",
    )


@pytest.mark.parametrize(
    ("key", "field", "text", "value"),
    [
        ("BROKER_BUSY_TIMEOUT", "busy_timeout_ms", "250", 250),
        ("BROKER_BUSY_TIMEOUT", "busy_timeout_ms", "0", 0),
        ("BROKER_CACHE_MB", "cache_mb", " 64 ", 64),
        ("BROKER_SYNC_MODE", "sync_mode", "normal", "NORMAL"),
        ("BROKER_WAL_AUTOCHECKPOINT", "wal_autocheckpoint", "0", 0),
        ("BROKER_MAX_MESSAGE_SIZE", "max_message_size", "1", 1),
        ("BROKER_AUTO_VACUUM", "auto_vacuum", "0", False),
        ("BROKER_AUTO_VACUUM", "auto_vacuum", "1", True),
        ("BROKER_AUTO_VACUUM", "auto_vacuum", " 1 ", True),
        # SimpleBroker: any integer is accepted, only 1 enables
        ("BROKER_AUTO_VACUUM", "auto_vacuum", "2", False),
        ("BROKER_AUTO_VACUUM", "auto_vacuum", "-1", False),
        ("BROKER_AUTO_VACUUM_INTERVAL", "auto_vacuum_interval", "1", 1),
        ("BROKER_AUTO_VACUUM_INTERVAL", "auto_vacuum_interval", "250", 250),
        # SimpleBroker: any integer is accepted, values below 1 count as 1
        ("BROKER_AUTO_VACUUM_INTERVAL", "auto_vacuum_interval", "0", 1),
        ("BROKER_AUTO_VACUUM_INTERVAL", "auto_vacuum_interval", "-7", 1),
        ("BROKER_VACUUM_THRESHOLD", "vacuum_threshold_percent", "25", 25.0),
        ("BROKER_VACUUM_THRESHOLD", "vacuum_threshold_percent", "0.5", 0.5),
        ("BROKER_VACUUM_THRESHOLD", "vacuum_threshold_percent", "100", 100.0),
        ("BROKER_VACUUM_BATCH_SIZE", "vacuum_batch_size", "10", 10),
        ("BROKER_GENERATOR_BATCH_SIZE", "generator_batch_size", "7", 7),
        ("BROKER_MAX_INTERVAL", "watch_max_interval", "0.1", 0.1),
        ("BROKER_BURST_SLEEP", "watch_burst_sleep", "1e-05", 1e-05),
        ("BROKER_JITTER_FACTOR", "watch_jitter", "0", 0.0),
        ("BROKER_BACKEND_SCHEMA", "backend_schema", "jobs_v2", "jobs_v2"),
        ("BROKER_RELAXED_ORDER", "relaxed_order", "1", True),
        ("BROKER_RELAXED_ORDER", "relaxed_order", "0", False),
    ],
)
def test_every_key_parses_from_strings(key: str, field: str, text: str, value: Any) -> None:
    config = Config.from_mapping({key: text})
    assert getattr(config, field) == value
    assert type(getattr(config, field)) is type(value)
    # everything else keeps its default
    others = {k: v for k, v in dataclasses.asdict(config).items() if k != field}
    assert others == {k: v for k, v in DEFAULTS.items() if k != field}


@pytest.mark.parametrize(
    ("key", "field", "value", "expected"),
    [
        ("BROKER_BUSY_TIMEOUT", "busy_timeout_ms", 123, 123),
        ("BROKER_CACHE_MB", "cache_mb", 3, 3),
        ("BROKER_SYNC_MODE", "sync_mode", "Off", "OFF"),
        ("BROKER_WAL_AUTOCHECKPOINT", "wal_autocheckpoint", 10, 10),
        ("BROKER_MAX_MESSAGE_SIZE", "max_message_size", 99, 99),
        ("BROKER_AUTO_VACUUM", "auto_vacuum", False, False),
        ("BROKER_AUTO_VACUUM", "auto_vacuum", 1, True),
        ("BROKER_AUTO_VACUUM", "auto_vacuum", 0, False),
        ("BROKER_AUTO_VACUUM", "auto_vacuum", True, True),
        ("BROKER_AUTO_VACUUM", "auto_vacuum", 2, False),
        ("BROKER_AUTO_VACUUM_INTERVAL", "auto_vacuum_interval", 5, 5),
        ("BROKER_AUTO_VACUUM_INTERVAL", "auto_vacuum_interval", 0, 1),
        ("BROKER_VACUUM_THRESHOLD", "vacuum_threshold_percent", 12, 12.0),
        ("BROKER_VACUUM_THRESHOLD", "vacuum_threshold_percent", 0.25, 0.25),
        ("BROKER_VACUUM_BATCH_SIZE", "vacuum_batch_size", 2, 2),
        ("BROKER_GENERATOR_BATCH_SIZE", "generator_batch_size", 1, 1),
    ],
)
def test_every_key_parses_from_typed_values(key: str, field: str, value: Any, expected: Any) -> None:
    assert getattr(Config.from_mapping({key: value}), field) == expected


@pytest.mark.parametrize("text", ["FULL", "full", "Normal", "off", "EXTRA", "extra", " normal "])
def test_sync_mode_is_case_insensitive(text: str) -> None:
    assert Config.from_mapping({"BROKER_SYNC_MODE": text}).sync_mode == text.strip().upper()


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("BROKER_BUSY_TIMEOUT", "-5", "an integer >= 0"),
        ("BROKER_BUSY_TIMEOUT", "5s", "an integer >= 0"),
        ("BROKER_BUSY_TIMEOUT", "", "an integer >= 0"),
        ("BROKER_BUSY_TIMEOUT", "1.5", "an integer >= 0"),
        ("BROKER_BUSY_TIMEOUT", 1.5, "an integer >= 0"),
        ("BROKER_BUSY_TIMEOUT", None, "an integer >= 0"),
        ("BROKER_BUSY_TIMEOUT", "\u0661\u0662", "an integer >= 0"),  # ARABIC-INDIC digits 1, 2
        ("BROKER_CACHE_MB", "0", "an integer >= 1"),
        ("BROKER_CACHE_MB", -1, "an integer >= 1"),
        ("BROKER_MAX_MESSAGE_SIZE", "0", "an integer >= 1"),
        ("BROKER_AUTO_VACUUM_INTERVAL", "x", "an integer"),
        ("BROKER_AUTO_VACUUM_INTERVAL", "1.0", "an integer"),
        ("BROKER_AUTO_VACUUM_INTERVAL", 2.0, "an integer"),
        ("BROKER_VACUUM_BATCH_SIZE", "x", "an integer >= 1"),
        ("BROKER_GENERATOR_BATCH_SIZE", "0", "an integer >= 1"),
        ("BROKER_WAL_AUTOCHECKPOINT", "-1", "an integer >= 0"),
        ("BROKER_SYNC_MODE", "FAST", "one of FULL, NORMAL, OFF, EXTRA"),
        ("BROKER_SYNC_MODE", 1, "one of FULL, NORMAL, OFF, EXTRA"),
        ("BROKER_AUTO_VACUUM", "yes", "an integer"),
        ("BROKER_AUTO_VACUUM", "true", "an integer"),
        ("BROKER_AUTO_VACUUM", "", "an integer"),
        ("BROKER_AUTO_VACUUM", 1.0, "an integer"),
        ("BROKER_AUTO_VACUUM", None, "an integer"),
        ("BROKER_VACUUM_THRESHOLD", "101", "percent from 0 to 100"),
        ("BROKER_VACUUM_THRESHOLD", "-1", "percent from 0 to 100"),
        ("BROKER_VACUUM_THRESHOLD", "nan", "percent from 0 to 100"),
        ("BROKER_VACUUM_THRESHOLD", "inf", "percent from 0 to 100"),
        ("BROKER_VACUUM_THRESHOLD", "ten", "percent from 0 to 100"),
        ("BROKER_VACUUM_THRESHOLD", None, "percent from 0 to 100"),
        ("BROKER_VACUUM_THRESHOLD", True, "percent from 0 to 100"),
        ("BROKER_MAX_INTERVAL", "0", "seconds > 0"),
        ("BROKER_MAX_INTERVAL", "61", "seconds > 0"),
        ("BROKER_MAX_INTERVAL", "nan", "seconds > 0"),
        ("BROKER_BURST_SLEEP", True, "seconds > 0"),
        ("BROKER_BURST_SLEEP", "soon", "seconds > 0"),
        ("BROKER_JITTER_FACTOR", "1", "fraction >= 0 and < 1"),
        ("BROKER_JITTER_FACTOR", "-0.1", "fraction >= 0 and < 1"),
    ],
)
def test_invalid_values_raise_config_error_naming_the_key(key: str, value: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_mapping({key: value})
    error = caught.value
    assert isinstance(error, ValueError)
    assert error.key == key
    assert error.value == value
    assert expected in error.expected
    assert key in str(error)
    assert expected in str(error)
    assert str(error) == f"invalid configuration {key}={value!r}: expected {error.expected}"


@pytest.mark.parametrize(
    "key",
    [
        "BROKER_BUSY_TIMEOUT",
        "BROKER_CACHE_MB",
        "BROKER_WAL_AUTOCHECKPOINT",
        "BROKER_MAX_MESSAGE_SIZE",
        "BROKER_AUTO_VACUUM_INTERVAL",
        "BROKER_VACUUM_BATCH_SIZE",
        "BROKER_GENERATOR_BATCH_SIZE",
    ],
)
@pytest.mark.parametrize("value", [True, False])
def test_bool_is_rejected_for_integers(key: str, value: bool) -> None:
    with pytest.raises(ConfigError, match=key):
        Config.from_mapping({key: value})


def test_doubled_minus_sign_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="BROKER_CACHE_MB"):
        Config.from_mapping({"BROKER_CACHE_MB": "--5"})


def test_unknown_keys_are_ignored() -> None:
    config = Config.from_mapping(
        {
            "BROKER_DEFAULT_DB_NAME": "x.db",
            "BROKER_READ_COMMIT_INTERVAL": "nonsense",
            "BROKER_sync_mode": "bogus",  # SimpleBroker warns about lowercase near-misses; we ignore them
            "PATH": "/usr/bin",
            "BROKER_CACHE_MB": "3",
        }
    )
    assert config == Config(cache_mb=3)


def test_typed_construction_is_checked_and_normalised() -> None:
    assert Config(sync_mode="extra").sync_mode == "EXTRA"
    assert Config(vacuum_threshold_percent=5).vacuum_threshold_percent == 5.0
    assert Config(auto_vacuum_interval=-3).auto_vacuum_interval == 1
    with pytest.raises(ConfigError, match="BROKER_CACHE_MB"):
        Config(cache_mb=0)
    with pytest.raises(ConfigError, match="BROKER_BUSY_TIMEOUT"):
        Config(busy_timeout_ms=True)


def test_backend_schema_must_be_text() -> None:
    with pytest.raises(ConfigError, match="BROKER_BACKEND_SCHEMA") as caught:
        Config.from_mapping({"BROKER_BACKEND_SCHEMA": 7})
    assert caught.value.expected == "a str"
    # ``public`` and bad names are the dialect's to refuse, when a PostgreSQL target opens.
    assert Config.from_mapping({"BROKER_BACKEND_SCHEMA": "public"}).backend_schema == "public"


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().cache_mb = 5  # type: ignore[misc]


def test_to_mapping_renders_every_key_as_text() -> None:
    assert Config().to_mapping() == {
        "BROKER_BUSY_TIMEOUT": "5000",
        "BROKER_CACHE_MB": "10",
        "BROKER_SYNC_MODE": "FULL",
        "BROKER_WAL_AUTOCHECKPOINT": "1000",
        "BROKER_MAX_MESSAGE_SIZE": "10485760",
        "BROKER_AUTO_VACUUM": "1",
        "BROKER_AUTO_VACUUM_INTERVAL": "100",
        "BROKER_VACUUM_THRESHOLD": "10.0",
        "BROKER_VACUUM_BATCH_SIZE": "1000",
        "BROKER_GENERATOR_BATCH_SIZE": "100",
        "BROKER_MAX_INTERVAL": "0.006",
        "BROKER_BURST_SLEEP": "0.001",
        "BROKER_JITTER_FACTOR": "0.15",
        "BROKER_LOAD_MAX_FUTURE_SKEW_SECONDS": "300",
        "BROKER_BACKEND_SCHEMA": "simplebroker_pg_v1",
        "BROKER_RELAXED_ORDER": "0",
    }
    assert Config(auto_vacuum=False).to_mapping()["BROKER_AUTO_VACUUM"] == "0"
    assert Config(relaxed_order=True).to_mapping()["BROKER_RELAXED_ORDER"] == "1"


@settings(max_examples=80, deadline=None, database=None)
@given(
    busy=st.integers(0, 10**6),
    cache=st.integers(1, 10**4),
    sync=st.sampled_from(["FULL", "NORMAL", "OFF", "EXTRA"]),
    wal=st.integers(0, 10**6),
    size=st.integers(1, 2**31),
    auto=st.booleans(),
    interval=st.integers(1, 10**6),
    percent=st.floats(0, 100, allow_nan=False),
    vbatch=st.integers(1, 10**6),
    gbatch=st.integers(1, 10**6),
)
def test_to_mapping_round_trips(
    busy: int,
    cache: int,
    sync: str,
    wal: int,
    size: int,
    auto: bool,
    interval: int,
    percent: float,
    vbatch: int,
    gbatch: int,
) -> None:
    config = Config(busy, cache, sync, wal, size, auto, interval, percent, vbatch, gbatch)
    mapping = config.to_mapping()
    assert all(isinstance(v, str) for v in mapping.values())
    assert Config.from_mapping(mapping) == config


@settings(max_examples=300, deadline=None, database=None)
@given(
    key=st.sampled_from(CONFIG_KEYS),
    text=st.one_of(st.text(max_size=8), st.text(alphabet="-+ .0123456789eE_xna", max_size=8)),
)
def test_any_string_either_parses_or_is_a_config_error(key: str, text: str) -> None:
    try:
        config = Config.from_mapping({key: text})
    except ConfigError as error:
        assert error.key == key
        return
    assert Config.from_mapping(config.to_mapping()) == config


# ------------------------------------------------------------- integer bounds
# Where each value goes: 32-bit PRAGMAs (and sqlite3's C int timeout) or a 64-bit bound parameter.
BOUNDS = {
    "BROKER_BUSY_TIMEOUT": (0, 2**31 - 1),
    "BROKER_CACHE_MB": (1, (2**31 - 1) // 1024),
    "BROKER_WAL_AUTOCHECKPOINT": (0, 2**31 - 1),
    "BROKER_MAX_MESSAGE_SIZE": (1, 2**63 - 1),
    "BROKER_VACUUM_BATCH_SIZE": (1, 2**63 - 1),
    "BROKER_GENERATOR_BATCH_SIZE": (1, 2**63 - 1),
    "BROKER_AUTO_VACUUM_INTERVAL": (-(2**63), 2**63 - 1),
    "BROKER_AUTO_VACUUM": (-(2**63), 2**63 - 1),
}


@pytest.mark.parametrize("key", list(BOUNDS))
def test_integers_are_bounded_where_they_are_used(key: str) -> None:
    low, high = BOUNDS[key]
    for value in (high, str(high), f" {high} ", low, str(low)):
        Config.from_mapping({key: value})
    for value in (high + 1, str(high + 1), low - 1, str(low - 1), 2**64, "9" * 30, "9" * 5000, "-" + "9" * 5000):
        with pytest.raises(ConfigError) as caught:
            Config.from_mapping({key: value})
        assert caught.value.key == key
        assert str(high) in caught.value.expected
        assert str(caught.value).startswith(f"invalid configuration {key}=")


def test_the_largest_values_reach_their_pragmas_intact() -> None:
    config = Config(busy_timeout_ms=2**31 - 1, cache_mb=(2**31 - 1) // 1024, wal_autocheckpoint=2**31 - 1)
    pragmas = SQLITE.connection_setup(config)
    numbers = [int(p.split("=")[1]) for p in pragmas if p.split("=")[1].lstrip("-").isdigit()]
    assert numbers == [2**31 - 1, 2**31 - 1, -2147482624]
    assert all(-(2**31) <= n < 2**31 for n in numbers)


def test_typed_construction_is_bounded_too() -> None:
    with pytest.raises(ConfigError, match="BROKER_VACUUM_BATCH_SIZE"):
        Config(vacuum_batch_size=2**63)
    with pytest.raises(ConfigError, match="BROKER_BUSY_TIMEOUT"):
        Config(busy_timeout_ms=2**31)


@pytest.mark.parametrize("value", [10**400, -(10**400)])
def test_an_integer_beyond_a_float_is_a_config_error_for_the_threshold(value: int) -> None:
    with pytest.raises(ConfigError, match="BROKER_VACUUM_THRESHOLD"):
        Config.from_mapping({"BROKER_VACUUM_THRESHOLD": value})


# ------------------------------------------------------------ strict mappings
def test_strict_mapping_accepts_every_key_of_ours_and_of_simplebroker() -> None:
    mapping = {key: "1" for key in KNOWN_KEYS}
    mapping["BROKER_SYNC_MODE"] = "off"
    mapping["BROKER_VACUUM_THRESHOLD"] = "5"
    mapping["BROKER_JITTER_FACTOR"] = "0.5"
    config = Config.from_mapping(mapping, strict=True)
    assert config.sync_mode == "OFF"
    assert config.cache_mb == 1
    assert set(CONFIG_KEYS) <= KNOWN_KEYS
    assert set(SIMPLEBROKER_ONLY_KEYS).isdisjoint(CONFIG_KEYS)


def test_known_keys_are_simplebrokers_keys_and_our_own() -> None:
    constants = pytest.importorskip("simplebroker._constants")
    theirs = {"BROKER_" + name for name in constants.DEFAULT_CONFIG}
    assert theirs | set(OWN_KEYS) == KNOWN_KEYS
    assert not theirs & set(OWN_KEYS)


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("SYNC_MODE", "BROKER_SYNC_MODE"),
        ("BROKER_SYNCMODE", "BROKER_SYNC_MODE"),
        ("broker_sync_mode", "BROKER_SYNC_MODE"),
        ("BROKER_CACHE", "BROKER_CACHE_MB"),
        ("BUSY_TIMEOUT_MS", "BROKER_BUSY_TIMEOUT"),
        ("PATH", None),
        ("BROKER_X", None),
    ],
)
def test_strict_mapping_refuses_unknown_keys_naming_them(key: str, hint: str | None) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_mapping({"BROKER_CACHE_MB": "3", key: "OFF"}, strict=True)
    error = caught.value
    assert error.key == key
    assert error.value == "OFF"
    assert isinstance(error, ValueError)
    assert str(error).startswith(f"invalid configuration {key}='OFF': expected a BROKER_* key")
    if hint is None:
        assert "did you mean" not in str(error)
    else:
        assert str(error).endswith(f"(did you mean {hint}?)")
    # Lenient parsing (the environment) ignores the same key.
    assert Config.from_mapping({"BROKER_CACHE_MB": "3", key: "OFF"}) == Config(cache_mb=3)


def test_strict_mapping_refuses_a_non_str_key_and_a_non_mapping() -> None:
    with pytest.raises(ConfigError, match="keys are str, not int"):
        Config.from_mapping({1: "x"}, strict=True)  # type: ignore[dict-item]
    for wrong in ("BROKER_SYNC_MODE=OFF", [("BROKER_SYNC_MODE", "OFF")]):
        with pytest.raises(InvalidTypeError, match="config must be a Config, a mapping"):
            Config.from_mapping(wrong, strict=True)  # type: ignore[arg-type]
