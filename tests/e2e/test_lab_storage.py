"""Loop-device disks reach pods as `local` Block PersistentVolumes on their own node."""

from __future__ import annotations

import json
import subprocess
import uuid

from harness.lab import Lab
from harness.lab_node import loops_backed_under
from harness.lab_pytest import wait_pods_ready
from harness.lab_workloads import block_claim, block_pod
from harness.procs import wait_for

OFFSET = 1 << 20


def test_block_pv_bytes_land_on_the_nodes_loop_device(lab: Lab, lab_namespace: str) -> None:
    ns, marker = lab_namespace, f"hastack-{uuid.uuid4().hex}"
    kubelet_loops_before = set(loops_backed_under(lab.dir / "nodes"))
    write = (
        f"echo {marker} | dd of=/dev/xvda bs=4096 seek={OFFSET // 4096} conv=notrunc,fsync && "
        "trap 'exit 0' TERM; sleep 3600 & wait"
    )
    docs = [block_claim("disk"), block_pod("writer", "disk", write)]
    lab.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    pod = wait_pods_ready(lab, ns, "app=writer", 1)[0]

    pvc = json.loads(lab.kubectl("get", "pvc", "disk", "-n", ns, "-o", "json").stdout)
    pv = json.loads(lab.kubectl("get", "pv", pvc["spec"]["volumeName"], "-o", "json").stdout)
    affinity = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert affinity["values"] == [pod["spec"]["nodeName"]], "WaitForFirstConsumer bound a PV of the pod's node"
    device = pv["spec"]["local"]["path"]
    backing = subprocess.run(
        ["losetup", "-n", "-O", "BACK-FILE", device], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert pod["spec"]["nodeName"] in backing

    def on_disk() -> bool:
        with open(backing, "rb") as f:
            f.seek(OFFSET)
            return f.read(len(marker)).decode(errors="replace") == marker

    wait_for(on_disk, 30, "the pod's bytes on the node's disk")
    assert set(loops_backed_under(lab.dir / "nodes")) > kubelet_loops_before, "the kubelet pins the device"

    lab.kubectl("delete", "pod", "writer", "-n", ns, "--wait=true", "--timeout=60s", timeout=90)
    wait_for(
        lambda: set(loops_backed_under(lab.dir / "nodes")) <= kubelet_loops_before,
        30,
        "the kubelet to release its loop device",
    )
