"""Smoke tests of the PostgreSQL test server itself (tests/support/pgserver.py) and of simplebroker-pg on it."""
