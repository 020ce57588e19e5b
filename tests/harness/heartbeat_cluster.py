"""Heartbeat members against a real control plane: member pods on kwok nodes, the Lease, an observer.

The API server binds to an address of the host that every member namespace routes to
(``10.232.<id>.1`` on an empty bridge), so cutting a member off the API server is one nftables
rule in its namespace. Each test gets its own Kubernetes namespace with the member pods (bound to
kwok nodes, so they are Running API objects; nothing runs in them) and the HACluster's Lease,
created with metadata only, as the operator does.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.controlplane import ControlPlane
from harness.heartbeat_net import HeartbeatNet
from harness.procs import run
from hastack_common.consts import API_VERSION, GROUP, HACLUSTERS, LABEL_CLUSTER, LABEL_ROLE, VERSION


class ApiAddress:
    """A host-local address for the API server, reachable from the member namespaces."""

    def __init__(self) -> None:
        self.id = 1 + os.getpid() % 200
        self.dev = f"hb{self.id}api"
        self.ip = f"10.232.{self.id}.1"
        subprocess.run(["ip", "link", "del", self.dev], capture_output=True, check=False)
        run(["ip", "link", "add", self.dev, "type", "bridge"])  # no dummy module on every kernel
        run(["ip", "addr", "add", f"{self.ip}/32", "dev", self.dev])
        run(["ip", "link", "set", self.dev, "up"])

    def close(self) -> None:
        subprocess.run(["ip", "link", "del", self.dev], capture_output=True, check=False)


def install_crd(cp: ControlPlane) -> None:
    """The HACluster CRD (the switchover annotation lives on the HACluster)."""
    crd = Path(__file__).resolve().parents[2] / "crds" / "hastack.io_haclusters.yaml"
    cp.kubectl("apply", "-f", str(crd))
    cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/haclusters.hastack.io")


def setup_cluster(cp: ControlPlane, net: HeartbeatNet) -> None:
    """Namespace, member pods bound to kwok nodes, and the Lease (metadata only)."""
    from kubernetes import client

    with cp.api_client() as api:
        core: Any = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": net.namespace}})
        core.create_namespaced_service_account(net.namespace, {"metadata": {"name": "default"}})  # no controllers
        for i, name in enumerate(net.members):
            core.create_namespaced_pod(net.namespace, {
                "metadata": {"name": name, "labels": {LABEL_CLUSTER: net.prefix}},
                "spec": {"nodeName": cp.node_names[i % len(cp.node_names)],
                         "containers": [{"name": "app", "image": "example.invalid/app:1"}]},
            })
        coord: Any = client.CoordinationV1Api(api)
        coord.create_namespaced_lease(
            net.namespace, {"metadata": {"name": net.prefix}, "spec": {}})
        custom: Any = client.CustomObjectsApi(api)
        custom.create_namespaced_custom_object(GROUP, VERSION, net.namespace, HACLUSTERS, {
            "apiVersion": API_VERSION, "kind": "HACluster", "metadata": {"name": net.prefix},
            "spec": {"replicas": len(net.members), "template": {"spec": {"containers": [
                {"name": "app", "image": "example.invalid/app:1", "command": ["/app"]}]}}},
        })


@dataclass
class ClusterView:
    holder: str
    labelled: list[str]
    statuses: dict[str, str]  # pod -> role from its member-status annotation


def cluster_view(cp: ControlPlane, net: HeartbeatNet) -> ClusterView:
    import json

    from kubernetes import client

    with cp.api_client() as api:
        lease: Any = client.CoordinationV1Api(api).read_namespaced_lease(net.prefix, net.namespace)
        pods: list[Any] = client.CoreV1Api(api).list_namespaced_pod(net.namespace).items
    labelled = sorted(p.metadata.name for p in pods if (p.metadata.labels or {}).get(LABEL_ROLE) == "active")
    statuses: dict[str, str] = {}
    for p in pods:
        text = (p.metadata.annotations or {}).get("hastack.io/member-status")
        if text:
            statuses[p.metadata.name] = json.loads(text)["role"]
    return ClusterView((lease.spec.holder_identity if lease.spec else None) or "", labelled, statuses)


@dataclass
class Observer:
    """Samples every member's state file every 10 ms: who may serve (serve and deadline ahead).

    Independent of the heartbeat processes: it reads what the start gates read, on the shared
    CLOCK_MONOTONIC of this machine.
    """

    net: HeartbeatNet
    period: float = 0.01
    samples: int = 0
    overlaps: list[tuple[float, list[str]]] = field(default_factory=list)
    serving_since: dict[str, float] = field(default_factory=dict)
    intervals: list[tuple[str, float, float]] = field(default_factory=list)  # member, from, to

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Observer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        now = time.monotonic()
        for name, since in self.serving_since.items():
            self.intervals.append((name, since, now))

    def serving(self) -> list[str]:
        return sorted(self.serving_since)

    def _may_serve(self, mem: Any, now: float) -> bool:
        try:
            st = mem.state_file()
        except (OSError, ValueError):
            return False
        deadline = st.get("fenceDeadline")
        return bool(st.get("serve")) and deadline is not None and now < deadline

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            serving = [m.name for m in self.net.members.values() if self._may_serve(m, now)]
            for name in serving:
                self.serving_since.setdefault(name, now)
            for name in list(self.serving_since):
                if name not in serving:
                    self.intervals.append((name, self.serving_since.pop(name), now))
            if len(serving) > 1:
                self.overlaps.append((now, serving))
            self.samples += 1
            time.sleep(self.period)
