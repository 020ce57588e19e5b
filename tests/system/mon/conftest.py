from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from harness.controlplane import ControlPlane
from harness.mon_env import ApiBridge, Certs, MonProcess, Targets, make_certs
from harness.procs import Supervisor


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def targets(sup: Supervisor, tmp_path: pathlib.Path, certs: Certs) -> Targets:
    return Targets(sup, tmp_path, certs).start()


@pytest.fixture
def mon_factory(sup: Supervisor, tmp_path: pathlib.Path) -> Callable[[dict[str, Any]], MonProcess]:
    def start(config: dict[str, Any]) -> MonProcess:
        return MonProcess(sup, tmp_path, config)

    return start


@pytest.fixture(scope="session")
def mon_cp() -> Iterator[ControlPlane]:
    """etcd + kube-apiserver (+ kwok nodes, no controllers) on an address that both this host
    and network namespaces reach: mon's API tests and the heartbeat members share it."""
    bridge = ApiBridge()
    cp = ControlPlane(nodes=2, controllers=False, bind_address=bridge.ip)
    try:
        cp.start()
        yield cp
    finally:
        cp.stop()
        bridge.close()
