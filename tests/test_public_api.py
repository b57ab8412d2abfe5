"""What each public module offers: applications see a curated surface.

``sansio_broker`` is what an application imports (configuration, messages,
errors); ``sansio_broker.driver`` is what a driver author or a test stepping
the core imports; each adapter module names its public objects in
``__all__``, and every name listed there exists.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import sansio_broker
import sansio_broker.adapters
from sansio_broker import driver

ADAPTERS = ["sansio_broker.adapters.blocking", "sansio_broker.adapters.asyncio", "sansio_broker.adapters.trio"]


def test_the_package_exports_what_applications_use() -> None:
    exported = set(sansio_broker.__all__)
    assert {"Config", "Message", "QueueStats", "BrokerError", "OutcomeUnknownError", "__version__"} <= exported
    # Driver-author names live in sansio_broker.driver, not here.
    assert not exported & {"Execute", "Begin", "Session", "BrokerCore", "Operation", "RetryPolicy", "Stream"}
    assert all(hasattr(sansio_broker, name) for name in exported)


def test_the_driver_module_exports_what_driver_authors_use() -> None:
    exported = set(driver.__all__)
    assert {"BrokerCore", "Session", "Operation", "Execute", "Commit", "Dialect", "SQLITE", "Stepper"} <= exported
    assert all(hasattr(driver, name) for name in exported)


@pytest.mark.parametrize("module_name", ADAPTERS)
def test_every_adapter_names_its_public_objects(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert module.__all__, module_name
    assert all(hasattr(module, name) and not name.startswith("_") for name in module.__all__)
    assert "CommitOutcomeUnknown" in module.__all__


ADAPTER_FILES = sorted(Path(sansio_broker.adapters.__file__ or "").parent.glob("*.py"))


@pytest.mark.parametrize("path", ADAPTER_FILES, ids=lambda path: path.name)
def test_adapters_import_only_public_names_of_the_core(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    module_name = path.name
    private_modules = ["core", "commands", "streams", "schema", "states", "errors", "config", "types", "dialect"]
    for private in private_modules:
        assert f"from sansio_broker.{private} import" not in source, (module_name, private)
