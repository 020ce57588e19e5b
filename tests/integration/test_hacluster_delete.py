"""Deleting a HACluster: members stop first; PVCs follow the volume's reclaimPolicy; no orphans."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from harness import samples, storage
from harness.controlplane import ControlPlane
from harness.hastack_api import (
    OperatorProcess,
    apply_objects,
    chart_operator,
    wait_condition,
)
from harness.procs import wait_for

NS = "deletion"


@pytest.fixture(scope="module")
def operator(control_plane: ControlPlane) -> Iterator[OperatorProcess]:
    cp = control_plane
    op = chart_operator(cp, NS, "deleter")
    pvs = [storage.local_block_pv(f"{node}-del{i}", node, f"/dev/del{i}")
           for node in cp.node_names for i in range(2)]
    apply_objects(cp, [storage.storage_class(), *pvs])
    yield op
    op.stop()


def names_of(cp: ControlPlane, kind: str, selector: str) -> list[str]:
    out = json.loads(cp.kubectl("get", kind, "-n", NS, "-l", selector, "-o", "json").stdout)
    return sorted(i["metadata"]["name"] for i in out["items"])


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
def test_delete_follows_reclaim_policy_and_leaves_no_orphans(control_plane: ControlPlane,
                                                             operator: OperatorProcess, policy: str) -> None:
    cp = control_plane
    name = f"gone-{policy.lower()}"
    apply_objects(cp, [
        samples.replicatedvolume(f"{name}-vol", NS, reclaimPolicy=policy),
        samples.hacluster(name, NS, resources=[{"kind": "volume", "name": f"{name}-vol", "mountPath": "/d"}]),
    ])
    wait_condition(cp, "haclusters", name, NS, "Accepted", timeout=90)
    claims = [f"backing-{name}-0", f"backing-{name}-1"]

    def bound() -> bool:
        out = json.loads(cp.kubectl("get", "pvc", "-n", NS, "-o", "json").stdout)["items"]
        phases = {c["metadata"]["name"]: c["status"].get("phase") for c in out}
        return all(phases.get(c) == "Bound" for c in claims)

    wait_for(bound, 90, "both replicas' PVCs bound")
    selector = f"hastack.io/cluster={name}"
    assert names_of(cp, "secret", selector) == [f"{name}-hastack-auth"]
    assert names_of(cp, "lease", selector) == [f"{name}-hastack"]
    assert names_of(cp, "configmap", selector) == [f"{name}-hastack"]

    cp.kubectl("delete", "hacluster", name, "-n", NS, "--wait=true", "--timeout=120s", timeout=130)
    for kind in ("pod", "statefulset", "secret", "lease", "configmap", "service", "role", "rolebinding",
                 "serviceaccount", "pdb"):
        wait_for(lambda kind=kind: names_of(cp, kind, selector) == [], 90, f"no {kind} of {name} left")
    remaining = names_of(cp, "pvc", selector)
    if policy == "Retain":
        assert remaining == claims
    else:
        wait_for(lambda: names_of(cp, "pvc", selector) == [], 90, "PVCs deleted with the cluster")
