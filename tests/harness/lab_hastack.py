"""hastack itself in the lab: the chart's operator, a replicated HACluster it reconciles into real
member pods, and what to look at on the nodes (shared by the e2e tests and `make demo`).

The member pods are the operator's own (operator/resources/members.py): blockrepl, heartbeat and
mon as native sidecars, fsinit, the start gate around the app, the member's hostPath directory.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import binaries
from harness.hastack_api import CHART
from harness.lab import Lab
from harness.lab_images import BUSYBOX_IMAGE
from harness.lab_kind import KindCluster
from harness.lab_node import exposure_loops, mounts_under
from harness.procs import pid_alive, run, wait_for
from harness.samples import API

__all__ = ["exposure_loops"]  # the tests see every check of the nodes here

RELEASE = "hastack"
RELEASE_NS = "hastack-system"
CLUSTER = "web"
VOLUME = "web-data"
APP_PORT = 8080
MOUNT_ROOT = "/var/lib/hastack/mounts"  # the operator's default spec.mountRoot (a shared root in the lab)
# The file each member's app appends to when it starts serving: proof the app (behind the gate)
# writes to the replicated filesystem, and a record of which members served it, in order. The app
# serves only once its line is acknowledged (fdatasync: on both replicas with protocol C), so what
# the Service shows must survive any failure; an unsynced line may be lost with its node, as on
# any disk.
APP_LOG = "served-by.log"
APP_SCRIPT = (f'echo "$HASTACK_POD_NAME" >> /data/{APP_LOG} && sync -d /data/{APP_LOG} && '
              f'exec httpd -f -p {APP_PORT} -h /data')



def helm(lab: Lab | KindCluster, *args: str, timeout: float = 300) -> str:
    argv = [str(binaries.find("helm")), f"--kubeconfig={lab.kubeconfig}", *args]
    return run(argv, timeout=timeout).stdout


def install_operator(lab: Lab | KindCluster, image_tag: str) -> None:
    """`helm upgrade --install` of charts/hastack with the locally built image (no registry)."""
    repository, tag = image_tag.rsplit(":", 1)

    def namespace_usable() -> bool:  # a previous uninstall may still be deleting it
        res = lab.kubectl("get", "namespace", RELEASE_NS, "-o", "jsonpath={.status.phase}", check=False)
        return res.returncode != 0 or res.stdout.strip() == "Active"

    wait_for(namespace_usable, 120, f"namespace {RELEASE_NS} gone or Active")
    helm(lab, "upgrade", "--install", RELEASE, str(CHART), "--namespace", RELEASE_NS, "--create-namespace",
         "--set", f"image.repository={repository}", "--set-string", f"image.tag={tag}",
         "--set", "image.pullPolicy=Never", "--wait", "--timeout=4m")  # fmt: skip


def uninstall_operator(lab: Lab | KindCluster) -> None:
    helm(lab, "uninstall", RELEASE, "--namespace", RELEASE_NS, "--wait", "--timeout=2m")
    lab.kubectl("delete", "namespace", RELEASE_NS, "--wait=false", check=False)


def replicated_web(namespace: str, size: str = "128Mi") -> list[dict[str, Any]]:
    """A HACluster of two members with a 2-replica ReplicatedVolume on the lab's local Block PVs
    (protocol C, ext4) and an active Service; the app (busybox httpd behind the gate) serves /data."""
    meta = {"namespace": namespace}
    return [
        {"apiVersion": API, "kind": "ReplicatedVolume", "metadata": {"name": VOLUME, **meta},
         "spec": {"size": size, "replicas": 2, "protocol": "C", "storageClassName": "hastack-local",
                  "filesystem": {"type": "ext4"}}},
        {"apiVersion": API, "kind": "HACluster", "metadata": {"name": CLUSTER, **meta},
         "spec": {"replicas": 2,
                  "template": {"spec": {"containers": [{
                      "name": "web", "image": BUSYBOX_IMAGE, "imagePullPolicy": "Never",
                      "command": ["/bin/sh", "-c", APP_SCRIPT]}]}},
                  "resources": [{"kind": "volume", "name": VOLUME, "mountPath": "/data"},
                                {"kind": "service", "name": CLUSTER, "port": 80, "targetPort": APP_PORT}]}},
    ]  # fmt: skip


def get(lab: Lab, kind: str, name: str, ns: str) -> dict[str, Any]:
    return dict(json.loads(lab.kubectl("get", kind, name, "-n", ns, "-o", "json").stdout))


def members(lab: Lab, ns: str) -> dict[str, dict[str, Any]]:
    out = lab.kubectl("get", "pods", "-n", ns, "-l", f"hastack.io/cluster={CLUSTER}", "-o", "json").stdout
    return {p["metadata"]["name"]: p for p in json.loads(out)["items"]}


def ready(pod: dict[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return not pod["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conds)


def lease_holder(lab: Lab, ns: str) -> str:
    lease = get(lab, "lease", f"{CLUSTER}-hastack", ns)
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def labelled_active(lab: Lab, ns: str) -> list[str]:
    return sorted(n for n, p in members(lab, ns).items()
                  if (p["metadata"].get("labels") or {}).get("hastack.io/role") == "active")  # fmt: skip


def heartbeat_status(lab: Lab, ns: str, pod: str) -> dict[str, Any]:
    out = lab.kubectl("exec", "-n", ns, pod, "-c", "heartbeat", "--", "hastack", "ctl", "heartbeat", "status").stdout
    return dict(json.loads(out))


def host_dir(ns: str, member: str) -> Path:
    """The member's mount directory on its node (hostPath <mountRoot>/<ns>/<cluster>/<member>)."""
    return Path(MOUNT_ROOT) / ns / CLUSTER / member


def mounted_device(path: Path) -> str | None:
    """major:minor of the filesystem mounted exactly at `path` (the top one), seen from the host."""
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4].encode().decode("unicode_escape") == str(path):
                found = fields[2]
    return found


def mounts_of_device(majmin: str) -> list[str]:
    """Every mount point of the filesystem on device `majmin` in the host's mount namespace."""
    with open("/proc/self/mountinfo") as f:
        return sorted({fields[4].encode().decode("unicode_escape") for line in f
                       if (fields := line.split())[2] == majmin})  # fmt: skip


def device_number(device: str) -> str:
    st = os.stat(device)
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"


def pod_processes(uid: str, name: str) -> list[int]:
    """Host pids of processes called `name` in the pod with this uid (by cgroup, as the kubelet's
    cgroupfs driver names it)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            comm = Path(entry.path, "comm").read_text().strip()
            cgroup = Path(entry.path, "cgroup").read_text()
        except OSError:
            continue
        if comm == name and f"pod{uid}" in cgroup and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


@dataclass(frozen=True)
class Steady:
    """A replicated HACluster serving: who is active, where, and through which device."""

    active: str
    standby: str
    node: str
    device: str  # the active member's exposed device (nbdfuse + loop), e.g. /dev/loop7


def wait_steady(lab: Lab, ns: str, timeout: float = 240, not_active: str = "") -> Steady:
    """Both members Ready, one Lease holder carrying the active label alone, serving with its
    filesystem mounted, and both replicas UpToDate and connected (as the ReplicatedVolume's status
    aggregates the members' reports). `not_active` waits for someone else to be active."""

    def steady() -> Steady | None:
        pods = members(lab, ns)
        holder = lease_holder(lab, ns)
        if len(pods) != 2 or not all(ready(p) for p in pods.values()) or not holder or holder == not_active:
            return None
        if labelled_active(lab, ns) != [holder]:
            return None
        rvol = get(lab, "replicatedvolumes.hastack.io", VOLUME, ns).get("status") or {}
        reps = rvol.get("replicas") or []
        if rvol.get("primary") != holder or len(reps) != 2 or not all(
                r.get("diskState") == "UpToDate" and r.get("connection") == "Connected" for r in reps):
            return None
        hb = heartbeat_status(lab, ns, holder)
        if hb.get("role") != "active" or not hb.get("device"):
            return None
        standby = next(n for n in pods if n != holder)
        return Steady(holder, standby, pods[holder]["spec"]["nodeName"], str(hb["device"]))

    return wait_for(steady, timeout, f"HACluster {ns}/{CLUSTER} steady (one active, replicas UpToDate)",
                    max_interval=1.0)


def through_service(lab: Lab, ns: str, via_pod: str, path: str, timeout: float = 30) -> str:
    """GET http://<the active Service's ClusterIP>/<path> from `via_pod`'s heartbeat container
    (Python's urllib), through that node's kube-proxy. By address, not by name: the lab's one
    CoreDNS may have been on a node a test has just killed."""
    code = ("import sys, urllib.request; "
            "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(), end='')")  # fmt: skip
    url = f"http://{get(lab, 'service', CLUSTER, ns)['spec']['clusterIP']}/{path}"

    def fetch() -> str | None:  # kube-proxy applies endpoint changes a moment after the label moves
        res = lab.kubectl("exec", "-n", ns, via_pod, "-c", "heartbeat", "--", "python3", "-c", code, url,
                          check=False, timeout=30)  # fmt: skip
        if res.returncode != 0:
            raise AssertionError(f"GET {url} from {via_pod} failed: {res.stderr.strip().splitlines()[-1:]}")
        return res.stdout

    return wait_for(fetch, timeout, f"GET {url} from {via_pod}", max_interval=1.0)


def container_log(lab: Lab, ns: str, pod: str, container: str) -> str:
    return lab.kubectl("logs", "-n", ns, pod, "-c", container, check=False).stdout


def host_blkid_uuid(device: str) -> str:
    res = subprocess.run(["blkid", "-p", "-s", "UUID", "-o", "value", device], capture_output=True, text=True,
                         timeout=30, check=False)  # fmt: skip
    return res.stdout.strip()


def mounts_of(ns: str) -> list[str]:
    return mounts_under(Path(MOUNT_ROOT) / ns)
