"""The hostPath rule of DESIGN "Inside a member pod", proven on a real kubelet with a
member-pod-shaped pod: a privileged native sidecar formats and mounts the Block PV on the member's
hostPath directory (Bidirectional); the unprivileged app sees it through HostToContainer.

The sidecar here is a shell script, on purpose: these tests need a member whose sidecar dies
*without* unmounting (TERM ignored, KILLed after the grace period), which hastack's own heartbeat
never does, and the counter-proof needs the emptyDir the operator refuses to build. What the real
member pods do (mount, serve, switch over, fail over, leave nothing behind) is
test_lab_hacluster.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.lab import Lab
from harness.lab_node import mounts_under
from harness.lab_pytest import wait_pods_ready
from harness.lab_workloads import block_claim, member_pod
from harness.procs import wait_for


def _start_member(lab: Lab, ns: str, image: str, keep_mounted: bool = False) -> tuple[dict, Path]:  # type: ignore[type-arg]
    host_dir = lab.dir / "hostpath" / ns / "member-0"
    lab.apply([block_claim("backing"), member_pod("member-0", "backing", image, str(host_dir), keep_mounted)], ns)
    pod = wait_pods_ready(lab, ns, "app=member-0", 1, timeout=180)[0]
    return pod, host_dir


def test_pod_deleted_with_its_filesystem_mounted_loses_no_file(
    lab: Lab, lab_namespace: str, hastack_image: str
) -> None:
    ns = lab_namespace
    _, host_dir = _start_member(lab, ns, hastack_image, keep_mounted=True)
    lab.kubectl("exec", "-n", ns, "member-0", "-c", "heartbeat", "--", "sh", "-c",
                "for i in $(seq 1 200); do echo $i > /var/lib/hastack/data/f$i; done; sync")  # fmt: skip
    before = sorted(p.name for p in host_dir.iterdir())
    assert len(before) >= 202

    # The sidecar dies without unmounting (TERM ignored, KILLed after the grace period).
    lab.kubectl("delete", "pod", "member-0", "-n", ns, "--wait=true", "--timeout=90s", timeout=120)
    try:
        assert mounts_under(host_dir) == [str(host_dir)], "the filesystem is still mounted on the node"
        assert sorted(p.name for p in host_dir.iterdir()) == before, "the kubelet never empties a hostPath"
        assert (host_dir / "f200").read_text() == "200\n"
    finally:
        subprocess.run(["umount", str(host_dir)], check=False)


def test_the_same_deletion_through_an_emptydir_loses_every_file(
    lab: Lab, lab_namespace: str, hastack_image: str
) -> None:
    """The counter-proof: with an emptyDir as the data volume (what the design forbids), the
    kubelet's teardown deletes the files through the live mount, as measured in the notes."""
    ns = lab_namespace
    pod_doc = member_pod("member-0", "backing", hastack_image, "", keep_mounted=True, data_volume={"emptyDir": {}})
    lab.apply([block_claim("backing"), pod_doc], ns)
    pod = wait_pods_ready(lab, ns, "app=member-0", 1, timeout=180)[0]
    lab.kubectl("exec", "-n", ns, "member-0", "-c", "heartbeat", "--", "sh", "-c",
                "for i in $(seq 1 50); do echo $i > /var/lib/hastack/data/f$i; done; sync")  # fmt: skip
    uid = pod["metadata"]["uid"]
    node = lab.node(pod["spec"]["nodeName"])
    host_dir = node.paths.kubelet_dir / "pods" / uid / "volumes" / "kubernetes.io~empty-dir" / "hastack-data"
    assert mounts_under(host_dir) == [str(host_dir)] and (host_dir / "f50").exists()

    lab.kubectl("delete", "pod", "member-0", "-n", ns, "--wait=false")
    try:
        wait_for(lambda: not (host_dir / "f50").exists(), 60, "the kubelet to empty the emptyDir")
        assert mounts_under(host_dir) == [str(host_dir)], "... through the still-mounted filesystem"
        assert [p for p in host_dir.iterdir() if p.name.startswith("f")] == [], "every file lost"
    finally:
        subprocess.run(["umount", str(host_dir)], check=False)
    wait_for(lambda: not pods_named(lab, ns, "member-0"), 120, "the pod to go once unmounted by hand")


def pods_named(lab: Lab, ns: str, name: str) -> bool:
    return lab.kubectl("get", "pod", name, "-n", ns, check=False).returncode == 0
