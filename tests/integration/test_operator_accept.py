"""The operator skeleton on a real control plane, with the chart's RBAC (never as admin)."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from harness import samples
from harness.controlplane import ControlPlane
from harness.hastack_api import (
    OperatorProcess,
    apply_objects,
    chart_operator,
    condition,
    ensure_namespace,
    get_object,
    helm_template,
    install_crds,
    wait_condition,
)
from harness.procs import wait_for


def operator_for(cp: ControlPlane, release: str, watch: str, name: str,
                 mutate: Any = None) -> OperatorProcess:
    """Install release's RBAC in its own namespace and start an operator with its SA token."""
    return chart_operator(cp, watch, name, release=release, mutate=mutate)


@pytest.fixture(scope="module")
def crds(control_plane: ControlPlane) -> ControlPlane:
    install_crds(control_plane)
    return control_plane


@pytest.fixture
def operator(crds: ControlPlane) -> Iterator[OperatorProcess]:
    op = operator_for(crds, "hastack-system", "op-tests", "operator")
    yield op
    op.stop()


def all_kinds(ns: str) -> list[dict[str, Any]]:
    return [samples.hacluster(namespace=ns), samples.replicatedvolume(namespace=ns),
            samples.servicemonitor(namespace=ns)]


def test_helm_template_passes_server_side_dry_run(crds: ControlPlane) -> None:
    ensure_namespace(crds, "dry-run")
    objects = helm_template("dry-run", release="dry", values={"replicaCount": 2})
    kinds = sorted({o["kind"] for o in objects})
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "Role", "RoleBinding", "Service",
                     "ServiceAccount"]
    out = apply_objects(crds, objects, "--dry-run=server")
    assert "deployment.apps/dry-hastack serverside-applied (server dry run)" in out


def test_every_kind_is_accepted_with_chart_rbac(crds: ControlPlane, operator: OperatorProcess) -> None:
    ns = "op-tests"
    apply_objects(crds, all_kinds(ns))
    expected = (("haclusters", "web"), ("replicatedvolumes", "data"), ("servicemonitors", "web-http"))
    for plural, name in expected:
        obj = wait_condition(crds, plural, name, ns, "Accepted", timeout=90)
        assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    # a spec change is reconciled at its new generation
    body = samples.replicatedvolume(namespace=ns, size="2Gi")
    apply_objects(crds, [body])
    obj = wait_condition(crds, "replicatedvolumes", "data", ns, "Accepted", timeout=60)
    assert obj["metadata"]["generation"] == 2
    # a spec the schema allows but hastack cannot serve is reported, not acted on
    bad = samples.hacluster("pref", namespace=ns, failover={"preferredMember": 3})
    apply_objects(crds, [bad])
    obj = wait_condition(crds, "haclusters", "pref", ns, "Accepted", status="False", timeout=60)
    assert "preferredMember 3 is not a member" in condition(obj, "Accepted")["message"]  # type: ignore[index]
    assert "Traceback" not in operator.log()


def test_rbac_is_really_checked(crds: ControlPlane) -> None:
    """The same check fails when one needed verb is dropped: status cannot be patched."""

    def drop_status_patch(obj: dict[str, Any]) -> None:
        if obj["kind"] == "ClusterRole":
            for rule in obj["rules"]:
                if any(r.endswith("/status") for r in rule["resources"]):
                    rule["verbs"] = [v for v in rule["verbs"] if v != "patch"]

    op = operator_for(crds, "rbac-broken", "rbac-broken-objects", "broken", mutate=drop_status_patch)
    try:
        apply_objects(crds, [samples.replicatedvolume(namespace="rbac-broken-objects")])
        op.wait_log("403", timeout=90)
        with pytest.raises(AssertionError):
            wait_condition(crds, "replicatedvolumes", "data", "rbac-broken-objects", "Accepted", timeout=5)
    finally:
        op.stop()


def test_two_operators_each_object_handled_by_exactly_one(crds: ControlPlane) -> None:
    ns = "op-ha"
    first = operator_for(crds, "hastack-ha", ns, "op-a")
    first.wait_log("became leader", timeout=60)
    second = operator_for(crds, "hastack-ha", ns, "op-b")
    try:
        second.wait_log("waiting for leadership", timeout=60)
        names = [f"vol-{i}" for i in range(4)]
        apply_objects(crds, [samples.replicatedvolume(n, namespace=ns) for n in names])
        for n in names:
            wait_condition(crds, "replicatedvolumes", n, ns, "Accepted", timeout=90)
        for n in names:
            assert f"object={ns}/{n}" in first.log()
            assert f"object={ns}/{n}" not in second.log()
        assert "became leader" not in second.log()
        # the leader dies without releasing: the standby takes over once the Lease expires
        assert first.child is not None
        first.child.proc.send_signal(signal.SIGKILL)
        second.wait_log("became leader", timeout=60)
        apply_objects(crds, [samples.replicatedvolume("after", namespace=ns)])
        wait_condition(crds, "replicatedvolumes", "after", ns, "Accepted", timeout=90)
        assert f"object={ns}/after" in second.log()
        lease = json.loads(crds.kubectl("get", "lease", "hastack-operator", "-n", "hastack-ha",
                                        "-o", "json").stdout)
        assert lease["spec"]["holderIdentity"].startswith("op-b-")
        assert lease["spec"]["leaseTransitions"] >= 1
    finally:
        first.stop()
        second.stop()


def test_operator_exposes_metrics_and_liveness(crds: ControlPlane, operator: OperatorProcess) -> None:
    import urllib.request

    def get(port: int, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return str(r.read().decode())

    wait_for(lambda: get(operator.health_port, "/healthz") is not None, 60, "liveness endpoint")
    apply_objects(crds, [samples.servicemonitor("metrics-probe", namespace="op-tests")])
    wait_condition(crds, "servicemonitors", "metrics-probe", "op-tests", "Accepted", timeout=90)
    text = get(operator.metrics_port, "/metrics")
    assert 'hastack_operator_handler_runs_total{handler="reconcile",kind="servicemonitors"}' in text
    assert "hastack_operator_leader 1.0" in text
    assert get_object(crds, "servicemonitors", "metrics-probe", "op-tests")["status"]["conditions"]
