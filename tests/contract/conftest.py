"""Fixtures of the contract suite: every test runs once per adapter and per backend.

``backend`` is ``sqlite`` or ``postgres``; ``target`` is where the test's
broker lives (a file in the test's directory, or a schema of the test's own
on the shared PostgreSQL server: see ``contract_support.Target``).
``broker`` is a synchronous facade (see ``contract_support``) on ``target``;
``make_broker`` opens more (other targets, other settings). After the test
every facade is checked (nothing held, every connection back in its pool,
still working), closed, and its threads stopped.

A test about SQLite files themselves (WAL, file modes, layouts, PRAGMAs) is
marked ``@pytest.mark.sqlite_only("why")`` and runs on SQLite only; only such
a test may use ``db_path`` (the SQLite file). Every other test runs on both
backends, the PostgreSQL cases with ids ``[<adapter>-postgres]``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.contract_support import (
    ADAPTERS,
    Facade,
    MakeBroker,
    PostgresTarget,
    SqliteTarget,
    Target,
    adapter_threads,
    new_facade,
    threads_left,
)
from tests.support import pgserver
from tests.support.pgserver import pg_dsn, pg_server

__all__ = ["pg_dsn", "pg_server"]

BACKENDS = ("sqlite", "postgres")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sqlite_only(reason): a contract test about SQLite files themselves; runs on SQLite only"
    )


@pytest.hookimpl(trylast=True)  # after the adapter's parametrization: ids read [blocking-postgres]
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("sqlite_only")
    if marker is not None and not (marker.args and isinstance(marker.args[0], str)):
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: sqlite_only needs the reason as its argument")
    if marker is None and "db_path" in metafunc.fixturenames:
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid} uses db_path (a SQLite file) but is not marked sqlite_only: "
            "use target (and rows/meta/snapshot of contract_support), or mark it with the reason"
        )
    metafunc.parametrize("backend", ["sqlite"] if marker is not None else list(BACKENDS))


@pytest.fixture(params=ADAPTERS)
def adapter(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _every_test_has_a_backend(backend: str) -> None:
    """Puts ``backend`` in every contract test, so that each runs on both (or is marked)."""


@pytest.fixture
def make_target(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[[], Target]]:
    """``make_target()``: a new, empty target of the test's backend (another file; another schema)."""
    made: list[Target] = []
    counter = itertools.count()
    dsn = request.getfixturevalue("pg_dsn") if backend == "postgres" else ""

    def make() -> Target:
        number = next(counter)
        if backend == "sqlite":
            target: Target = SqliteTarget(tmp_path / ("broker.db" if number == 0 else f"broker{number}.db"))
        else:
            target = PostgresTarget(dsn, pgserver.new_schema_name("c"))
        made.append(target)
        return target

    yield make
    for target in made:
        if isinstance(target, PostgresTarget):
            pgserver.drop_schema(target.dsn, target.schema)


@pytest.fixture
def target(make_target: Callable[[], Target]) -> Target:
    """The test's target: ``broker.db`` in its directory, or a schema of its own."""
    return make_target()


@pytest.fixture
def db_path(target: Target) -> Path:
    """The SQLite file of a ``sqlite_only`` test."""
    assert isinstance(target, SqliteTarget)
    return target.path


@pytest.fixture
def make_broker(adapter: str, target: Target) -> Iterator[MakeBroker]:
    """``make_broker(path=target, config=QUIET)``; ``config=None`` reads the environment."""
    opened: list[Facade] = []

    def make(path: Target | str | os.PathLike[str] | None = None, **kwargs: Any) -> Facade:
        facade = new_facade(adapter, target if path is None else path, **kwargs)
        opened.append(facade)
        return facade

    yield make
    errors: list[BaseException] = []
    for facade in opened:
        try:
            facade.assert_clean()
        except BaseException as exc:
            errors.append(exc)
        finally:
            try:
                facade.shutdown()
            except BaseException as exc:
                errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def broker(make_broker: MakeBroker) -> Facade:
    return make_broker()


@pytest.fixture(autouse=True)
def _no_thread_outlives_the_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every broker is closed and every worker and bridge thread stopped after each test.

    Tests of known bugs are exempt.
    """
    before = adapter_threads()
    yield
    known_bug = request.node.get_closest_marker("xfail") is not None
    left = threads_left(before, timeout=0.5 if known_bug else 5)
    if not known_bug:
        assert not left, f"thread(s) outlived the test: {sorted(t.name for t in left)}"
