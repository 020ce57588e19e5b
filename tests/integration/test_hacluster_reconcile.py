"""HACluster, ReplicatedVolume and ServiceMonitor turned into real objects on a real API server,
by the operator running with the chart's RBAC; pods scheduled onto kwok nodes."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest

from harness import samples, storage
from harness.controlplane import ControlPlane
from harness.hastack_api import (
    OperatorProcess,
    apply_objects,
    chart_operator,
    ensure_namespace,
    get_object,
    install_crds,
    operator_writes,
    wait_condition,
)
from harness.procs import wait_for
from hastack_common import consts
from hastack_operator.k8s import Kube
from hastack_operator.reconcile import hacluster

NS = "reconcile"
IMAGE = "hastack:test"


@pytest.fixture(scope="module")
def cp(control_plane: ControlPlane) -> ControlPlane:
    install_crds(control_plane)
    ensure_namespace(control_plane, NS)
    pvs = [storage.local_block_pv(f"{node}-disk{i}", node, f"/dev/fake{i}")
           for node in control_plane.node_names for i in range(3)]
    apply_objects(control_plane, [storage.storage_class(), *pvs])
    return control_plane


@pytest.fixture(scope="module")
def operator(cp: ControlPlane) -> Iterator[OperatorProcess]:
    op = chart_operator(cp, NS, "reconciler", env={"HASTACK_IMAGE": IMAGE})
    yield op
    op.stop()


def kget(cp: ControlPlane, kind: str, name: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(cp.kubectl("get", kind, name, "-n", NS, "-o", "json").stdout)
    return out


def web_objects() -> list[dict[str, Any]]:
    return [
        samples.replicatedvolume("data", NS, size="1Gi"),
        samples.hacluster("web", NS, resources=[
            {"kind": "service", "name": "web-active", "port": 80, "targetPort": 8000},
            {"kind": "volume", "name": "data", "mountPath": "/srv/data"},
            {"kind": "monitor", "name": "web-http"}]),
        samples.servicemonitor("web-http", NS, target={"haCluster": "web", "port": 8000}),
    ]


@pytest.fixture(scope="module")
def web(cp: ControlPlane, operator: OperatorProcess) -> dict[str, Any]:
    apply_objects(cp, web_objects())
    return wait_condition(cp, "haclusters", "web", NS, "Accepted", timeout=120)


def test_children_are_exactly_as_designed(cp: ControlPlane, web: dict[str, Any]) -> None:
    sts = kget(cp, "statefulset", "web")
    spec = sts["spec"]
    assert spec["replicas"] == 2 and spec["updateStrategy"]["type"] == "OnDelete"
    assert spec["serviceName"] == "web-peers" and spec["podManagementPolicy"] == "Parallel"
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    claim = spec["volumeClaimTemplates"][0]["spec"]
    assert claim["volumeMode"] == "Block" and claim["storageClassName"] == "hastack-local"
    assert claim["resources"]["requests"]["storage"] == "1025Mi"  # 1 GiB + blockrepl's metadata
    pod = spec["template"]["spec"]
    inits = pod["initContainers"]
    assert [c["name"] for c in inits] == ["gate-install", "blockrepl", "heartbeat", "mon", "fsinit"]
    assert [c.get("restartPolicy") for c in inits] == [None, "Always", "Always", "Always", None]
    assert inits[1]["securityContext"]["privileged"] and inits[2]["securityContext"]["privileged"]
    assert not inits[3]["securityContext"].get("privileged")
    assert inits[1]["volumeDevices"] == [{"name": "backing", "devicePath": "/dev/hastack/backing"}]
    hb_mounts = {m["name"]: m for m in inits[2]["volumeMounts"]}
    assert hb_mounts["hastack-data"]["mountPropagation"] == "Bidirectional"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["hastack-data"]["hostPath"] == {"path": "/var/lib/hastack/mounts/reconcile/web",
                                                   "type": "DirectoryOrCreate"}
    assert volumes["hastack-run"]["emptyDir"]["medium"] == "Memory"
    app = pod["containers"][0]
    assert app["command"] == ["/hastack/bin/gate", "--name", "web", "--", "python3", "-m", "http.server"]
    app_mounts = {m["name"]: m for m in app["volumeMounts"]}
    assert app_mounts["hastack-data"] == {"name": "hastack-data", "mountPath": "/srv/data",
                                          "mountPropagation": "HostToContainer",
                                          "subPathExpr": "$(HASTACK_POD_NAME)"}
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["topologyKey"] == "kubernetes.io/hostname"
    assert pod["serviceAccountName"] == "web-member"

    peers = kget(cp, "service", "web-peers")["spec"]
    assert peers["clusterIP"] == "None" and peers["publishNotReadyAddresses"] is True
    assert {p["name"] for p in peers["ports"]} == {"heartbeat", "replication"}
    active = kget(cp, "service", "web-active")["spec"]
    assert active["selector"] == {consts.LABEL_CLUSTER: "web", consts.LABEL_ROLE: "active"}
    cm = kget(cp, "configmap", "web-hastack")["data"]
    assert sorted(cm) == ["blockrepl-0.yaml", "blockrepl-1.yaml", "heartbeat-0.yaml", "heartbeat-1.yaml",
                          "mon.yaml"]
    assert "mountDir: /var/lib/hastack/data/web-1" in cm["heartbeat-1.yaml"]
    assert "web-http" in cm["mon.yaml"] and "web-1.web-peers.reconcile.svc.cluster.local:7788" in cm["blockrepl-0.yaml"]
    secret = kget(cp, "secret", "web-hastack-auth")
    assert sorted(secret["data"]) == ["heartbeat", "replication"]
    lease = kget(cp, "lease", "web-hastack")
    assert not (lease.get("spec") or {}).get("holderIdentity")  # the members own the spec
    role = kget(cp, "role", "web-member")
    pod_rule = next(r for r in role["rules"] if r["resources"] == ["pods"])
    assert pod_rule["resourceNames"] == ["web-0", "web-1"]
    assert kget(cp, "pdb", "web")["spec"]["maxUnavailable"] == 1
    for kind, name in (("statefulset", "web"), ("service", "web-peers"), ("configmap", "web-hastack"),
                       ("secret", "web-hastack-auth"), ("lease", "web-hastack")):
        owners = kget(cp, kind, name)["metadata"]["ownerReferences"]
        assert owners[0]["kind"] == "HACluster" and owners[0]["uid"] == web["metadata"]["uid"]


def test_members_are_scheduled_on_distinct_nodes(cp: ControlPlane, web: dict[str, Any]) -> None:
    def placed() -> list[str] | None:
        pods = json.loads(cp.kubectl("get", "pods", "-n", NS, "-l", "hastack.io/cluster=web",
                                     "-o", "json").stdout)["items"]
        nodes = [p["spec"].get("nodeName") for p in pods]
        return nodes if len(nodes) == 2 and all(nodes) else None

    nodes = wait_for(placed, 90, "both members scheduled")
    assert len(set(nodes)) == 2, nodes
    claims = json.loads(cp.kubectl("get", "pvc", "-n", NS, "-o", "json").stdout)["items"]
    assert sorted(c["metadata"]["name"] for c in claims) == ["backing-web-0", "backing-web-1"]
    assert all(c["status"]["phase"] == "Bound" for c in claims)


def test_reconcile_again_changes_nothing(cp: ControlPlane, web: dict[str, Any]) -> None:
    def versions() -> dict[str, str]:  # the operator's own writes (controllers write StatefulSet/PDB status)
        return operator_writes(cp, NS, "statefulset,service,configmap,secret,lease,role,rolebinding,serviceaccount,pdb",
                               "-l", "hastack.io/cluster=web")

    before = versions()
    assert len(before) >= 10, before
    with cp.api_client() as api:
        body = get_object(cp, "haclusters", "web", NS)
        outcome = hacluster.reconcile(Kube(api), body, IMAGE)
    assert outcome.pruned == 0
    assert versions() == before


def publish(cp: ControlPlane, pod: str, report: dict[str, Any] | None) -> None:
    value = json.dumps(report) if report is not None else None
    patch = {"metadata": {"annotations": {consts.ANNOTATION_MEMBER_STATUS: value}}}
    cp.kubectl("patch", "pod", pod, "-n", NS, "--type=merge", "-p", json.dumps(patch))


def now_iso(delta: float = 0) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delta)).isoformat()


def test_member_reports_are_aggregated_and_stale_ones_shown_unknown(cp: ControlPlane, web: dict[str, Any]) -> None:
    wait_for(lambda: cp.kubectl("get", "pod", "web-1", "-n", NS, check=False).returncode == 0, 60, "pods")
    volume = {"role": "Primary", "diskState": "UpToDate", "connection": "Connected",
              "replication": "Established", "outOfSyncBytes": 0}
    publish(cp, "web-0", {"member": "web-0", "role": "active", "publishedAt": now_iso(),
                          "peers": {"web-1": {"state": "alive"}}, "volume": volume})
    publish(cp, "web-1", {"member": "web-1", "role": "standby", "publishedAt": now_iso(),
                          "peers": {"web-0": {"state": "alive"}},
                          "volume": {**volume, "role": "Secondary"}})

    def running() -> dict[str, Any] | None:
        st = get_object(cp, "haclusters", "web", NS).get("status") or {}
        return st if st.get("phase") == "Running" and st.get("activeMember") == "web-0" else None

    st = wait_for(running, 60, "HACluster Running with web-0 active")
    assert [m["state"] for m in st["members"]] == ["alive", "alive"]
    rv = wait_for(lambda: (get_object(cp, "replicatedvolumes", "data", NS).get("status") or {})
                  .get("diskStates") == "UpToDate/UpToDate" or None, 60, "volume status")
    assert rv
    rv_status = get_object(cp, "replicatedvolumes", "data", NS)["status"]
    assert rv_status["primary"] == "web-0" and rv_status["cluster"] == "web"

    # web-1 stops publishing (its last report is old): it shows as unknown, never as fine
    publish(cp, "web-1", {"member": "web-1", "role": "standby", "publishedAt": now_iso(-120)})

    def degraded() -> dict[str, Any] | None:
        st = get_object(cp, "haclusters", "web", NS).get("status") or {}
        return st if st.get("phase") == "Degraded" else None

    st = wait_for(degraded, 60, "HACluster Degraded")
    assert {m["name"]: m["state"] for m in st["members"]} == {"web-0": "alive", "web-1": "unknown"}
    cond = next(c for c in st["conditions"] if c["type"] == "Degraded")
    assert cond["status"] == "True" and "web-1" in cond["message"]
    rv_status = get_object(cp, "replicatedvolumes", "data", NS)["status"]
    assert rv_status["diskStates"] == "UpToDate/Unknown"


def test_volume_replica_count_must_match(cp: ControlPlane, operator: OperatorProcess) -> None:
    apply_objects(cp, [samples.replicatedvolume("three", NS, replicas=3),
                       samples.hacluster("mismatch", NS, resources=[
                           {"kind": "volume", "name": "three", "mountPath": "/d"}])])
    obj = wait_condition(cp, "haclusters", "mismatch", NS, "Accepted", status="False", timeout=60)
    msg = next(c for c in obj["status"]["conditions"] if c["type"] == "Accepted")["message"]
    assert "has 3 replicas but the HACluster has 2 members" in msg
    assert cp.kubectl("get", "statefulset", "mismatch", "-n", NS, check=False).returncode != 0


def test_monitor_change_reaches_config_without_rolling(cp: ControlPlane, web: dict[str, Any]) -> None:
    sts_gen = kget(cp, "statefulset", "web")["metadata"]["generation"]
    extra = samples.servicemonitor("web-tcp", NS, target={"haCluster": "web", "port": 8000},
                                   probes=[{"name": "tcp", "type": "tcp", "interval": "5s", "timeout": "1s"}])
    apply_objects(cp, [extra])
    wait_for(lambda: "web-tcp" in kget(cp, "configmap", "web-hastack")["data"]["mon.yaml"], 60, "config update")
    assert kget(cp, "statefulset", "web")["metadata"]["generation"] == sts_gen
    cp.kubectl("delete", "servicemonitors.hastack.io", "web-tcp", "-n", NS)
    wait_for(lambda: "web-tcp" not in kget(cp, "configmap", "web-hastack")["data"]["mon.yaml"], 60,
             "config drops the deleted monitor")


def test_monitor_of_a_plain_service_gets_a_standalone_mon(cp: ControlPlane, operator: OperatorProcess) -> None:
    body = samples.servicemonitor("plain", NS, target={"service": "web-active", "port": 80})
    apply_objects(cp, [body])
    wait_condition(cp, "servicemonitors", "plain", NS, "Accepted", timeout=60)
    dep = wait_for(lambda: json.loads(cp.kubectl("get", "sts", "hasm-plain", "-n", NS, "-o", "json",
                                                 check=False).stdout or "null"), 60, "standalone mon StatefulSet")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["hastack", "mon", "--config", "/etc/hastack/config/mon.yaml"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "web-active" in kget(cp, "configmap", "hasm-plain")["data"]["mon.yaml"]
    # the target becomes a HACluster: the standalone mon goes, the cluster's members probe it
    moved = samples.servicemonitor("plain", NS, target={"haCluster": "web", "port": 8000})
    apply_objects(cp, [moved])
    wait_for(lambda: cp.kubectl("get", "sts", "hasm-plain", "-n", NS, check=False).returncode != 0, 60,
             "standalone mon pruned")
    wait_for(lambda: "name: plain" in kget(cp, "configmap", "web-hastack")["data"]["mon.yaml"], 60,
             "monitor in the cluster's mon.yaml")


def test_monitor_status_comes_from_the_active_members_mon(cp: ControlPlane, web: dict[str, Any]) -> None:
    """The contract with mon: its report in its pod's hastack.io/monitor-status annotation."""
    cp.kubectl("label", "pod", "web-0", "-n", NS, f"{consts.LABEL_ROLE}=active", "--overwrite")
    probes = [{"name": "http", "lastResult": "failure: connection refused", "consecutiveFailures": 4,
               "alert": "alerting", "reason": "4 failures >= after 3"}]
    report = {"publishedAt": now_iso(), "monitors": {f"{NS}/web-http": {"probes": probes}}}
    cp.kubectl("annotate", "pod", "web-0", "-n", NS, "--overwrite", f"hastack.io/monitor-status={json.dumps(report)}")

    def alerting() -> dict[str, Any] | None:
        st = get_object(cp, "servicemonitors", "web-http", NS).get("status") or {}
        return st if st.get("alerting") == 1 else None

    st = wait_for(alerting, 60, "ServiceMonitor status from mon's report")
    assert st["probes"] == probes and st["summary"] == "0/1 up"
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and "http" in ready["message"]
    # a report from the past is not trusted
    stale = {**report, "publishedAt": now_iso(-300)}
    cp.kubectl("annotate", "pod", "web-0", "-n", NS, "--overwrite", f"hastack.io/monitor-status={json.dumps(stale)}")
    wait_for(lambda: next(c for c in (get_object(cp, "servicemonitors", "web-http", NS)["status"]["conditions"])
                          if c["type"] == "Ready")["status"] == "Unknown", 60, "stale mon report shown Unknown")
    cp.kubectl("label", "pod", "web-0", "-n", NS, f"{consts.LABEL_ROLE}-")


def test_volume_growth_resizes_the_replicas_pvcs(cp: ControlPlane, web: dict[str, Any]) -> None:
    """The claim templates are immutable: growth patches the PVCs, where the class allows it."""
    wait_for(lambda: len(json.loads(cp.kubectl("get", "pvc", "-n", NS, "-l", "hastack.io/cluster=web",
                                               "-o", "json").stdout)["items"]) == 2, 60, "both PVCs")
    apply_objects(cp, [samples.replicatedvolume("data", NS, size="2Gi")])

    def refused() -> dict[str, Any] | None:
        st = get_object(cp, "haclusters", "web", NS).get("status") or {}
        return next((c for c in st.get("conditions") or [] if c["type"] == "Resized"), None)

    cond = wait_for(refused, 60, "Resized condition")
    assert cond["status"] == "False" and "does not allow expansion" in cond["message"]
    assert "size: 2147483648" in kget(cp, "configmap", "web-hastack")["data"]["blockrepl-0.yaml"]
    cp.kubectl("patch", "storageclass", "hastack-local", "--type=merge", "-p", '{"allowVolumeExpansion": true}')
    apply_objects(cp, [samples.replicatedvolume("data", NS, size="3Gi")])

    def grown() -> bool:
        claims = json.loads(cp.kubectl("get", "pvc", "-n", NS, "-l", "hastack.io/cluster=web", "-o", "json").stdout)
        return all(c["spec"]["resources"]["requests"]["storage"] == "3073Mi" for c in claims["items"])

    wait_for(grown, 60, "PVCs grown to 3 GiB + metadata")
    sts = kget(cp, "statefulset", "web")
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "1025Mi"


def test_operator_metrics_count_managed_objects(cp: ControlPlane, operator: OperatorProcess,
                                                web: dict[str, Any]) -> None:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    assert 'hastack_operator_managed_objects{kind="StatefulSet"}' in text
    assert 'hastack_operator_handler_runs_total{handler="reconcile",kind="haclusters"}' in text
