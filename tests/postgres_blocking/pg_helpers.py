"""Helpers of the PostgreSQL concurrency tests: simplebroker-pg handles, threads in step, the deadlock count."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sansio_broker import Config
from sansio_broker.adapters.blocking import Broker
from tests.support import pgserver


def ours(dsn: str, schema: str, **config: Any) -> Broker:
    """Our blocking broker on the schema (``config``: Config fields)."""
    return Broker(dsn, config=Config(backend_schema=schema, **config))


@contextmanager
def theirs(dsn: str, schema: str, **config: Any) -> Iterator[Any]:
    """simplebroker-pg's broker connection on the schema (its own pool: one
    per thread); ``config``: its ``BROKER_*`` keys (the environment is not read)."""
    try:
        import simplebroker_pg  # noqa: F401
    except ImportError:
        pgserver.unavailable("simplebroker_pg is not installed")
    from simplebroker import open_broker, resolve_config
    from simplebroker._targets import BrokerTarget

    settings = resolve_config(env={}, override=config)
    with open_broker(BrokerTarget("postgres", dsn, {"schema": schema}), config=settings) as broker:
        yield broker


def together(*workers: Callable[[int], object], rounds: int, timeout: float = 120.0) -> None:
    """Run each worker ``rounds`` times, every round started at once on all
    threads (a barrier); re-raise the first error any of them met."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(workers))

    def loop(work: Callable[[int], object]) -> None:
        try:
            for n in range(rounds):
                barrier.wait(timeout)
                work(n)
        except threading.BrokenBarrierError:
            pass  # another worker failed: its error is the one to report
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=loop, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a worker hangs"
    if errors:
        raise errors[0]


def deadlocks(dsn: str) -> int:
    """Deadlocks the server detected in this database so far.

    A backend reports its count when it goes idle or exits; the callers close
    their brokers first, so this waits until the other backends are gone
    (all but the admin connection this runs on) and then reads fresh numbers.
    """
    others = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
    )
    deadline = time.monotonic() + 10.0
    while pgserver.admin_query(dsn, others)[0][0] and time.monotonic() < deadline:
        time.sleep(0.02)
    pgserver.admin_query(dsn, "SELECT pg_stat_clear_snapshot()")
    rows = pgserver.admin_query(dsn, "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
    return int(rows[0][0])


def rows(dsn: str, schema: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """What the schema holds, read on the admin connection (tables qualified by the caller's ``{s}``)."""
    return pgserver.admin_query(dsn, sql.format(s=f'"{schema}"'), params)
