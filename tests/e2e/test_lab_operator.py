"""The operator in the lab: `helm install` of charts/hastack with the locally built image (no
registry); the operator Deployment becomes Ready on lab nodes and accepts a sample of each
kind. It runs with the chart's ServiceAccount and RBAC, non-root, read-only root filesystem."""

from __future__ import annotations

import json
from typing import Any

from harness import samples
from harness.hastack_api import condition
from harness.lab_pytest import Cluster, wait_pods_ready
from harness.procs import wait_for


def _get(cluster: Cluster, plural: str, name: str, ns: str) -> dict[str, Any]:
    return dict(json.loads(cluster.kubectl("get", f"{plural}.hastack.io", name, "-n", ns, "-o", "json").stdout))


def test_chart_operator_runs_on_lab_nodes_and_accepts_each_kind(
    cluster: Cluster, operator_release: str, lab_namespace: str
) -> None:
    pods = wait_pods_ready(cluster, operator_release, "app.kubernetes.io/name=hastack", 2, timeout=180)
    assert {p["spec"]["nodeName"] for p in pods} <= {n.name for n in cluster.nodes}
    for pod in pods:
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert pod["spec"]["serviceAccountName"] != "default"

    ns = lab_namespace
    objects = [samples.hacluster(namespace=ns), samples.replicatedvolume(namespace=ns),
               samples.servicemonitor(namespace=ns)]  # fmt: skip
    cluster.apply(objects, ns)
    for plural, name in (("haclusters", "web"), ("replicatedvolumes", "data"), ("servicemonitors", "web-http")):

        def accepted(plural: str = plural, name: str = name) -> dict[str, Any] | None:
            obj = _get(cluster, plural, name, ns)
            cond = condition(obj, "Accepted")
            return obj if cond and cond.get("status") == "True" else None

        obj = wait_for(accepted, 120, f"{plural}/{name} Accepted by the operator in the lab")
        assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
