"""Fixtures of heartbeat's system tests: members in network namespaces, torn down after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

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
