"""Helpers shared by every test suite, imported as ``tests.support.<module>``.

- :mod:`tests.support.contract`: the storage contract's schema text, verbatim.
- :mod:`tests.support.internals`: what tests read of an adapter's private state, in one place.
- :mod:`tests.support.rawdb`: plain sqlite3 looks at a database file.
- :mod:`tests.support.threads`: the threads an adapter starts.
- :mod:`tests.support.workers`: worker processes released together, and their drain loop.
"""
