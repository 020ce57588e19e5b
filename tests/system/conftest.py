"""Fixtures shared by the system tier."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from harness.procs import Supervisor


@pytest.fixture
def sup(tmp_path: pathlib.Path) -> Iterator[Supervisor]:
    """Processes of one test, stopped when it ends (their logs under ``tmp_path/logs``)."""
    s = Supervisor(tmp_path / "logs")
    try:
        yield s
    finally:
        s.stop_all()
