"""Vacuum on PostgreSQL: ours and simplebroker-pg's at once, under claims; delete by IDs.

Both take the session-level ``pg_try_advisory_lock(key("vacuum", schema))``
(the other one skips), delete claimed rows in batches and, with ``compact``,
run ``VACUUM`` outside any transaction. The lock must be released on the
connection that took it: afterwards no advisory lock is left while the
brokers (and their connections) are still open.
"""

from __future__ import annotations

import pytest

from sansio_broker.postgres import advisory_lock_key
from tests.postgres_blocking.pg_helpers import ours, rows, theirs, together
from tests.support import pgserver

try:
    import psycopg
except ImportError:
    if pgserver.in_ci():
        raise
    pytest.skip(f"psycopg is not installed. {pgserver.HOW_TO_ENABLE}.", allow_module_level=True)

ROUNDS = 15


def _advisory_locks(dsn: str, schema: str) -> list[tuple[object, ...]]:
    key = advisory_lock_key("vacuum", schema)
    # the one-bigint form: classid = high 32 bits, objid = low 32 bits
    return pgserver.admin_query(
        dsn,
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND "
        "((classid::bigint << 32) | objid::bigint) = (%s::bigint & x'ffffffffffffffff'::bigint)",
        (key,),
    )


def test_our_vacuum_and_simplebroker_pgs_at_once_under_claims(pg_dsn: str, pg_schema: str) -> None:
    with ours(pg_dsn, pg_schema) as broker, theirs(pg_dsn, pg_schema) as sb, theirs(pg_dsn, pg_schema) as sb2:
        kept = broker.write_many("keep", [f"k{n}" for n in range(50)])
        broker.write_many("work", [f"w{n}" for n in range(ROUNDS * 40)])

        def claim(n: int) -> None:
            assert len(broker.claim_many("work", 20)) == 20
            found = sb2.claim_many("work", 20)
            assert len(found) == 20

        together(
            claim,
            lambda n: broker.vacuum(compact=n % 3 == 0),
            lambda n: sb.vacuum(compact=n % 4 == 0),
            rounds=ROUNDS,
        )
        broker.wait_background()  # our auto-vacuum, housekeeping after the claims, holds it meanwhile
        assert _advisory_locks(pg_dsn, pg_schema) == []  # released on the connection that took it
        broker.vacuum(compact=True)
        broker.wait_background()
        assert _advisory_locks(pg_dsn, pg_schema) == []
        assert rows(pg_dsn, pg_schema, "SELECT count(*) FROM {s}.messages WHERE claimed") == [(0,)]
        assert [m.id for m in broker.peek_many("keep", 100)] == kept
        assert broker.has_pending("work") is False


def test_a_vacuum_skips_while_simplebroker_pg_holds_the_lock(pg_dsn: str, pg_schema: str) -> None:
    with ours(pg_dsn, pg_schema) as broker:
        broker.write_many("q", ["a", "b"])
        broker.claim("q")
        holder = psycopg.connect(pg_dsn, autocommit=True)
        try:
            holder.execute("SELECT pg_advisory_lock(%s)", (advisory_lock_key("vacuum", pg_schema),))
            assert broker.vacuum() == 0  # another vacuum runs: skipped, not waited for
            assert broker.vacuum(compact=True) == 0
            holder.execute("SELECT pg_advisory_unlock(%s)", (advisory_lock_key("vacuum", pg_schema),))
        finally:
            holder.close()
        assert broker.vacuum(compact=True) == 1
        assert _advisory_locks(pg_dsn, pg_schema) == []


def test_delete_by_ids_in_one_statement(pg_dsn: str, pg_schema: str) -> None:
    with ours(pg_dsn, pg_schema) as broker:
        ids = broker.write_many("q", [str(n) for n in range(5000)])
        broker.write("other", "x")
        broker.claim("q")  # claimed ones are deleted too
        doomed = ids[::2] + ids[:10:2] + [1, 2, 3]  # repeats and unknown IDs count once / not at all
        assert broker.delete_messages("q", doomed) == len(ids[::2])
        assert broker.delete_messages("other", ids[1::2]) == 0  # another queue's IDs
        assert [m.id for m in broker.peek_many("q", 5000, include_claimed=True)] == ids[1::2]
        assert broker.delete_messages("q", []) == 0
        # no temporary table was needed
        assert rows(pg_dsn, pg_schema, "SELECT count(*) FROM pg_class WHERE relname LIKE 'simplebroker_delete%%'") == [
            (0,)
        ]
