"""Puts tests/ on sys.path, so every suite can import the shared ``support``
package, and keeps the caller's ``BROKER_*`` environment out of every test.

The worker scripts that run as subprocesses insert the same directory themselves.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True)
def _clean_broker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No BROKER_* variable from the outside may leak into a test."""
    for key in list(os.environ):
        if key.startswith("BROKER_"):
            monkeypatch.delenv(key)
