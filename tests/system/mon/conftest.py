from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from harness.mon_env import Certs, MonProcess, Targets, make_certs


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


@pytest.fixture
def mon_factory(tmp_path: pathlib.Path) -> Iterator[Callable[[dict[str, Any]], MonProcess]]:
    started: list[MonProcess] = []

    def start(config: dict[str, Any]) -> MonProcess:
        m = MonProcess(tmp_path, config)
        started.append(m)
        return m

    try:
        yield start
    finally:
        for m in started:
            m.stop()
