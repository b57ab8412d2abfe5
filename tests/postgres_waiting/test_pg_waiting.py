"""Waiting consumers on PostgreSQL: ``get``/``watch`` wake on LISTEN/NOTIFY.

Writers in other processes (ours and simplebroker-pg) notify in the same
statement as their change; a broker's listener thread hears it. The
fallback poll is pushed out of reach in the tests that prove a wake came
from a notification (so only the notification can have woken the getter),
and brought close in the test of a change that sent none.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio

from sansio_broker import BrokerClosedError, Config
from sansio_broker.adapters import _pglisten
from sansio_broker.adapters.asyncio import AsyncQueue, async_broker
from sansio_broker.adapters.blocking import Broker
from sansio_broker.adapters.trio import TrioQueue, trio_broker
from tests.support import pgserver
from tests.support.workers import clean_env

try:
    import psycopg
except ImportError:  # as the server fixture does: skip, but fail under CI=true
    if pgserver.in_ci():
        raise
    pytest.skip(f"psycopg is not installed. {pgserver.HOW_TO_ENABLE}.", allow_module_level=True)

ADAPTERS = ("blocking", "asyncio", "trio")
WRITERS = ("sansio-broker", "simplebroker-pg")
PATIENCE = 60.0  # seconds a getter waits at most: a guard against hanging, never a speed target


@pytest.fixture
def no_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only notifications (and the listener's first "anything changed") can wake anyone."""
    monkeypatch.setattr(_pglisten, "FALLBACK_SECONDS", 3600.0)
    monkeypatch.setattr(_pglisten.PgListener.__init__, "__kwdefaults__", {"fallback_seconds": 3600.0})


def config(schema: str) -> Config:
    return Config(backend_schema=schema)


def write_from_another_process(writer: str, dsn: str, schema: str, queue: str, body: str) -> None:
    """``body`` into ``queue`` by a separate program (a real process)."""
    if writer == "sansio-broker":
        code = (
            "import sys\nfrom sansio_broker import Config\nfrom sansio_broker.adapters.blocking import Broker\n"
            "with Broker(sys.argv[1], config=Config(backend_schema=sys.argv[2])) as b:\n"
            "    b.write(sys.argv[3], sys.argv[4])\n"
        )
    else:
        code = (
            "import sys\nfrom simplebroker import Queue\nfrom simplebroker_pg import PostgresRunner\n"
            "runner = PostgresRunner(sys.argv[1], schema=sys.argv[2])\n"
            "q = Queue(sys.argv[3], runner=runner, persistent=True)\nq.write(sys.argv[4])\nq.close()\nrunner.close()\n"
        )
    subprocess.run([sys.executable, "-c", code, dsn, schema, queue, body], check=True, env=clean_env(), timeout=60)


def later(action: Callable[[], None], delay: float = 0.2) -> threading.Thread:
    """Run ``action`` in a thread after ``delay`` (the getter is waiting by then, or soon)."""

    def run() -> None:
        time.sleep(delay)
        action()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def get_with(adapter: str, dsn: str, schema: str, queues: list[str], on_waiting: Callable[[], None]) -> Any:
    """``get(queues)`` on a new broker of ``adapter``; ``on_waiting`` runs once it is about to wait."""
    if adapter == "blocking":
        with Broker(dsn, config=config(schema)) as b:
            on_waiting()
            return b.get(queues, timeout=PATIENCE)
    if adapter == "asyncio":

        async def main() -> Any:
            async with async_broker(dsn, config=config(schema)) as b:
                on_waiting()
                return await b.get(queues, timeout=PATIENCE)

        return asyncio.run(main())

    async def trio_main() -> Any:
        async with trio_broker(dsn, config=config(schema)) as b:
            on_waiting()
            return await b.get(queues, timeout=PATIENCE)

    return trio.run(trio_main)


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("adapter", ADAPTERS)
def test_get_wakes_on_another_programs_write(
    adapter: str, writer: str, pg_dsn: str, pg_schema: str, no_fallback: None
) -> None:
    threads: list[threading.Thread] = []

    def start_writer() -> None:
        threads.append(later(lambda: write_from_another_process(writer, pg_dsn, pg_schema, "jobs", "hello")))

    got = get_with(adapter, pg_dsn, pg_schema, ["jobs", "other"], start_writer)
    for thread in threads:
        thread.join()
    assert got == ("jobs", "hello")
    with Broker(pg_dsn, config=config(pg_schema)) as b:  # claimed, exactly once
        assert b.peek_many("jobs", 10) == []


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_get_wakes_on_a_move_by_simplebroker_pg(adapter: str, pg_dsn: str, pg_schema: str, no_fallback: None) -> None:
    with Broker(pg_dsn, config=config(pg_schema)) as b:
        b.write("inbox", "moved along")
    code = (
        "import sys\nfrom simplebroker import Queue\nfrom simplebroker_pg import PostgresRunner\n"
        "runner = PostgresRunner(sys.argv[1], schema=sys.argv[2])\n"
        "q = Queue('inbox', runner=runner, persistent=True)\nassert q.move_one('done') is not None\n"
        "q.close()\nrunner.close()\n"
    )
    threads: list[threading.Thread] = []

    def start_mover() -> None:
        run = [sys.executable, "-c", code, pg_dsn, pg_schema]
        threads.append(later(lambda: subprocess.run(run, check=True, env=clean_env(), timeout=60)))

    got = get_with(adapter, pg_dsn, pg_schema, ["done"], start_mover)
    for thread in threads:
        thread.join()
    assert got == ("done", "moved along")


def test_a_change_without_a_notification_is_found_by_the_fallback_poll(pg_dsn: str, pg_schema: str) -> None:
    """A row inserted by hand (no pg_notify) still reaches a waiting getter."""
    with Broker(pg_dsn, config=config(pg_schema)) as b:
        listeners: list[_pglisten.PgListener] = []
        real = _pglisten.PgListener

        def short_fallback(*args: Any, **kwargs: Any) -> _pglisten.PgListener:
            listener = real(*args, **{**kwargs, "fallback_seconds": 0.2})
            listeners.append(listener)
            return listener

        def insert_silently() -> None:
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                conn.execute(f'SET search_path TO "{pg_schema}"')
                conn.execute("INSERT INTO messages (queue, body, ts) VALUES ('quiet', 'unannounced', 1)")

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_pglisten, "PgListener", short_fallback)
            writer = later(insert_silently, delay=0.5)
            got = b.get(["quiet"], timeout=PATIENCE)
            writer.join()
        assert got == ("quiet", "unannounced")
        assert listeners and listeners[0].deliveries >= 2  # the first "anything", then polls


def test_the_listener_reconnects_after_its_connection_is_killed(pg_dsn: str, pg_schema: str, no_fallback: None) -> None:
    with Broker(pg_dsn, config=config(pg_schema)) as b:
        assert b.get(["jobs"], timeout=0.2) is None  # the listener now listens
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN %%'"
                " AND pid <> pg_backend_pid()"
            ).fetchall()
        assert killed and all(row[0] for row in killed)
        writer = later(lambda: write_from_another_process("simplebroker-pg", pg_dsn, pg_schema, "jobs", "after"))
        got = b.get(["jobs"], timeout=PATIENCE)
        writer.join()
        assert got == ("jobs", "after")


def test_the_listener_keeps_trying_while_the_server_cannot_be_reached(pg_dsn: str, pg_schema: str) -> None:
    """Connecting fails (a core DatabaseError, as _pgsync.connect raises it)
    twice; the listener keeps its thread, connects, and hears a write."""
    from sansio_broker import DatabaseError
    from sansio_broker.adapters._pgsync import connect
    from sansio_broker.postgres import PostgresDialect

    heard: list[frozenset[str] | None] = []
    attempts = 0

    def flaky_connect() -> Any:
        nonlocal attempts
        attempts += 1
        if attempts <= 2:
            raise DatabaseError("cannot connect: the server is down (simulated)")
        return connect(pg_dsn, "test")

    listener = _pglisten.PgListener(flaky_connect, PostgresDialect(pg_schema).LISTEN, heard.append, "test")
    listener.start()
    try:
        deadline = time.monotonic() + PATIENCE
        while not heard and time.monotonic() < deadline:  # connected: its first "anything changed"
            time.sleep(0.01)
        assert heard == [None] and attempts == 3
        write_from_another_process("sansio-broker", pg_dsn, pg_schema, "jobs", "x")
        while len(heard) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert heard[1] == frozenset({"jobs"})
    finally:
        listener.stop()


def test_close_wakes_a_waiting_getter_and_stops_the_listener(pg_dsn: str, pg_schema: str) -> None:
    b = Broker(pg_dsn, config=config(pg_schema))
    outcome: list[BaseException | object] = []

    def wait() -> None:
        try:
            outcome.append(b.get(["jobs"], timeout=PATIENCE))
        except BaseException as exc:
            outcome.append(exc)

    getter = threading.Thread(target=wait)
    getter.start()
    time.sleep(0.3)
    b.close()
    getter.join(PATIENCE)
    assert len(outcome) == 1 and isinstance(outcome[0], BrokerClosedError)
    left = [t.name for t in threading.enumerate() if t.name == "sansio-broker-pg-listener"]
    assert left == []
    with psycopg.connect(pg_dsn, autocommit=True) as admin:  # its LISTEN connection is gone too
        listening = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN %%'").fetchone()
    assert listening == (0,)


@pytest.mark.parametrize("adapter", ("asyncio", "trio"))
def test_watch_sees_every_write_of_another_process(adapter: str, pg_dsn: str, pg_schema: str) -> None:
    bodies = [f"m{n}" for n in range(5)]

    def produce() -> None:
        for body in bodies:
            write_from_another_process("simplebroker-pg", pg_dsn, pg_schema, "feed", body)

    async def consume(open_broker: Any, queue_type: Any) -> list[str]:
        seen: list[str] = []
        async with open_broker(pg_dsn, config=config(pg_schema)) as b:
            writer = later(produce)
            async for body in queue_type("feed", b).watch():
                seen.append(body)
                if len(seen) == len(bodies):
                    break
        writer.join()
        return seen

    if adapter == "asyncio":
        seen = asyncio.run(consume(async_broker, AsyncQueue))
    else:
        seen = trio.run(consume, trio_broker, TrioQueue)
    assert seen == bodies


FORK_SCRIPT = """
import os, sys
from sansio_broker import Config
from sansio_broker.adapters.blocking import Broker

b = Broker(sys.argv[1], config=Config(backend_schema=sys.argv[2]))
b.write("q", "before")
assert b.get(["none"], timeout=0.1) is None  # the listener runs
pid = os.fork()
if pid == 0:  # the child uses the broker, then exits normally: finalizers run
    b.write("q", "from the child")
    sys.exit(0)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
b.write("q", "after")
print(b.read("q", all_messages=True))
print(b.get(["late"], timeout=60))
b.close()
"""


def test_a_forked_child_leaves_the_parents_connections_working(pg_dsn: str, pg_schema: str) -> None:
    """A child of ``fork()`` opens connections of its own and, exiting, never
    closes the parent's (libpq would end them on the shared socket)."""
    script = subprocess.Popen(
        [sys.executable, "-c", FORK_SCRIPT, pg_dsn, pg_schema],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    time.sleep(1.0)  # the parent waits on "late" by now, or soon: a late write is found either way
    write_from_another_process("sansio-broker", pg_dsn, pg_schema, "late", "x")
    out, err = script.communicate(timeout=120)
    assert script.returncode == 0, err
    assert out.splitlines() == ["['before', 'from the child', 'after']", "('late', 'x')"]


@pytest.fixture(autouse=True)
def _no_listener_outlives_the_test() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not any(t.name == "sansio-broker-pg-listener" for t in threading.enumerate()):
            return
        time.sleep(0.05)
    raise AssertionError("a listener thread outlived its broker")
