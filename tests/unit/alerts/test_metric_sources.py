"""Series the alerts need that a component exports for them, checked on the component itself."""

from __future__ import annotations

import pathlib

from prometheus_client import generate_latest

from hastack_common.config_heartbeat import HeartbeatConfig
from hastack_heartbeat.node import Node


def sample(node: Node, name: str) -> float:
    for line in generate_latest(node.metrics.registry).decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def test_heartbeat_exports_whether_this_member_may_become_active(tmp_path: pathlib.Path) -> None:
    """hastack_heartbeat_eligible follows membership.eligible (HAClusterNoEligibleStandby reads it)."""
    cfg = HeartbeatConfig.model_validate({
        "cluster": "db", "namespace": "shop", "members": ["db-0", "db-1"], "peerDomain": "db-peers",
        "leaseName": "db-hastack", "runDir": str(tmp_path)})
    now = [1000.0]
    node = Node(cfg, "db-0", b"s" * 32, lease=None, agents=None, clock=lambda: now[0])  # type: ignore[arg-type]
    node._refresh_gauges(now[0])
    assert sample(node, "hastack_heartbeat_eligible") == 1.0
    node.state.failures = (now[0] - 3, now[0] - 2, now[0] - 1)  # maxFailures (3) within failureTimeout
    node._refresh_gauges(now[0])
    assert sample(node, "hastack_heartbeat_eligible") == 0.0
    now[0] += 601  # failureTimeout (10m) later the failures no longer count
    node._refresh_gauges(now[0])
    assert sample(node, "hastack_heartbeat_eligible") == 1.0
    node.state.blocked = "recorded Outdated on the Lease by db-1"
    node._refresh_gauges(now[0])
    assert sample(node, "hastack_heartbeat_eligible") == 0.0
