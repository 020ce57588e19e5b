"""Root conftest: tier markers are applied from the folder a test lives in."""

from __future__ import annotations

import os
import pathlib

import pytest

# Subprocesses started by tests (`python -m hastack_common.cli ...`) run with the repository
# root as their working directory, whose `operator/` folder would shadow the stdlib module.
os.environ["PYTHONSAFEPATH"] = "1"

TIERS = ("unit", "integration", "system", "e2e", "bench")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = pathlib.Path(str(item.fspath)).parts
        for tier in TIERS:
            if tier in parts and tier != "unit":
                item.add_marker(getattr(pytest.mark, tier))
