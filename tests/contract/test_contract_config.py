"""Configuration: environment, mappings, Config values, and the PRAGMAs every connection gets."""

from __future__ import annotations

import pytest

from sansio_broker import Config, ConfigError, MessageError
from tests.contract.contract_support import MakeBroker, Target, expect_error, open_facade, raised_by, rows


def test_config_none_reads_environment(
    make_broker: MakeBroker, target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKER_MAX_MESSAGE_SIZE", "8")
    monkeypatch.setenv("BROKER_SYNC_MODE", "normal")
    monkeypatch.setenv("BROKER_BUSY_TIMEOUT", "1234")
    monkeypatch.setenv("BROKER_CACHE_MB", "3")
    monkeypatch.setenv("BROKER_WAL_AUTOCHECKPOINT", "77")
    monkeypatch.setenv("BROKER_UNRELATED_SIMPLEBROKER_KEY", "whatever")  # ignored
    broker = make_broker(config=None)
    assert broker.config.max_message_size == 8
    if target.backend == "sqlite":  # the PRAGMAs these settings become
        assert broker.pragma("synchronous") == [1]
        assert broker.pragma("busy_timeout") == [1234]
        assert broker.pragma("cache_size") == [-3 * 1024]
        assert broker.pragma("wal_autocheckpoint") == [77]
    broker.write("q", "12345678")
    with pytest.raises(MessageError):
        broker.write("q", "123456789")
    assert [b for _, b, _, _ in rows(target)] == ["12345678"]


def test_mapping_is_used_instead_of_environment(adapter: str, target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_MAX_MESSAGE_SIZE", "8")
    monkeypatch.setenv("BROKER_SYNC_MODE", "bogus")  # would be refused if the environment were read
    monkeypatch.setenv("BROKER_BUSY_TIMEOUT", "not a number")
    with open_facade(adapter, target, config={"BROKER_SYNC_MODE": "OFF"}) as broker:
        assert broker.config.sync_mode == "OFF"
        if target.backend == "sqlite":
            assert broker.pragma("synchronous") == [0]
        assert broker.config.max_message_size > 8
        broker.write("q", "x" * 100)
    with open_facade(adapter, target, config=Config(max_message_size=4, sync_mode="normal")) as broker:
        assert broker.config.sync_mode == "NORMAL"
        if target.backend == "sqlite":
            assert broker.pragma("synchronous") == [1]
        with pytest.raises(MessageError):
            broker.write("q", "xxxxx")
    assert [b for _, b, _, _ in rows(target)] == ["x" * 100]


def test_mapping_accepts_typed_values(make_broker: MakeBroker) -> None:
    config = {"BROKER_MAX_MESSAGE_SIZE": 4, "BROKER_AUTO_VACUUM": False, "BROKER_VACUUM_THRESHOLD": 25.5}
    broker = make_broker(config=config)
    assert broker.config.max_message_size == 4
    assert broker.config.auto_vacuum is False
    assert broker.config.vacuum_threshold_percent == 25.5


@pytest.mark.parametrize(
    ("mode", "level"),
    [("FULL", 2), ("full", 2), ("NORMAL", 1), ("Normal", 1), ("OFF", 0), (" off ", 0)],
)
@pytest.mark.sqlite_only("PRAGMA synchronous")
def test_sync_mode_applies_to_the_connections(make_broker: MakeBroker, mode: str, level: int) -> None:
    broker = make_broker(config={"BROKER_SYNC_MODE": mode})
    assert broker.pragma("synchronous") == [level]
    broker.write("q", "x")
    assert set(broker.pragma("synchronous")) == {level}


@pytest.mark.sqlite_only("PRAGMA synchronous and busy_timeout")
def test_default_sync_mode_is_full(make_broker: MakeBroker) -> None:
    broker = make_broker(config={})
    assert broker.pragma("synchronous") == [2]
    assert broker.pragma("busy_timeout") == [5000]


INVALID = [
    ("BROKER_SYNC_MODE", "sometimes"),
    ("BROKER_SYNC_MODE", "SOMETIMES"),
    ("BROKER_BUSY_TIMEOUT", "-5"),
    ("BROKER_BUSY_TIMEOUT", "-1"),
    ("BROKER_BUSY_TIMEOUT", "5s"),
    ("BROKER_BUSY_TIMEOUT", "soon"),
    ("BROKER_CACHE_MB", "0"),
    ("BROKER_MAX_MESSAGE_SIZE", "ten"),
    ("BROKER_MAX_MESSAGE_SIZE", "0"),
    ("BROKER_WAL_AUTOCHECKPOINT", "-1"),
    ("BROKER_AUTO_VACUUM", "yes"),
    ("BROKER_VACUUM_THRESHOLD", "150"),
    ("BROKER_VACUUM_THRESHOLD", "nan"),
    ("BROKER_GENERATOR_BATCH_SIZE", "1.5"),
    ("BROKER_VACUUM_BATCH_SIZE", "0"),
]


@pytest.mark.parametrize(("key", "value"), INVALID)
def test_invalid_mapping_value_raises_config_error_naming_key(
    make_broker: MakeBroker, target: Target, key: str, value: str
) -> None:
    raised = raised_by(lambda: make_broker(config={key: value}))
    assert not target.exists()  # refused before the file was touched
    error = expect_error(raised, ConfigError, match=key)
    assert error.key == key
    assert isinstance(error, ValueError)


@pytest.mark.parametrize(("key", "value"), INVALID)
def test_invalid_environment_value_raises_config_error_naming_key(
    make_broker: MakeBroker, target: Target, monkeypatch: pytest.MonkeyPatch, key: str, value: str
) -> None:
    monkeypatch.setenv(key, value)
    raised = raised_by(lambda: make_broker(config=None))
    assert not target.exists()
    assert expect_error(raised, ConfigError, match=key).key == key


@pytest.mark.parametrize("value", [True, 5.0, None])
def test_invalid_typed_value_raises_config_error(make_broker: MakeBroker, target: Target, value: object) -> None:
    raised = raised_by(lambda: make_broker(config={"BROKER_BUSY_TIMEOUT": value}))
    assert not target.exists()
    expect_error(raised, ConfigError, match="BROKER_BUSY_TIMEOUT")


def test_auto_vacuum_any_other_integer_disables(make_broker: MakeBroker, target: Target) -> None:
    broker = make_broker(config={"BROKER_AUTO_VACUUM": "2", "BROKER_AUTO_VACUUM_INTERVAL": "1"})
    assert broker.config.auto_vacuum is False
    broker.write("q", "a")
    broker.claim("q")
    broker.write("q", "b")
    assert len(rows(target)) == 2


def test_auto_vacuum_interval_below_one_treated_as_one(make_broker: MakeBroker, target: Target) -> None:
    broker = make_broker(config={"BROKER_AUTO_VACUUM_INTERVAL": "0", "BROKER_VACUUM_THRESHOLD": "50"})
    broker.write("q", "a")
    broker.claim("q")  # every mutation checks: 1 of 1 claimed
    assert rows(target) == []
