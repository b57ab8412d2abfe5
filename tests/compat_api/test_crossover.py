"""One file, both libraries: what ``simplebroker.Queue`` writes our
``compat.Queue`` reads with the same IDs, and back."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import simplebroker

from sansio_broker.adapters import compat


def test_simplebroker_writes_ours_reads_and_back(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    with simplebroker.Queue("jobs", db_path=path) as theirs:
        ids = [theirs.write(f"job {n} ✓") for n in range(6)]
        theirs.read_one()  # job 0 claimed
        theirs.write("keep", keep_newest=4)  # claims job 1 and 2
        their_stats = theirs.stats()

    with compat.Queue("jobs", db_path=path) as ours:
        assert dataclasses.asdict(ours.stats()) == dataclasses.asdict(their_stats)
        assert ours.peek_many(with_timestamps=True, include_claimed=True)[0] == ("job 0 ✓", ids[0])
        assert ours.read_one(with_timestamps=True) == ("job 3 ✓", ids[3])
        assert ours.read_many(2, order="newest") == ["keep", "job 5 ✓"]
        assert ours.move("done") == {"message": "job 4 ✓", "timestamp": ids[4]}
        assert ours.find_message_ids(body_contains="job", include_claimed=True) == ids[:4] + ids[5:]  # job 4 moved
        assert not ours.has_pending()
        new = [ours.write(f"back {n}") for n in range(3)]
        assert new[0] > max(ids)  # the ID clock carries on from SimpleBroker's
        ours.insert_messages([("restored", 7)])

    with simplebroker.Queue("jobs", db_path=path) as theirs, simplebroker.Queue("done", db_path=path) as done:
        assert done.peek(with_timestamps=True) == ("job 4 ✓", ids[4])
        assert theirs.peek_many(with_timestamps=True) == [("restored", 7)] + [(f"back {n}", new[n]) for n in range(3)]
        assert list(theirs.read(all_messages=True)) == ["restored", "back 0", "back 1", "back 2"]
        assert theirs.write("later") > new[-1]


def test_both_open_at_once_share_one_id_order(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    with simplebroker.Queue("q", db_path=path, persistent=True) as theirs, compat.Queue("q", db_path=path) as ours:
        written = []
        for n in range(10):
            writer = theirs if n % 2 else ours
            written.append((f"m{n}", writer.write(f"m{n}")))
        assert [w[1] for w in written] == sorted(w[1] for w in written)
        assert theirs.peek_many(with_timestamps=True) == written
        assert ours.read_many(5, with_timestamps=True) == written[:5]
        assert theirs.read_many(5, with_timestamps=True) == written[5:]
        assert ours.stats() == compat.QueueStats("q", pending=0, claimed=10, total=10)
