"""Fake nodes for the integration control plane, played by kwok.

kwok watches the Node objects selected by the label `hastack.io/kwok=managed` and the pods
bound to them, and writes their status from its built-in stages (node: initialise and
heartbeat/Lease; pod: Pending -> Running with a fake IP, deletion honoured). Nothing runs:
no kubelet, no container, no volume mount. See docs/testing.md.

A node is made NotReady the way a real node loss looks to the API: kwok stops heart-beating
it (the label flips to `paused`, outside kwok's selector) and its Ready condition becomes
Unknown ("Kubelet stopped posting node status"), after which the node lifecycle controller
taints it `node.kubernetes.io/unreachable`. Healing reverses both.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.kubeconfig import http_get
from harness.procs import free_port, wait_for

if TYPE_CHECKING:
    from harness.controlplane import ControlPlane

log = logging.getLogger("harness.kwok")

MANAGED_LABEL = "hastack.io/kwok"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
POD_CIDR = "10.244.0.0/16"
NODE_PREFIX = "kwok-node-"
NODE_LEASE_SECONDS = 40  # the kubelet's default
STAGES = Path(__file__).with_name("kwok-stages.yaml")


def node_manifest(name: str) -> dict[str, Any]:
    """A Node object for kwok to manage (schedulable, untainted, so plain workloads land on it)."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                MANAGED_LABEL: "managed",
            },
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {},
    }


def node_names(count: int) -> list[str]:
    return [f"{NODE_PREFIX}{i}" for i in range(count)]


def ready_status(node: dict[str, Any]) -> str:
    """The Ready condition's status of a Node object ("True", "False", "Unknown", or "" if none)."""
    for cond in node.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return str(cond.get("status", ""))
    return ""


def has_taint(node: dict[str, Any], key: str) -> bool:
    return any(t.get("key") == key for t in node.get("spec", {}).get("taints") or [])


def ready_condition_patch(ready: bool, now: datetime) -> dict[str, Any]:
    """A strategic-merge status patch setting the Ready condition as a kubelet (or its absence) would."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    if ready:
        cond = {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
        }
    else:
        cond = {
            "type": "Ready",
            "status": "Unknown",
            "reason": "NodeStatusUnknown",
            "message": "Kubelet stopped posting node status.",
        }
    cond.update(lastHeartbeatTime=stamp, lastTransitionTime=stamp)
    return {"status": {"conditions": [cond]}}


def _get_node(cp: ControlPlane, name: str) -> dict[str, Any]:
    out = cp.kubectl("get", "node", name, "-o", "json").stdout
    return dict(json.loads(out))


def start(cp: ControlPlane, kwok_bin: Path, count: int) -> list[str]:
    """Create `count` nodes, start kwok for them and wait until all are Ready."""
    names = node_names(count)
    manifests = {"apiVersion": "v1", "kind": "List", "items": [node_manifest(n) for n in names]}
    cp.kubectl("apply", "-f", "-", input=json.dumps(manifests))
    port = free_port()
    cp.ports["kwok"] = port
    cp._spawn(
        "kwok",
        [
            kwok_bin,
            f"--kubeconfig={cp.kubeconfig}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-label-selector={MANAGED_LABEL}=managed",
            f"--server-address=127.0.0.1:{port}",
            f"--cidr={POD_CIDR}",
            "--node-ip=127.0.0.1",
            f"--config={STAGES}",
            f"--node-lease-duration-seconds={NODE_LEASE_SECONDS}",
        ],
    )
    cp._await("kwok", lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200, "kwok /healthz")

    def all_ready() -> bool:
        items = json.loads(cp.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        ready = {n["metadata"]["name"] for n in items if ready_status(n) == "True"}
        return set(names) <= ready

    cp._await("kwok", all_ready, f"{count} kwok nodes Ready")
    return names


def set_node_ready(cp: ControlPlane, name: str, ready: bool, timeout: float = 30.0) -> None:
    """NotReady: kwok stops heart-beating the node, Ready=Unknown, then wait for the unreachable taint.
    Ready: kwok resumes, Ready=True, then wait until the node lifecycle controller lifts the taint."""
    cp.kubectl("label", "node", name, f"{MANAGED_LABEL}={'managed' if ready else 'paused'}", "--overwrite")
    patch = ready_condition_patch(ready, datetime.now(UTC))
    cp.kubectl("patch", "node", name, "--subresource=status", "--type=strategic", "-p", json.dumps(patch))

    def settled() -> bool:
        node = _get_node(cp, name)
        want = "True" if ready else "Unknown"
        if ready_status(node) != want:
            return False
        tainted = has_taint(node, UNREACHABLE_TAINT)
        return (not tainted) if ready else tainted

    state = "Ready" if ready else "NotReady (unreachable taint)"
    wait_for(settled, timeout, f"node {name} {state}")
    log.info("node=%s ready=%s", name, ready)
