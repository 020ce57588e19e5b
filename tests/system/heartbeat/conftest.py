"""Fixtures of heartbeat's system tests: members in network namespaces, torn down after each test."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.controlplane import ControlPlane
from harness.heartbeat_cluster import ApiAddress, install_crd, setup_cluster
from harness.heartbeat_net import HeartbeatNet


@pytest.fixture
def hbnet(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., HeartbeatNet]]:
    made: list[HeartbeatNet] = []

    def make(**kw: Any) -> HeartbeatNet:
        net = HeartbeatNet(tmp_path / f"net{len(made)}", **kw)
        made.append(net)
        return net

    yield make
    failed = getattr(request.node, "rep_call", None)
    for net in made:
        if failed is not None and failed.failed:
            print(net.logs())
        net.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    outcome: Any = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture(scope="module")
def hb_api() -> Iterator[tuple[ApiAddress, ControlPlane]]:
    """A control plane (etcd, kube-apiserver, 3 kwok nodes) on an address the members route to."""
    addr = ApiAddress()
    cp = ControlPlane(nodes=3, controllers=False, bind_address=addr.ip)
    try:
        cp.start()
        install_crd(cp)
        yield addr, cp
    finally:
        cp.stop()
        addr.close()


@pytest.fixture
def hbcluster(hb_api: tuple[ApiAddress, ControlPlane], hbnet: Callable[..., HeartbeatNet],
              request: pytest.FixtureRequest) -> Callable[..., HeartbeatNet]:
    _, cp = hb_api

    def make(**kw: Any) -> HeartbeatNet:
        slug = re.sub(r"[^a-z0-9]+", "-", f"{kw.get('prefix', '')}-{request.node.name}".lower())
        namespace = "hb-" + slug[:50].strip("-")
        net = hbnet(namespace=namespace, kubeconfig=cp.kubeconfig, **kw)
        setup_cluster(cp, net)
        return net

    return make
