"""Helpers shared by the blocking-adapter tests."""

from __future__ import annotations

# Settings that keep tests independent of automatic vacuum unless they test it.
QUIET = {"BROKER_AUTO_VACUUM": "0"}
