"""Many writers at once, ours in transactions and simplebroker-pg's, all get IDs.

Every writer advances ``meta.last_ts`` (compare and advance) and then holds
the meta row to its COMMIT. A writer whose advance lost reads the row locked
(``LOCK_LAST_TS``, simplebroker-pg's ``LOCK_LAST_TS_ROW``), so its next try
cannot lose again. (A multi-process run once saw a write in a transaction
fail with ``TimestampError: could not advance meta.last_ts after 6
attempts`` before that; this test is the stress, not a reproduction.)
"""

from __future__ import annotations

from tests.postgres_blocking.pg_helpers import ours, theirs, together

ROUNDS = 25


def test_writers_in_transactions_all_get_ids_under_contention(pg_dsn: str, pg_schema: str) -> None:
    brokers = [ours(pg_dsn, pg_schema, auto_vacuum=False) for _ in range(6)]
    written: list[list[int]] = [[] for _ in brokers]

    def ours_in_a_transaction(k: int) -> object:
        def work(n: int) -> None:
            with brokers[k].transaction():
                written[k].extend(brokers[k].write_many("q", [f"o{k}-{n}-{i}" for i in range(3)]))

        return work

    try:
        with (
            theirs(pg_dsn, pg_schema, BROKER_AUTO_VACUUM=0) as sb1,
            theirs(pg_dsn, pg_schema, BROKER_AUTO_VACUUM=0) as sb2,
        ):
            theirs_ids: list[int] = []
            together(
                *(ours_in_a_transaction(k) for k in range(len(brokers))),  # type: ignore[arg-type]
                lambda n: theirs_ids.append(sb1.write("q", f"t1-{n}")),
                lambda n: theirs_ids.append(sb2.write("q", f"t2-{n}")),
                rounds=ROUNDS,
            )
        ours_ids = [i for ids in written for i in ids]
        assert len(ours_ids) == len(brokers) * ROUNDS * 3
        everything = ours_ids + theirs_ids
        assert len(set(everything)) == len(everything)  # every ID once
        stored = brokers[0].peek_many("q", 10_000)
        assert sorted(m.id for m in stored) == sorted(everything)
        for ids in written:  # each writer's own IDs increase
            assert ids == sorted(ids)
    finally:
        for b in brokers:
            b.close()
