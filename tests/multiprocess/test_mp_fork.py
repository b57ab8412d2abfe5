"""A Broker opened before ``fork()`` keeps working in the parent and the children.

The blocking adapter promises that a forked child opens fresh connections and
never touches (or closes) the parent's. Four forked children claim from a
queue the parent filled and write their own messages; the parent goes on
using its broker throughout.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest

from sansio_broker.adapters.blocking import Broker
from tests.support.rawdb import query

CHILDREN = 4
MESSAGES = 600
PER_CHILD_WRITES = 100


def _child(broker: Broker, index: int, out: str) -> None:
    got = []
    while (message := broker.claim("q")) is not None:
        got.append([message.body, message.id])
    written = broker.write_many("r", [f"c{index}-{i}" for i in range(PER_CHILD_WRITES // 2)])
    written += [broker.write("r", f"c{index}-{i}") for i in range(PER_CHILD_WRITES // 2, PER_CHILD_WRITES)]
    broker.close()  # closes only what this child opened
    Path(out).write_text(json.dumps({"claimed": got, "written": written}))


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32" or not hasattr(multiprocessing, "get_context"), reason="needs fork")
def test_children_forked_with_an_open_broker(tmp_path: Path) -> None:
    db = tmp_path / "broker.db"
    context = multiprocessing.get_context("fork")
    with Broker(db, config={}) as broker:
        ids = broker.write_many("q", [f"m{i}" for i in range(MESSAGES)])
        first = broker.claim("q")  # the parent's connection is in use before the fork
        assert first is not None
        outputs = [tmp_path / f"child{i}.json" for i in range(CHILDREN)]
        children = [context.Process(target=_child, args=(broker, i, str(out))) for i, out in enumerate(outputs)]
        for child in children:
            child.start()
        # The parent keeps claiming and writing while the children run.
        parent_claims = [first]
        while (message := broker.claim("q")) is not None:
            parent_claims.append(message)
        parent_writes = broker.write_many("r", [f"parent-{i}" for i in range(20)])
        for child in children:
            child.join(timeout=60)
            assert child.exitcode == 0, f"child exit {child.exitcode}"

        results = [json.loads(out.read_text()) for out in outputs]
        claimed = [(m.body, m.id) for m in parent_claims] + [
            (body, ident) for r in results for body, ident in r["claimed"]
        ]
        counts = Counter(claimed)
        assert not [m for m, n in counts.items() if n > 1], "delivered twice"
        assert sorted(claimed, key=lambda m: m[1]) == [(f"m{i}", ids[i]) for i in range(MESSAGES)]
        for r in [*results, {"claimed": [], "written": parent_writes}]:
            assert all(a < b for a, b in pairwise(r["written"]))
            assert all(a[1] < b[1] for a, b in pairwise(r["claimed"]))

        # The parent's broker still works after its children closed theirs.
        tail = broker.claim_all("r")
        assert len(tail) == CHILDREN * PER_CHILD_WRITES + 20
        assert {m.id for m in tail} == {i for r in results for i in r["written"]} | set(parent_writes)
        assert broker.write("q", "after") > max(m.id for m in tail)

    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    (last_ts,) = query(db, "SELECT value FROM meta WHERE key = 'last_ts'")[0]
    (newest,) = query(db, "SELECT MAX(ts) FROM messages")[0]
    assert last_ts >= newest
