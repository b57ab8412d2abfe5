"""Cancellation at any await on PostgreSQL, on asyncio (psycopg's async
connection, no thread) and trio (the sync connection in a worker thread).

The same promises as on SQLite (``test_async_cancellation.py``): a claim
hands its message to a task that goes on, leaves it pending, or (cancelled
while COMMIT ran) raises the runtime's outcome-unknown error; a write that
returned an ID is stored; a transaction's claim and its result commit
together. Checked in the server's tables after the broker closed (close
waits for every give-back), read with psycopg, never through the broker.
"""

from __future__ import annotations

import random

import pytest

from sansio_broker import Config
from tests.async_adapters.kit import Kit, Outcomes, cancel_mixed_operations, check_mixed_operations
from tests.support import pgserver
from tests.support.pgserver import pg_dsn, pg_schema, pg_server

try:
    import psycopg
except ImportError:  # as the server fixture does: skip, but fail under CI=true
    if pgserver.in_ci():
        raise
    pytest.skip(f"psycopg is not installed. {pgserver.HOW_TO_ENABLE}.", allow_module_level=True)

__all__ = ["pg_dsn", "pg_schema", "pg_server"]  # the fixtures, for the tests below

pytestmark = pytest.mark.anyio

DELAYS = (0.002, 0.01, 0.03, 0.1, 0.3)  # seconds before a cancellation: spans a claim's run


def stored(dsn: str, schema: str) -> list[tuple[str, str, int, bool]]:
    """Every row (queue, body, id, claimed), read straight from the server."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        return [(q, b, ts, c) for q, b, ts, c in conn.execute("SELECT queue, body, ts, claimed FROM messages")]


def check_claims(rows: list[tuple[str, str, int, bool]], out: Outcomes, queue: str, count: int) -> None:
    """Every message handed over once, pending, or covered by an outcome-unknown error."""
    handed = [m.id for m in out.handed]
    assert len(handed) == len(set(handed)), "a message was handed over twice"
    state = {ts: (body, claimed) for q, body, ts, claimed in rows if q == queue}
    assert len(state) == count, "a message disappeared"
    assert all(state[m.id][0] == m.body for m in out.handed)
    claimed = {ts for ts, (_, c) in state.items() if c}
    assert set(handed) <= claimed, "a handed-over message is not claimed"
    lost = claimed - set(handed)
    assert len(lost) <= out.unknown, f"{len(lost)} claimed but never handed over, {out.unknown} outcome-unknown"


async def test_randomly_cancelled_claims_lose_nothing_on_postgres(
    kit: Kit, cancel_style: str, pg_dsn: str, pg_schema: str
) -> None:
    rng = random.Random(f"{kit.name}-{cancel_style}")
    results: list[tuple[str, Outcomes]] = []
    config = Config(backend_schema=pg_schema, auto_vacuum=False)  # claimed rows stay for the check
    async with kit.open_broker(pg_dsn, pool_size=4, config=config) as broker:
        for round_, max_delay in enumerate(DELAYS):
            queue = f"q{round_}"
            await broker.write_many(queue, [f"m{i}" for i in range(200)])
            results.append((queue, await kit.cancelled_claims(broker, rng, 200, max_delay, cancel_style, queue)))
    rows = stored(pg_dsn, pg_schema)
    for queue, out in results:
        check_claims(rows, out, queue, 200)
    # Both sides were exercised: some claims finished, some were cancelled.
    assert any(out.handed for _, out in results) and any(out.cancelled for _, out in results), results


async def test_mixed_operations_cancelled_at_random_points_on_postgres(
    kit: Kit, cancel_style: str, pg_dsn: str, pg_schema: str
) -> None:
    """Writes and claim-and-write transactions, each cancelled at a random moment."""
    rng = random.Random(f"mixed-{kit.name}-{cancel_style}")
    config = Config(backend_schema=pg_schema, auto_vacuum=False)  # claimed rows stay for the check
    async with kit.open_broker(pg_dsn, pool_size=5, config=config) as broker:
        await broker.write_many("tx_jobs", [f"t{i}" for i in range(100)])
        written, write_unknown = await cancel_mixed_operations(kit, broker, cancel_style, rng, 80, 0.1)
    check_mixed_operations(stored(pg_dsn, pg_schema), written, write_unknown)
