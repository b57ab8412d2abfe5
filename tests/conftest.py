"""Puts tests/ on sys.path, so every suite can import the shared ``support`` package.

The worker scripts that run as subprocesses insert the same directory themselves.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
