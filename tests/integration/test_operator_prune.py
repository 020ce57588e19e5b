"""Pruning without lists on a real API server: the anchor (the members' ServiceAccount) records
every object applied for a HACluster; what it names and the spec no longer wants is deleted.
The reconcile runs in the test process (no operator), so each step is exactly one run, and
with ``fresh`` (its default) it reads the record from the API server, as after a restart."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness import samples
from harness.controlplane import ControlPlane
from harness.hastack_api import apply_objects, ensure_namespace, get_object, install_crds
from hastack_operator.k8s import Kube
from hastack_operator.reconcile import applied, hacluster

NS = "prune"
IMAGE = "hastack:test"


@pytest.fixture(scope="module")
def cp(control_plane: ControlPlane) -> ControlPlane:
    install_crds(control_plane)
    ensure_namespace(control_plane, NS)
    return control_plane


def services(cp: ControlPlane) -> set[str]:
    items = json.loads(cp.kubectl("get", "svc", "-n", NS, "-l", "hastack.io/cluster=p", "-o", "json").stdout)
    return {s["metadata"]["name"] for s in items["items"]}


def record(cp: ControlPlane) -> set[str]:
    sa = json.loads(cp.kubectl("get", "sa", "p-member", "-n", NS, "-o", "json").stdout)
    return {f"{k}/{n}" for _, k, n in applied.recorded_on(sa) or set()}


def reconcile(cp: ControlPlane, service: str) -> hacluster.Outcome:
    body = samples.hacluster("p", NS, resources=[{"kind": "service", "name": service, "port": 80}])
    apply_objects(cp, [body])
    with cp.api_client() as api:
        return hacluster.reconcile(Kube(api), get_object(cp, "haclusters", "p", NS), IMAGE)


def test_renamed_active_service_is_pruned_by_the_record(cp: ControlPlane) -> None:
    first = reconcile(cp, "p-a")
    assert first.pruned == 0 and services(cp) == {"p-peers", "p-a"}
    assert {"Service/p-a", "Service/p-peers", "StatefulSet/p", "ServiceAccount/p-member"} <= record(cp)
    second = reconcile(cp, "p-b")
    assert second.pruned == 1 and services(cp) == {"p-peers", "p-b"}
    assert "Service/p-a" not in record(cp) and "Service/p-b" in record(cp)


def test_without_a_record_every_kind_is_listed(cp: ControlPlane) -> None:
    """Objects applied before records existed (or the anchor's record removed): the safety net."""
    reconcile(cp, "p-b")
    owner = get_object(cp, "haclusters", "p", NS)["metadata"]
    stray: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "p-stray", "namespace": NS, "labels": {"hastack.io/cluster": "p"},
                     "ownerReferences": [{"apiVersion": "hastack.io/v1alpha1", "kind": "HACluster", "name": "p",
                                          "uid": owner["uid"], "controller": True}]},
        "spec": {"ports": [{"port": 80}]},
    }
    cp.kubectl("apply", "-f", "-", input=json.dumps(stray))
    cp.kubectl("annotate", "sa", "p-member", "-n", NS, f"{applied.ANNOTATION_APPLIED}-")
    outcome = reconcile(cp, "p-b")
    assert outcome.pruned == 1 and services(cp) == {"p-peers", "p-b"}
    assert "Service/p-b" in record(cp)
