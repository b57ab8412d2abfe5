"""``python -m sansio_broker``: the ``sansio-broker`` command line."""

from sansio_broker.adapters.cli import main

raise SystemExit(main())
