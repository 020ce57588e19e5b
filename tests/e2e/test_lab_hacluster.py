"""The real member pods on real nodes: the chart's operator reconciles a HACluster with a 2-replica
ReplicatedVolume (the lab's local Block PVs) into the pods it builds itself (blockrepl, heartbeat
and mon as native sidecars, fsinit, the start gate around the app, the member's hostPath mount
directory), and they serve.

The tests run in order on one cluster (module scope, its own namespace): the steady state, then a
deleted active member (switchover; nothing left on its node), then a killed node (failover to the
standby with the data intact; the restarted member comes back without a second mount, loop
device or format)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import lab_hastack as h
from harness.lab import Lab
from harness.procs import wait_for


@dataclass
class Web:
    lab: Lab
    ns: str


@pytest.fixture(scope="module")
def web(lab: Lab, operator_release: str) -> Iterator[Web]:
    ns = "e2e-hacluster"
    lab.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s", check=False, timeout=150)
    lab.recycle_released_pvs()  # fresh disks: the day-0 format is part of what is tested
    lab.kubectl("create", "namespace", ns)
    wait_for(lambda: lab.kubectl("get", "sa", "default", "-n", ns, check=False).returncode == 0, 30,
             f"ServiceAccount default in {ns}")  # fmt: skip
    lab.apply(h.replicated_web(ns), ns)
    yield Web(lab, ns)
    lab.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=150s", check=False, timeout=180)
    lab.recycle_released_pvs()


def served_by(path: Path) -> list[str]:
    return path.read_text().split()


@pytest.mark.timeout(600)  # includes the image, the chart and the first bring-up
def test_operator_brings_up_members_that_serve_a_replicated_filesystem(web: Web) -> None:
    lab, ns = web.lab, web.ns
    s = h.wait_steady(lab, ns, timeout=300)  # one Lease holder, labelled alone, replicas UpToDate
    pods = h.members(lab, ns)
    assert {p["spec"]["nodeName"] for p in pods.values()} == {n.name for n in lab.nodes}, "one member per node"
    for pod in pods.values():
        inits = [c["name"] for c in pod["spec"]["initContainers"]]
        assert inits == ["gate-install", "blockrepl", "heartbeat", "mon", "fsinit"], "the operator's own pod"
        statuses = pod["status"]["containerStatuses"] + pod["status"]["initContainerStatuses"]
        assert all(c.get("restartCount", 0) == 0 for c in statuses), f"no container restarted: {statuses}"
    hac = h.get(lab, "haclusters.hastack.io", h.CLUSTER, ns)["status"]
    assert hac["activeMember"] == s.active and hac["phase"] == "Running"

    # fsinit formatted once: on the Lease holder, through the replicated device; the standby skipped.
    fsinit = {name: h.container_log(lab, ns, name, "fsinit") for name in pods}
    assert "action=format" in fsinit[s.active] and "formatted" in fsinit[s.active]
    assert "action=skip" in fsinit[s.standby] and "formatted" not in fsinit[s.standby]

    # The filesystem is mounted on the active member's hostPath directory on its node: the mount's
    # device number is the device heartbeat exposed (nbdfuse + loop), not merely "a mount point".
    active_dir, standby_dir = h.host_dir(ns, s.active), h.host_dir(ns, s.standby)
    assert h.mounted_device(active_dir) == h.device_number(s.device)
    assert h.mounted_device(standby_dir) is None, "the standby mounts nothing"
    assert h.exposure_loops() == [s.device], "one exposed loop device: the active's"
    assert h.pod_processes(pods[s.active]["metadata"]["uid"], "nbdfuse"), "nbdfuse runs in the active pod"
    assert not h.pod_processes(pods[s.standby]["metadata"]["uid"], "nbdfuse")

    # The app (through the start gate) wrote to the filesystem: visible on the node, and served
    # through the active Service from the other node's member.
    assert "member " + s.active + " is active" in h.container_log(lab, ns, s.active, "web")
    wait_for(lambda: served_by(active_dir / h.APP_LOG) == [s.active], 30, "the app's file on the node")
    assert h.through_service(lab, ns, s.standby, h.APP_LOG).split() == [s.active]


def test_switchover_unmounts_and_detaches_everything_on_the_old_active(web: Web) -> None:
    """A planned switchover (the hastack.io/switchover annotation) leaves the old active's pod
    running as the standby, app container included: its filesystem must be mounted nowhere
    and its loop device detached. (The app's data mount is a kubelet subPath; a subPath bound
    after the mount would hold the filesystem out of heartbeat's reach: heartbeat mounts only
    once a start gate has started, `waitForGate`.)"""
    lab, ns = web.lab, web.ns
    s = h.wait_steady(lab, ns)
    old = h.device_number(s.device)
    lab.kubectl("annotate", "haclusters.hastack.io", h.CLUSTER, "-n", ns, f"hastack.io/switchover={s.standby}")
    new = h.wait_steady(lab, ns, timeout=120, not_active=s.active)
    assert new.active == s.standby
    wait_for(lambda: h.exposure_loops() == [new.device], 30, "the old active's loop device detached")
    assert h.mounts_of_device(old) == [] or h.device_number(new.device) == old, "mounted nowhere any more"
    assert h.mounted_device(h.host_dir(ns, s.active)) is None
    assert h.through_service(lab, ns, s.active, h.APP_LOG).split()[-1] == new.active


def test_deleting_the_active_member_switches_over_and_leaves_nothing_on_its_node(web: Web) -> None:
    lab, ns = web.lab, web.ns
    s = h.wait_steady(lab, ns)
    before = served_by(h.host_dir(ns, s.active) / h.APP_LOG)
    lab.kubectl("delete", "pod", s.active, "-n", ns, "--wait=true", "--timeout=120s", timeout=150)

    new = h.wait_steady(lab, ns, timeout=180, not_active=s.active)  # the recreated pod is the standby
    assert new.active == s.standby
    assert h.mounted_device(h.host_dir(ns, s.active)) is None, "the deleted member's mount is gone"
    assert h.exposure_loops() == [new.device], "the deleted member's loop device is detached"
    log = h.host_dir(ns, new.active) / h.APP_LOG
    wait_for(lambda: served_by(log) == [*before, new.active], 30, "the new active's app on the same data")
    assert h.through_service(lab, ns, new.standby, h.APP_LOG).split() == [*before, new.active]


@pytest.mark.timeout(600)
def test_killed_node_fails_over_to_the_standby_with_the_data_intact(web: Web) -> None:
    lab, ns = web.lab, web.ns
    s = h.wait_steady(lab, ns)
    before = h.through_service(lab, ns, s.standby, h.APP_LOG).split()  # served: acknowledged
    lab.kill_node(s.node)  # power loss: kubelet, containerd, shims, every container of the node
    try:
        def took_over() -> bool:
            hb = h.heartbeat_status(lab, ns, s.standby)
            return hb.get("role") == "active" and h.lease_holder(lab, ns) == s.standby

        wait_for(took_over, 60, f"{s.standby} to take over from the killed node", max_interval=1.0)
        assert h.labelled_active(lab, ns) == [s.standby], "the label follows the Lease"
        log = h.host_dir(ns, s.standby) / h.APP_LOG
        wait_for(lambda: served_by(log) == [*before, s.standby], 60, "the standby's app on the same data")
        assert h.through_service(lab, ns, s.standby, h.APP_LOG).split() == [*before, s.standby]
    finally:
        lab.restart_node(s.node)

    # The killed member comes back as the standby: its stale mount and loop device cleaned by its
    # own heartbeat, resynced from the new active, never formatted again.
    new = h.wait_steady(lab, ns, timeout=300)
    assert new.active == s.standby
    assert h.mounted_device(h.host_dir(ns, s.active)) is None, "no stale mount left on the restarted node"
    assert h.exposure_loops() == [new.device], "no second (stale) loop device"
    assert "formatted" not in h.container_log(lab, ns, s.active, "fsinit")


def test_deleting_the_cluster_leaves_nothing_on_the_nodes(web: Web) -> None:
    """Both members terminate at once (no one to hand over to): each still unmounts, detaches its
    loop device and stops nbdfuse before its pod goes."""
    lab, ns = web.lab, web.ns
    s = h.wait_steady(lab, ns)
    uids = [p["metadata"]["uid"] for p in h.members(lab, ns).values()]
    lab.kubectl("delete", "haclusters.hastack.io", h.CLUSTER, "-n", ns, "--wait=true", "--timeout=120s",
                timeout=150)  # fmt: skip
    wait_for(lambda: not h.members(lab, ns), 120, "every member pod gone")
    assert h.mounts_of(ns) == [], "nothing mounted under the members' directories"
    assert not any(h.pod_processes(uid, "nbdfuse") for uid in uids)
    wait_for(lambda: not h.mounts_of_device(h.device_number(s.device)), 60,
             "the filesystem mounted nowhere (the kubelet drops the pods' subPath binds)")  # fmt: skip
    assert h.exposure_loops() == [], f"no loop device left of {s.device}"
