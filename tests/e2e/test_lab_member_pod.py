"""A member-pod-shaped pod on a real kubelet (DESIGN "Inside a member pod"): a privileged native
sidecar formats and mounts the Block PV on the member's hostPath directory with Bidirectional
propagation; the unprivileged app sees the files through HostToContainer. Then the two failure
paths measured in notes/real-nodes.md.

The sidecar here is a shell script following the design's rules (format only a blank device,
mount only where nothing is mounted, unmount on TERM), not hastack's heartbeat and fsinit:
this tier proves what the kubelet, runc and mount propagation do on a real node."""

from __future__ import annotations

import json
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


def _uuid(device_host_path: Path) -> str:
    out = subprocess.run(["blkid", "-p", "-s", "UUID", "-o", "value", str(device_host_path)],
                         capture_output=True, text=True, check=False)  # fmt: skip
    return out.stdout.strip()


def _pv_device(lab: Lab, ns: str) -> Path:
    pvc = json.loads(lab.kubectl("get", "pvc", "backing", "-n", ns, "-o", "json").stdout)
    pv = json.loads(lab.kubectl("get", "pv", pvc["spec"]["volumeName"], "-o", "json").stdout)
    return Path(pv["spec"]["local"]["path"])


def _app_log(lab: Lab, ns: str) -> str:
    return lab.kubectl("logs", "-n", ns, "member-0", "-c", "app").stdout


def test_member_mount_propagates_to_the_app_and_deletion_leaves_nothing(
    lab: Lab, lab_namespace: str, hastack_image: str
) -> None:
    ns = lab_namespace
    _, host_dir = _start_member(lab, ns, hastack_image)
    wait_for(lambda: "hello from member-0" in _app_log(lab, ns), 60, "the app to read the member's file")
    assert mounts_under(host_dir) == [str(host_dir)], "one mount, visible on the node (Bidirectional)"
    written = lab.kubectl("exec", "-n", ns, "member-0", "-c", "heartbeat", "--", "sh", "-c",
                          "echo later > /var/lib/hastack/data/later").returncode  # fmt: skip
    assert written == 0
    seen = lab.kubectl("exec", "-n", ns, "member-0", "-c", "app", "--", "cat", "/data/later").stdout
    assert seen.strip() == "later", "files written after start reach the app (HostToContainer)"

    lab.kubectl("delete", "pod", "member-0", "-n", ns, "--wait=true", "--timeout=90s", timeout=120)
    assert mounts_under(host_dir) == [], "deleting the pod leaves nothing mounted on the node"
    assert (host_dir / "hello").exists() is False, "the data lives on the device, not in the directory"


def test_killed_node_brings_the_member_back_without_a_second_mount_or_a_format(
    lab: Lab, lab_namespace: str, hastack_image: str
) -> None:
    ns = lab_namespace
    pod, host_dir = _start_member(lab, ns, hastack_image)
    node = lab.node(pod["spec"]["nodeName"])
    device = _pv_device(lab, ns)
    uuid_before = _uuid(device)
    assert uuid_before

    node.kill()  # everything on the node: kubelet, containerd, shims, the member's containers
    assert mounts_under(host_dir) == [str(host_dir)], "a power loss leaves the mount (as the notes measured)"
    node.start([])

    def mounted_again() -> bool:
        return len((host_dir / "mounts.log").read_text().splitlines()) >= 2

    wait_for(mounted_again, 180, "the member's sidecar to run again on the restarted node")
    wait_pods_ready(lab, ns, "app=member-0", 1, timeout=120)
    assert mounts_under(host_dir) == [str(host_dir)], "no second mount stacked on the data directory"
    assert _uuid(device) == uuid_before, "no second format"
    mounts_log = (host_dir / "mounts.log").read_text().splitlines()
    assert len(mounts_log) == 2 and (host_dir / "hello").exists(), "the same filesystem, found again"


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
