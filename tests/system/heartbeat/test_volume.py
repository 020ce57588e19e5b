"""The volume agents against the real blockrepl: promote, expose (nbdfuse + loop), fsck, mount.

Two blockrepl replicas (host processes, loopback replication link, protocol C) and two heartbeat
members in network namespaces (the host's mount namespace, as a pod's Bidirectional hostPath
mount) with a real API server. The filesystem is laid down once through the first Primary, as
fsinit does.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.blockrepl_cluster import Cluster
from harness.heartbeat_net import HeartbeatNet
from harness.heartbeat_volume import (
    node_dies,
    running_replicas,
    start_members,
)
from harness.procs import wait_for
from hastack_common import expose

FAILOVER_BOUND = 4.0 + 2 * 1.0 + 10.0  # the Lease, plus fsck and mount on two busy cores


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Cluster]:
    with running_replicas(tmp_path) as c:
        yield c


def test_failover_with_blockrepl_and_a_filesystem(replicas: Cluster, tmp_path: Path,
                                                  hbcluster: Callable[..., HeartbeatNet]) -> None:
    net, active = start_members(replicas, tmp_path, hbcluster, "vol")
    names = list(net.members)
    old = wait_for(active, 60, "one active member with its volume mounted")
    i_old = names.index(old)
    mem = net.members[old]
    st = mem.status()
    assert {"volume_promoted", "mounted", "serving"} <= set(st["lastFailover"]["phases"])
    assert replicas[i_old].status()["role"] == "Primary"
    assert mem.state_file()["mounted"] is True
    assert expose.is_mountpoint(str(tmp_path / old / "mnt"))
    data = tmp_path / old / "mnt" / "acknowledged.txt"
    data.write_text("written on the first active\n")
    with open(data) as f:
        os.fsync(f.fileno())
    node_dies(net, replicas, tmp_path, old)
    new = wait_for(lambda: (a := active()) and a != old and a, FAILOVER_BOUND, "the standby active")
    i_new = names.index(new)
    assert replicas[i_new].status()["role"] == "Primary"
    new_mem = net.members[new]
    mounted = tmp_path / new / "mnt" / "acknowledged.txt"
    assert mounted.read_text() == "written on the first active\n"
    phases = new_mem.status()["lastFailover"]["phases"]
    assert phases["detected"]["seconds"] == 0
    assert 0 <= phases["lease_acquired"]["seconds"] <= phases["volume_promoted"]["seconds"] \
        <= phases["mounted"]["seconds"] <= phases["serving"]["seconds"]
    # a clean switchover back is refused while the old replica is gone: the target must be alive
    with pytest.raises(Exception, match="not alive and eligible"):
        new_mem.call("switchover", {"target": old})


def test_an_outdated_standby_does_not_promote_and_says_why(replicas: Cluster, tmp_path: Path,
                                                           hbcluster: Callable[..., HeartbeatNet]) -> None:
    net, active = start_members(replicas, tmp_path, hbcluster, "outd")
    names = list(net.members)
    old = wait_for(active, 60, "one active member")
    i_old, standby = names.index(old), next(n for n in names if n != old)
    i_new = names.index(standby)
    # the replication link drops: the Primary fences its peer (records it Outdated) ...
    replicas[i_old].call("disconnect")
    replicas[i_new].call("disconnect")
    wait_for(lambda: replicas[i_new].status()["disk"] == "Outdated", 20, "the standby's replica Outdated")
    # ... and writes alone
    data = tmp_path / old / "mnt" / "after-the-link-dropped.txt"
    data.write_text("only on the old Primary\n")
    with open(data) as f:
        os.fsync(f.fileno())
    wait_for(lambda: "Outdated" in net.members[standby].status()["blocked"], 10, "the standby blocked")
    node_dies(net, replicas, tmp_path, old)
    deadline = time.monotonic() + 4.0 + 2 * 1.0 + 4.0  # well past the Lease's expiry
    while time.monotonic() < deadline:
        st = net.members[standby].status()
        assert st["role"] == "standby", "an Outdated replica must never be promoted"
        time.sleep(0.25)
    assert st["peers"][old]["state"] == "dead" and st["eligible"] is False
    assert st["blocked"] == "local replica is Outdated"
    assert replicas[i_new].status()["role"] == "Secondary"
