"""Configuration: environment, mappings, Config values, per-connection PRAGMAs."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from support.rawdb import rows

from sansio_broker import Config, ConfigError, MessageError
from sansio_broker.adapters.blocking import Broker


def pragma(connection: sqlite3.Connection, name: str) -> object:
    return connection.execute(f"PRAGMA {name}").fetchone()[0]


def own_connection(broker: Broker) -> sqlite3.Connection:
    return broker._connection().driver.connection


def test_config_none_reads_environment(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_MAX_MESSAGE_SIZE", "8")
    monkeypatch.setenv("BROKER_SYNC_MODE", "normal")
    monkeypatch.setenv("BROKER_BUSY_TIMEOUT", "1234")
    monkeypatch.setenv("BROKER_CACHE_MB", "3")
    monkeypatch.setenv("BROKER_WAL_AUTOCHECKPOINT", "77")
    monkeypatch.setenv("BROKER_UNRELATED_SIMPLEBROKER_KEY", "whatever")  # ignored
    with Broker(db_path) as broker:
        assert broker.config.max_message_size == 8
        conn = own_connection(broker)
        assert pragma(conn, "synchronous") == 1
        assert pragma(conn, "busy_timeout") == 1234
        assert pragma(conn, "cache_size") == -3 * 1024
        assert pragma(conn, "wal_autocheckpoint") == 77
        broker.write("q", "12345678")
        with pytest.raises(MessageError):
            broker.write("q", "123456789")
    assert [b for _, b, _, _ in rows(db_path)] == ["12345678"]


def test_mapping_is_used_instead_of_environment(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_MAX_MESSAGE_SIZE", "8")
    monkeypatch.setenv("BROKER_SYNC_MODE", "bogus")  # would be refused if the environment were read
    with Broker(db_path, config={"BROKER_SYNC_MODE": "OFF"}) as broker:
        assert pragma(own_connection(broker), "synchronous") == 0
        broker.write("q", "x" * 100)
    with Broker(db_path, config=Config(max_message_size=4, sync_mode="normal")) as broker:
        assert pragma(own_connection(broker), "synchronous") == 1
        with pytest.raises(MessageError):
            broker.write("q", "xxxxx")


def test_mapping_accepts_typed_values(db_path: Path) -> None:
    config = {"BROKER_MAX_MESSAGE_SIZE": 4, "BROKER_AUTO_VACUUM": False, "BROKER_VACUUM_THRESHOLD": 25.5}
    with Broker(db_path, config=config) as broker:
        assert broker.config.max_message_size == 4
        assert broker.config.auto_vacuum is False
        assert broker.config.vacuum_threshold_percent == 25.5


@pytest.mark.parametrize(
    ("mode", "level"),
    [("FULL", 2), ("full", 2), ("NORMAL", 1), ("Normal", 1), ("OFF", 0), (" off ", 0)],
)
def test_sync_mode_applies_to_every_connection(db_path: Path, mode: str, level: int) -> None:
    with Broker(db_path, config={"BROKER_SYNC_MODE": mode}) as broker:
        assert pragma(own_connection(broker), "synchronous") == level
        seen: list[object] = []
        thread = threading.Thread(target=lambda: seen.append(pragma(own_connection(broker), "synchronous")))
        thread.start()
        thread.join()
        assert seen == [level]


def test_default_sync_mode_is_full(db_path: Path) -> None:
    with Broker(db_path, config={}) as broker:
        assert pragma(own_connection(broker), "synchronous") == 2
        assert pragma(own_connection(broker), "busy_timeout") == 5000


INVALID = [
    ("BROKER_SYNC_MODE", "sometimes"),
    ("BROKER_BUSY_TIMEOUT", "-5"),
    ("BROKER_BUSY_TIMEOUT", "5s"),
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
def test_invalid_mapping_value_raises_config_error_naming_key(db_path: Path, key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key) as info:
        Broker(db_path, config={key: value})
    assert info.value.key == key
    assert isinstance(info.value, ValueError)
    assert not db_path.exists()  # refused before the file was touched


@pytest.mark.parametrize(("key", "value"), INVALID)
def test_invalid_environment_value_raises_config_error_naming_key(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, value: str
) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=key) as info:
        Broker(db_path)
    assert info.value.key == key
    assert not db_path.exists()


@pytest.mark.parametrize("value", [True, 5.0, None])
def test_invalid_typed_value_raises_config_error(db_path: Path, value: object) -> None:
    with pytest.raises(ConfigError, match="BROKER_BUSY_TIMEOUT"):
        Broker(db_path, config={"BROKER_BUSY_TIMEOUT": value})


def test_auto_vacuum_any_other_integer_disables(db_path: Path) -> None:
    with Broker(db_path, config={"BROKER_AUTO_VACUUM": "2", "BROKER_AUTO_VACUUM_INTERVAL": "1"}) as broker:
        assert broker.config.auto_vacuum is False
        broker.write("q", "a")
        broker.claim("q")
        broker.write("q", "b")
        assert len(rows(db_path)) == 2


def test_auto_vacuum_interval_below_one_treated_as_one(db_path: Path) -> None:
    with Broker(db_path, config={"BROKER_AUTO_VACUUM_INTERVAL": "0", "BROKER_VACUUM_THRESHOLD": "50"}) as broker:
        broker.write("q", "a")
        broker.claim("q")  # every mutation checks: 1 of 1 claimed
        assert rows(db_path) == []
