"""DESIGN "Outdating a disconnected peer", end to end with real processes and a real API server.

Two blockrepl replicas and two heartbeat members (network namespaces, the host's mount namespace)
whose fence-peer handler is the cluster's: ``hastack ctl heartbeat outdate-peer``. The replication
link drops, and nothing tells the standby's replica: its own disk still says UpToDate. The Primary
records the standby Outdated on the Lease before its next acknowledged write, writes alone, then
its node dies. Only the Lease's record stands between the standby and promoting stale data.
The test-only ``--test-ignore-outdated`` switches the record off on the members: the same run
then promotes the standby and the write acknowledged after the link dropped is gone -- proof
that this test catches the loss it guards against.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.blockrepl_cluster import Cluster
from harness.controlplane import ControlPlane
from harness.heartbeat_cluster import ApiAddress
from harness.heartbeat_net import HeartbeatNet
from harness.heartbeat_volume import (
    node_dies,
    running_replicas,
    start_members,
)
from harness.procs import wait_for
from hastack_common.outdate_peer import annotation_key

PREFIX = "lout"
LEASE_GONE = 4.0 + 2 * 1.0 + 4.0  # well past the Lease's expiry in the standby's observation
FAILOVER_BOUND = 4.0 + 2 * 1.0 + 10.0


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Cluster]:
    with running_replicas(tmp_path, lease_fenced=PREFIX) as c:
        yield c


def lease_annotations(cp: ControlPlane, net: HeartbeatNet) -> dict[str, str]:
    from kubernetes import client

    with cp.api_client() as api:
        lease: Any = client.CoordinationV1Api(api).read_namespaced_lease(net.prefix, net.namespace)
    return dict(lease.metadata.annotations or {})


def event_reasons(cp: ControlPlane, net: HeartbeatNet) -> list[str]:
    out = cp.kubectl("get", "events", "-n", net.namespace, "-o", "json").stdout
    return [e["reason"] for e in json.loads(out)["items"]]


def write_synced(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _link_drops_primary_writes_alone(replicas: Cluster, tmp_path: Path, cp: ControlPlane,
                                     hbcluster: Callable[..., HeartbeatNet], *extra: str
                                     ) -> tuple[HeartbeatNet, Callable[[], str | None], str, str]:
    net, active = start_members(replicas, tmp_path, hbcluster, PREFIX, *extra)
    names = list(net.members)
    old = wait_for(active, 60, "one active member with its volume mounted")
    standby = next(n for n in names if n != old)
    write_synced(tmp_path / old / "mnt" / "before.txt", "on both replicas\n")
    for r in replicas:
        r.call("disconnect")
    key = annotation_key(standby)
    wait_for(lambda: key in lease_annotations(cp, net), 30, f"{standby} recorded Outdated on the Lease")
    write_synced(tmp_path / old / "mnt" / "alone.txt", "acknowledged by the old Primary alone\n")
    assert replicas[names.index(standby)].status()["disk"] == "UpToDate", \
        "the standby's replica must not know it is stale (only the Lease says so)"
    return net, active, old, standby


def test_the_primary_records_a_lost_peer_and_the_peer_never_promotes(
        replicas: Cluster, tmp_path: Path, hb_api: tuple[ApiAddress, ControlPlane],
        hbcluster: Callable[..., HeartbeatNet]) -> None:
    _, cp = hb_api
    net, _active, old, standby = _link_drops_primary_writes_alone(replicas, tmp_path, cp, hbcluster)
    st = wait_for(lambda: (s := net.members[standby].status())["blocked"].startswith("recorded Outdated") and s,
                  10, "the standby blocked by the Lease's record")
    assert st["eligible"] is False and st["lease"]["outdated"] == {standby: old}
    wait_for(lambda: "PeerOutdated" in event_reasons(cp, net), 30, "a PeerOutdated Event for the operator")
    assert replicas[list(net.members).index(old)].status()["suspended"] == []  # writes flow again
    node_dies(net, replicas, tmp_path, old)
    deadline = time.monotonic() + LEASE_GONE
    while time.monotonic() < deadline:
        st = net.members[standby].status()
        assert st["role"] == "standby", "a replica recorded Outdated must never be promoted"
        time.sleep(0.25)
    assert st["peers"][old]["state"] == "dead"
    assert replicas[list(net.members).index(standby)].status()["role"] == "Secondary"


def test_without_the_record_the_same_run_promotes_stale_data(
        replicas: Cluster, tmp_path: Path, hb_api: tuple[ApiAddress, ControlPlane],
        hbcluster: Callable[..., HeartbeatNet]) -> None:
    _, cp = hb_api
    net, active, old, standby = _link_drops_primary_writes_alone(
        replicas, tmp_path, cp, hbcluster, "--test-ignore-outdated")
    node_dies(net, replicas, tmp_path, old)
    wait_for(lambda: active() == standby, FAILOVER_BOUND, "the stale standby promoted (record ignored)")
    mnt = tmp_path / standby / "mnt"
    assert (mnt / "before.txt").read_text() == "on both replicas\n"
    assert not (mnt / "alone.txt").exists(), "the acknowledged write is lost: what the record prevents"


def test_the_record_is_removed_once_the_peer_has_resynced(
        replicas: Cluster, tmp_path: Path, hb_api: tuple[ApiAddress, ControlPlane],
        hbcluster: Callable[..., HeartbeatNet]) -> None:
    _, cp = hb_api
    net, _active, old, standby = _link_drops_primary_writes_alone(replicas, tmp_path, cp, hbcluster)
    for r in replicas:
        r.call("connect")
    key = annotation_key(standby)
    wait_for(lambda: key not in lease_annotations(cp, net), 60, "the record removed after the resync")
    wait_for(lambda: "PeerResynced" in event_reasons(cp, net), 30, "a PeerResynced Event")
    i_new = list(net.members).index(standby)
    peer = replicas[i_new].status()["peers"][0]
    assert replicas[i_new].status()["disk"] == "UpToDate" and peer["out_of_sync_bytes"] == 0
    wait_for(lambda: net.members[standby].status()["eligible"], 10, "the standby eligible again")
    assert net.members[old].status()["role"] == "active"
