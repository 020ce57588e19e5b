"""The operator in the lab: `helm install` of charts/hastack with the locally built image (no
registry); the operator Deployment becomes Ready on lab nodes and accepts a sample of each
kind. It runs with the chart's ServiceAccount and RBAC, non-root, read-only root filesystem."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from harness import binaries, samples
from harness.hastack_api import CHART, condition
from harness.lab import Lab
from harness.lab_pytest import wait_pods_ready
from harness.procs import run, wait_for

RELEASE = "hastack"
RELEASE_NS = "hastack-system"


def helm(lab: Lab, *args: str, timeout: float = 300) -> str:
    argv = [str(binaries.find("helm")), f"--kubeconfig={lab.kubeconfig}", *args]
    return run(argv, timeout=timeout).stdout


@pytest.fixture
def operator_release(lab: Lab, hastack_image: str) -> Iterator[str]:
    repository, tag = hastack_image.rsplit(":", 1)
    helm(lab, "upgrade", "--install", RELEASE, str(CHART), "--namespace", RELEASE_NS, "--create-namespace",
         "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
         "--set", "image.pullPolicy=Never", "--wait", "--timeout=4m")  # fmt: skip
    yield RELEASE_NS
    helm(lab, "uninstall", RELEASE, "--namespace", RELEASE_NS, "--wait", "--timeout=2m")
    lab.kubectl("delete", "namespace", RELEASE_NS, "--wait=false", check=False)


def _get(lab: Lab, plural: str, name: str, ns: str) -> dict[str, Any]:
    return dict(json.loads(lab.kubectl("get", f"{plural}.hastack.io", name, "-n", ns, "-o", "json").stdout))


def test_chart_operator_runs_on_lab_nodes_and_accepts_each_kind(
    lab: Lab, operator_release: str, lab_namespace: str
) -> None:
    pods = wait_pods_ready(lab, operator_release, "app.kubernetes.io/name=hastack", 2, timeout=180)
    assert {p["spec"]["nodeName"] for p in pods} <= {n.name for n in lab.nodes}
    for pod in pods:
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert pod["spec"]["serviceAccountName"] != "default"

    ns = lab_namespace
    objects = [samples.hacluster(namespace=ns), samples.replicatedvolume(namespace=ns),
               samples.servicemonitor(namespace=ns)]  # fmt: skip
    lab.apply(objects, ns)
    for plural, name in (("haclusters", "web"), ("replicatedvolumes", "data"), ("servicemonitors", "web-http")):

        def accepted(plural: str = plural, name: str = name) -> dict[str, Any] | None:
            obj = _get(lab, plural, name, ns)
            cond = condition(obj, "Accepted")
            return obj if cond and cond.get("status") == "True" else None

        obj = wait_for(accepted, 120, f"{plural}/{name} Accepted by the operator in the lab")
        assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
