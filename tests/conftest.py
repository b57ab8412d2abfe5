"""Keeps the caller's ``BROKER_*`` environment out of every test.

Helpers are imported as ``tests.<suite>.<module>``: pytest puts the checkout
root on ``sys.path`` (``pythonpath`` in pyproject.toml); worker scripts run as
subprocesses get it through ``PYTHONPATH`` (``tests.support.workers.clean_env``).
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _clean_broker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No BROKER_* variable from the outside may leak into a test."""
    for key in list(os.environ):
        if key.startswith("BROKER_"):
            monkeypatch.delenv(key)
