"""Helpers shared by every test suite (tests/conftest.py puts tests/ on sys.path).

- :mod:`support.contract`: the storage contract's schema text, verbatim.
- :mod:`support.rawdb`: plain sqlite3 looks at a database file.
- :mod:`support.workers`: worker processes released together, and their drain loop.
"""
