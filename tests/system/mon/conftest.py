from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from harness.mon_env import Certs, Targets, make_certs


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def targets(tmp_path: pathlib.Path, certs: Certs) -> Iterator[Targets]:
    t = Targets(tmp_path, certs).start()
    try:
        yield t
    finally:
        t.stop()
