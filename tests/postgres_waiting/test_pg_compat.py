"""``sansio_broker.adapters.compat.Queue`` (SimpleBroker's ``Queue``) on a PostgreSQL schema."""

from __future__ import annotations

import pytest

from sansio_broker import InvalidInputError
from sansio_broker.adapters.compat import Queue


def test_a_url_as_db_path_opens_the_schema(pg_dsn: str, pg_schema: str) -> None:
    config = {"BROKER_BACKEND_SCHEMA": pg_schema}
    with Queue("jobs", db_path=pg_dsn, config=config) as queue:
        first = queue.write("one")
        queue.write("two")
        assert queue.read_one(with_timestamps=True) == ("one", first)
    with Queue("jobs", db_path=pg_dsn, config=config) as again:
        assert again.peek_many(10) == ["two"]


def test_the_postgres_backend_from_config_keys(pg_dsn: str, pg_schema: str) -> None:
    config = {"BROKER_BACKEND": "postgres", "BROKER_BACKEND_TARGET": pg_dsn, "BROKER_BACKEND_SCHEMA": pg_schema}
    with Queue("jobs", config=config) as queue:
        queue.write("via config")
    with Queue("jobs", db_path=pg_dsn, config={"BROKER_BACKEND_SCHEMA": pg_schema}) as same:
        assert same.read() == "via config"
    with pytest.raises(InvalidInputError, match="BROKER_BACKEND_TARGET"):
        Queue("jobs", config={"BROKER_BACKEND": "postgres"})
