"""Random operation sequences against a plain-Python model of the queues, for every adapter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sansio_broker import Message, QueueStats
from tests.contract.contract_support import Facade, Target, open_facade, rows

QUEUES = ("a", "b", "c")
queues = st.sampled_from(QUEUES)
bodies = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6)

operations = st.one_of(
    st.tuples(st.just("write"), queues, bodies),
    st.tuples(st.just("write_many"), queues, st.lists(bodies, max_size=4)),
    st.tuples(st.just("claim"), queues),
    st.tuples(st.just("claim_many"), queues, st.integers(1, 4)),
    st.tuples(st.just("claim_all"), queues),
    st.tuples(st.just("claim_id"), queues, st.integers(0, 30)),
    st.tuples(st.just("move"), queues, queues),
    st.tuples(st.just("move_many"), queues, queues, st.integers(1, 4)),
    st.tuples(st.just("move_id"), queues, queues, st.integers(0, 30)),
    st.tuples(st.just("peek_many"), queues, st.integers(1, 4)),
    st.tuples(st.just("delete"), queues),
    st.tuples(st.just("vacuum")),
    st.tuples(st.just("broadcast"), bodies),
)


@dataclass
class Row:
    queue: str
    body: str
    id: int
    claimed: bool = False


@dataclass
class Model:
    rows: list[Row] = field(default_factory=list)
    issued: list[int] = field(default_factory=list)

    def pending(self, queue: str) -> list[Row]:
        return sorted((r for r in self.rows if r.queue == queue and not r.claimed), key=lambda r: r.id)

    def by_index(self, index: int) -> Row | None:
        return self.rows[index % len(self.rows)] if self.rows else None


def apply(broker: Facade, target: Target, model: Model, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "write":
        _, q, body = op
        new = broker.write(q, body)
        model.rows.append(Row(q, body, new))
        model.issued.append(new)
    elif kind == "write_many":
        _, q, items = op
        ids = broker.write_many(q, items)
        assert len(ids) == len(items)
        model.rows += [Row(q, b, i) for b, i in zip(items, ids, strict=True)]
        model.issued += ids
    elif kind in ("claim", "claim_many", "claim_all"):
        q = op[1]
        limit = {"claim": 1, "claim_many": op[-1], "claim_all": None}[kind]
        expected = model.pending(q)[:limit]
        got: list[Message]
        if kind == "claim":
            one = broker.claim(q)
            got = [] if one is None else [one]
        elif kind == "claim_many":
            got = broker.claim_many(q, limit)
        else:
            got = broker.claim_all(q)
        assert got == [Message(r.body, r.id) for r in expected]
        for r in expected:
            r.claimed = True
    elif kind == "claim_id":
        _, q, index = op
        row = model.by_index(index)
        if row is None:
            return
        got = broker.claim(q, message_id=row.id)
        if row.queue == q and not row.claimed:
            assert got == Message(row.body, row.id)
            row.claimed = True
        else:
            assert got is None
    elif kind in ("move", "move_many"):
        src, dst = op[1], op[2]
        if src == dst:
            return
        limit = 1 if kind == "move" else op[3]
        expected = model.pending(src)[:limit]
        if kind == "move":
            one = broker.move(src, dst)
            got = [] if one is None else [one]
        else:
            got = broker.move_many(src, dst, limit)
        assert got == [Message(r.body, r.id) for r in expected]
        for r in expected:
            r.queue = dst
    elif kind == "move_id":
        _, src, dst, index = op
        row = model.by_index(index)
        if row is None or src == dst:
            return
        got = broker.move(src, dst, message_id=row.id)
        if row.queue == src:  # by ID, claimed rows move too and stay claimed
            assert got == Message(row.body, row.id)
            row.queue = dst
        else:
            assert got is None
    elif kind == "peek_many":
        _, q, limit = op
        expected = model.pending(q)[:limit]
        assert broker.peek_many(q, limit) == [Message(r.body, r.id) for r in expected]
    elif kind == "delete":
        q = op[1]
        gone = [r for r in model.rows if r.queue == q]
        assert broker.delete(q) == len(gone)
        model.rows = [r for r in model.rows if r.queue != q]
    elif kind == "vacuum":
        claimed = [r for r in model.rows if r.claimed]
        assert broker.vacuum() == len(claimed)
        model.rows = [r for r in model.rows if not r.claimed]
    elif kind == "broadcast":
        targets = sorted({r.queue for r in model.rows})
        assert broker.broadcast(op[1]) == len(targets)
        stored = {(q, ts) for q, body, ts, _ in rows(target) if body == op[1] and ts not in model.issued}
        assert sorted(q for q, _ in stored) == targets
        for q, ts in sorted(stored, key=lambda item: item[1]):
            model.rows.append(Row(q, op[1], ts))
            model.issued.append(ts)


def op_bodies(op: tuple[Any, ...]) -> list[str]:
    """The bodies an operation writes."""
    if op[0] == "write":
        return [op[2]]
    if op[0] == "write_many":
        return list(op[2])
    if op[0] == "broadcast":
        return [op[1]]
    return []


@settings(
    max_examples=40,
    deadline=None,
    database=None,  # write no example database outside tests/contract
    # ``adapter`` is only the adapter's name: the same for every example.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(operations, min_size=1, max_size=25))
def test_random_operations_match_model(
    adapter: str, backend: str, make_target: Callable[[], Target], ops: list[tuple[Any, ...]]
) -> None:
    if backend == "postgres":  # PostgreSQL text cannot hold NUL: test_write_accepts_empty_nul_and_unicode_bodies
        assume(not any("\0" in body for op in ops for body in op_bodies(op)))
    path = make_target()  # a new one for each example
    model = Model()
    with open_facade(adapter, path) as broker:
        for op in ops:
            apply(broker, path, model, op)
        assert model.issued == sorted(model.issued)
        assert len(set(model.issued)) == len(model.issued)
        expected_stats = []
        for q in QUEUES:
            members = [r for r in model.rows if r.queue == q]
            if members:
                expected_stats.append(QueueStats(q, sum(not r.claimed for r in members), len(members)))
        assert broker.get_queue_stats() == expected_stats
        assert broker.list_queues() == [s.queue for s in expected_stats]
    on_disk = sorted((q, b, ts, c) for q, b, ts, c in rows(path))
    assert on_disk == sorted((r.queue, r.body, r.id, int(r.claimed)) for r in model.rows)
