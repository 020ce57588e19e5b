"""The members' Role, as the operator builds it, is enough for what heartbeat does with the API
— run through heartbeat's own adapters with the member ServiceAccount's token — and no more."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness import samples
from harness.controlplane import ControlPlane
from harness.hastack_api import apply_objects, ensure_namespace, install_crds
from harness.procs import wait_for
from hastack_common import consts
from hastack_heartbeat.arbitration import LeaseRecord
from hastack_heartbeat.k8s import EventRecorder, PodLabelAgent, StatusPublisher
from hastack_heartbeat.lease import KubeLease
from hastack_operator.resources import cluster_objects, names
from hastack_operator.resources.spec import HACluster

NS = "member-rbac"


def member_pod(name: str, cluster: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": {consts.LABEL_CLUSTER: cluster}},
            "spec": {"containers": [{"name": "app", "image": "hastack:test", "command": ["sleep", "1"]}]}}


def setup_cluster(cp: ControlPlane, cluster: str, mutate: Callable[[dict[str, Any]], None] | None = None) -> Any:
    install_crds(cp)
    ensure_namespace(cp, NS)
    apply_objects(cp, [samples.hacluster(cluster, NS)])
    uid = json.loads(cp.kubectl("get", "hac", cluster, "-n", NS, "-o", "json").stdout)["metadata"]["uid"]
    spec = HACluster.from_body({"metadata": {"name": cluster, "namespace": NS, "uid": uid},
                                "spec": samples.hacluster(cluster, NS)["spec"]})
    role = cluster_objects.member_role(spec)
    if mutate:
        mutate(role)
    apply_objects(cp, [cluster_objects.member_account(spec), role, cluster_objects.member_role_binding(spec),
                       cluster_objects.lease(spec), member_pod(f"{cluster}-0", cluster),
                       member_pod(f"{cluster}-1", cluster), member_pod(f"{cluster}-outsider", "other")])
    kubeconfig = cp.kubeconfig_for_service_account(NS, names.member_account(cluster))
    return cp.api_client(kubeconfig)


def lease_update(api: Any, cluster: str, holder: str) -> str:
    lease = KubeLease(api, NS, names.lease(cluster), timeout=5, default_duration=4)

    async def go() -> str:
        outcome, rec = await lease.call("get", None, "", None)
        assert outcome == "ok" and rec is not None, outcome
        new = LeaseRecord(holder=holder, resource_version=rec.resource_version, duration=4, transitions=1)
        outcome, _ = await lease.call("update", new, rec.resource_version, rec)
        return outcome

    return asyncio.run(go())


def test_member_role_allows_what_heartbeat_does(control_plane: ControlPlane) -> None:
    cp = control_plane
    api = setup_cluster(cp, "rbac")
    assert lease_update(api, "rbac", "rbac-0") == "ok"
    asyncio.run(PodLabelAgent(api, NS, "rbac-0", ["rbac-0", "rbac-1"]).start())
    StatusPublisher(api, NS, "rbac-0", dict)._publish('{"role":"active"}')
    asyncio.run(EventRecorder(api, NS, "rbac").emit(0.0, "Normal", "Promoted", "rbac-0 is active"))
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        consts.GROUP, consts.VERSION, NS, consts.HACLUSTERS, "rbac",
        {"metadata": {"annotations": {consts.ANNOTATION_SWITCHOVER: None}}})
    pod = json.loads(cp.kubectl("get", "pod", "rbac-0", "-n", NS, "-o", "json").stdout)
    assert pod["metadata"]["labels"][consts.LABEL_ROLE] == "active"
    assert pod["metadata"]["annotations"][consts.ANNOTATION_MEMBER_STATUS] == '{"role":"active"}'
    holder = json.loads(cp.kubectl("get", "lease", "rbac-hastack", "-n", NS, "-o", "json").stdout)
    assert holder["spec"]["holderIdentity"] == "rbac-0"
    wait_for(lambda: "Promoted" in cp.kubectl("get", "events", "-n", NS).stdout, 30, "the Event")
    # ...and no more: another pod of the namespace, another cluster's Lease, Secrets
    core = client.CoreV1Api(api)
    for call in (lambda: core.patch_namespaced_pod("rbac-outsider", NS, {"metadata": {"labels": {"x": "y"}}}),
                 lambda: core.read_namespaced_secret("rbac-hastack-auth", NS),
                 lambda: core.list_namespaced_pod(NS)):
        with pytest.raises(ApiException) as err:
            call()
        assert err.value.status == 403


def test_a_missing_verb_is_caught(control_plane: ControlPlane) -> None:
    def drop_lease_patch(role: dict[str, Any]) -> None:
        for rule in role["rules"]:
            if rule["resources"] == ["leases"]:
                rule["verbs"] = [v for v in rule["verbs"] if v != "patch"]

    api = setup_cluster(control_plane, "rbacdrop", mutate=drop_lease_patch)
    assert lease_update(api, "rbacdrop", "rbacdrop-0") == "unreachable"  # 403: heartbeat cannot hold it
