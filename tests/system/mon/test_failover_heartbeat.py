"""End to end: mon's failover receiver asks a real heartbeat cluster to move its resource group.

Two real heartbeat members in network namespaces arbitrate through a Lease on a real API server
(heartbeat's own harness). One mon process runs beside the active member, as its sidecar would:
``alerting: active`` on that member's state file, the ``failover`` receiver on its control socket.
When the probed service fails, the active member demotes and the other one takes over; mon, now
beside a standby, suppresses further alerts.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from harness.controlplane import ControlPlane
from harness.heartbeat_cluster import setup_cluster
from harness.heartbeat_net import HeartbeatNet
from harness.mon_env import MonProcess, Targets, wait_for
from harness.procs import Supervisor


@pytest.fixture
def cluster(mon_cp: ControlPlane, tmp_path: pathlib.Path) -> Iterator[HeartbeatNet]:
    net = HeartbeatNet(tmp_path / "hb", n=2, prefix="shop", namespace="mon-failover", kubeconfig=mon_cp.kubeconfig)
    try:
        setup_cluster(mon_cp, net)
        yield net
    finally:
        net.close()


def actives(net: HeartbeatNet) -> list[str]:
    return sorted(n for n, m in net.members.items() if m.child is not None and m.status()["role"] == "active")


def test_mon_moves_the_resource_group_when_the_service_fails(
    cluster: HeartbeatNet, targets: Targets, sup: Supervisor, tmp_path: pathlib.Path
) -> None:
    for name in cluster.members:
        cluster.start(name)
    old = wait_for(lambda: len(a := actives(cluster)) == 1 and a[0], 30, "one active member")
    new = next(n for n in cluster.members if n != old)
    wait_for(lambda: cluster.members[old].status()["peers"][new]["state"] == "alive", 15, "the standby alive")
    run = cluster.members[old].run_dir
    spec = {
        "target": {"haCluster": "shop", "port": targets.ports["http"]},  # 127.0.0.1, beside the app
        "probes": [
            {"name": "health", "type": "http", "interval": "250ms", "timeout": "250ms", "http": {"path": "/health"}}
        ],
        "alert": {"after": 2, "every": "0s", "upAlert": False},
        "receivers": [{"name": "move", "type": "failover", "socket": str(run / "heartbeat.sock")}],
    }
    config = {
        "alerting": "active",
        "stateFile": str(run / "state.json"),
        "monitors": [{"name": "shop-http", "namespace": "mon-failover", "spec": spec}],
    }
    mon = MonProcess(sup, tmp_path, config)
    wait_for(lambda: mon.probe("shop-http", "health", "mon-failover")["ok"] is True, 10, "the service probed")
    targets.set_health(503)
    wait_for(lambda: actives(cluster) == [new], 30, f"{new} active after mon's request")
    history = [h for h in mon.call("history") if h["action"] == "alert"]
    assert len(history) == 1 and history[0]["reason"] == "alert: 2 consecutive failures (after=2)"
    assert "deliveries_total" in mon.metrics() and 'receiver="move"' in mon.metrics()
    assert "failover requested" in cluster.logs()
    # mon now sits beside a standby: the outage goes on, nothing more is sent
    wait_for(lambda: cluster.members[old].state_file()["role"] == "standby", 15, "old member standby")
    targets.set_health(200)
    wait_for(lambda: mon.probe("shop-http", "health", "mon-failover")["alert"] == "ok", 10, "recovered")
    targets.set_health(503)
    wait_for(lambda: mon.probe("shop-http", "health", "mon-failover")["consecutiveFailures"] >= 4, 10, "down again")
    status = mon.probe("shop-http", "health", "mon-failover")
    assert status["alert"] == "suppressed" and "standby" in status["reason"]
    assert len([h for h in mon.call("history") if h["action"] == "alert"]) == 1
    assert actives(cluster) == [new]
