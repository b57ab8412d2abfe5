"""A SimpleBroker program, moved over by changing one import.

Run it from anywhere: ``python examples/simplebroker_users.py [path/to/db]``.
Everything below the import is written against ``simplebroker.Queue`` and
runs unchanged on either library, on the same files (without a path both use
``.broker.db`` in the current directory, so ``broker peek jobs --all`` shows
what this left behind).
"""

from __future__ import annotations

import sys

# from simplebroker import Queue                     # before
from sansio_broker.adapters.compat import Queue  # after: the only line that changed


def main(path: str | None = None) -> None:
    with Queue("jobs", db_path=path) as jobs, Queue("failed", db_path=path) as failed:
        first = jobs.write("resize photo 1")
        for n in range(2, 6):
            jobs.write(f"resize photo {n}")
        jobs.write("latest status", keep_newest=None)
        print("first ID:", first, "| next up:", jobs.peek())

        got = jobs.read_one(with_timestamps=True)
        assert got is not None
        body, ts = got
        print(f"read {body!r} (ID {ts}, the same as write() returned: {ts == first})")
        print("newest first:", jobs.read_many(2, order="newest"))

        newest = jobs.peek_one(with_timestamps=True, order="newest")
        if newest is not None:
            print("moved to failed:", jobs.move(failed, message_id=newest[1]))

        # At least once: a batch is committed only once fully handed out.
        for body in jobs.read_generator(delivery_guarantee="at_least_once"):
            print("processing", body)

        print("jobs:", jobs.stats())
        print("failed IDs mentioning 'photo':", failed.find_message_ids(body_contains="photo"))
        print("pending in jobs:", jobs.has_pending(), "| failed exists:", failed.exists())


if __name__ == "__main__":
    main(*sys.argv[1:2])
