"""The wheel ships the core and its adapters under ``sansio_broker`` only."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_wheel_has_no_top_level_adapters_package(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("sansio_broker-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"sansio_broker"}
    assert "sansio_broker/adapters/blocking.py" in names
    assert "sansio_broker/adapters/_sync.py" in names
    assert "sansio_broker/py.typed" in names
