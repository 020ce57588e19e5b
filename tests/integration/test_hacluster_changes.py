"""Changes to a running HACluster on a real control plane: the ordered rolling update and the
fencing of a lost node (kwok nodes; the test plays the members' heartbeat reports)."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from harness import kwok, samples, storage
from harness.controlplane import ControlPlane
from harness.hastack_api import (
    OperatorProcess,
    apply_objects,
    chart_operator,
    get_object,
    wait_condition,
)
from harness.procs import wait_for
from hastack_common import consts
from hastack_operator.k8s import Kube

NS = "changes"
THIRD_NODE = "kwok-node-extra"


@pytest.fixture(scope="module")
def operator(control_plane: ControlPlane) -> Iterator[OperatorProcess]:
    op = chart_operator(control_plane, NS, "changer")
    yield op
    op.stop()


class FakeHeartbeat:
    """Publishes member reports the way heartbeat does and honours switchover requests, so the
    operator's side of the contract is exercised against the real API server."""

    def __init__(self, cp: ControlPlane, cluster: str, replicas: int) -> None:
        self.api = cp.api_client()
        self.kube = Kube(self.api)
        self.cluster = cluster
        self.members = [f"{cluster}-{i}" for i in range(replicas)]
        self.active = self.members[0]
        self.deletions: list[tuple[str, str]] = []  # (member, its role when it was deleted)
        self._uids: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FakeHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.api.close()

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            try:
                self.tick()
            except Exception:  # the API may be briefly unavailable; the next tick retries
                continue

    def tick(self) -> None:
        body = self.kube.get(consts.API_VERSION, "HACluster", NS, self.cluster) or {}
        target = (body.get("metadata", {}).get("annotations") or {}).get(consts.ANNOTATION_SWITCHOVER)
        if target:
            self.active = target
            self.kube.patch(consts.API_VERSION, "HACluster", NS, self.cluster,
                            {"metadata": {"annotations": {consts.ANNOTATION_SWITCHOVER: None}}})
        pods = {p["metadata"]["name"]: p for p in self.kube.list("v1", "Pod", NS, f"hastack.io/cluster={self.cluster}")}
        for name in self.members:
            pod = pods.get(name)
            uid = pod["metadata"]["uid"] if pod else ""
            if name in self._uids and self._uids[name] != uid:
                self.deletions.append((name, "active" if name == self.active else "standby"))
            self._uids[name] = uid
            if pod is None or pod["metadata"].get("deletionTimestamp") or pod["status"].get("phase") != "Running":
                continue
            report = {"member": name, "role": "active" if name == self.active else "standby",
                      "publishedAt": dt.datetime.now(dt.UTC).isoformat(),
                      "peers": {m: {"state": "alive"} for m in self.members if m != name}}
            self.kube.patch("v1", "Pod", NS, name, {"metadata": {
                "annotations": {consts.ANNOTATION_MEMBER_STATUS: json.dumps(report)}}})


def revisions(cp: ControlPlane, cluster: str) -> dict[str, str]:
    pods = json.loads(cp.kubectl("get", "pods", "-n", NS, "-l", f"hastack.io/cluster={cluster}",
                                 "-o", "json").stdout)["items"]
    return {p["metadata"]["name"]: p["metadata"]["labels"].get("controller-revision-hash", "") for p in pods
            if not p["metadata"].get("deletionTimestamp")}


def test_rolling_update_standbys_first_then_switchover_then_old_active(control_plane: ControlPlane,
                                                                        operator: OperatorProcess) -> None:
    cp = control_plane
    apply_objects(cp, [samples.hacluster("roll", NS)])
    wait_condition(cp, "haclusters", "roll", NS, "Accepted", timeout=90)
    wait_for(lambda: len(revisions(cp, "roll")) == 2, 90, "two members")
    with FakeHeartbeat(cp, "roll", 2) as hb:
        wait_for(lambda: (get_object(cp, "haclusters", "roll", NS).get("status") or {}).get("phase") == "Running",
                 90, "cluster Running")
        assert not hb.deletions
        first = set(revisions(cp, "roll").values())
        changed = samples.hacluster("roll", NS)
        changed["spec"]["template"]["metadata"] = {"annotations": {"example.com/version": "2"}}
        apply_objects(cp, [changed])

        def updated() -> bool:
            sts = json.loads(cp.kubectl("get", "sts", "roll", "-n", NS, "-o", "json").stdout)
            want = sts["status"].get("updateRevision")
            revs = revisions(cp, "roll")
            return want not in first and len(revs) == 2 and set(revs.values()) == {want}

        wait_for(updated, 180, "every member on the new revision")
        wait_for(lambda: len(hb.deletions) >= 2, 10, "the fake heartbeat to see the last replacement")
        assert hb.deletions == [("roll-1", "standby"), ("roll-0", "standby")], hb.deletions
        assert hb.active == "roll-1"  # one switchover moved the active before its old pod was deleted
    events = cp.kubectl("get", "events", "-n", NS, "--field-selector", "involvedObject.name=roll",
                        "-o", "json").stdout
    reasons = [e["message"] for e in json.loads(events)["items"] if e["reason"] == "RollingUpdate"]
    assert any("requesting switchover to roll-1" in m for m in reasons), reasons


def test_lost_node_is_fenced_and_its_replica_replaced(control_plane: ControlPlane,
                                                      operator: OperatorProcess) -> None:
    cp = control_plane
    extra = kwok.node_manifest(THIRD_NODE)
    cp.kubectl("apply", "-f", "-", input=json.dumps(extra))
    wait_for(lambda: kwok.ready_status(json.loads(cp.kubectl("get", "node", THIRD_NODE, "-o", "json").stdout))
             == "True", 60, "third node Ready")
    nodes = [*cp.node_names, THIRD_NODE]
    apply_objects(cp, [storage.storage_class(),
                       *[storage.local_block_pv(f"{n}-fence", n, "/dev/fence") for n in nodes]])
    apply_objects(cp, [
        samples.replicatedvolume("fence-vol", NS),
        samples.hacluster("fence", NS, failover={"fenceAfter": "2s", "replaceAfter": "25s"},
                          resources=[{"kind": "volume", "name": "fence-vol", "mountPath": "/d"}]),
    ])
    wait_condition(cp, "haclusters", "fence", NS, "Accepted", timeout=90)

    def pod(name: str) -> dict[str, Any] | None:
        res = cp.kubectl("get", "pod", name, "-n", NS, "-o", "json", check=False)
        return json.loads(res.stdout) if res.returncode == 0 else None

    def placed() -> dict[str, str] | None:
        pods = [pod(f"fence-{i}") for i in range(2)]
        if all(p and p["spec"].get("nodeName") and p["status"].get("phase") == "Running" for p in pods):
            return {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods if p}
        return None

    where = wait_for(placed, 120, "both members running")
    lost = where["fence-0"]
    old_pod_uid = pod("fence-0")["metadata"]["uid"]  # type: ignore[index]
    old_claim = json.loads(cp.kubectl("get", "pvc", "backing-fence-0", "-n", NS, "-o", "json").stdout)
    try:
        cp.set_node_ready(lost, False)

        def tainted() -> bool:
            node = json.loads(cp.kubectl("get", "node", lost, "-o", "json").stdout)
            return kwok.has_taint(node, "node.kubernetes.io/out-of-service")

        wait_for(tainted, 90, f"{lost} tainted out-of-service")
        wait_for(lambda: (pod("fence-0") or {}).get("metadata", {}).get("uid") not in (None, old_pod_uid), 90,
                 "fence-0 force-deleted and recreated")

        def replaced() -> str | None:
            p = pod("fence-0")
            if not p or p["status"].get("phase") != "Running":
                return None
            claim = json.loads(cp.kubectl("get", "pvc", "backing-fence-0", "-n", NS, "-o", "json").stdout)
            if claim["metadata"]["uid"] == old_claim["metadata"]["uid"]:
                return None
            return str(p["spec"]["nodeName"])

        new_node = wait_for(replaced, 150, "fence-0 recreated elsewhere with a fresh PVC")
        assert new_node not in (lost, where["fence-1"])
        reasons = {e["reason"] for e in json.loads(cp.kubectl(
            "get", "events", "-n", NS, "--field-selector", "involvedObject.name=fence", "-o", "json").stdout)["items"]}
        assert {"NodeFenced", "MemberFenced", "ReplicaReplaced"} <= reasons
    finally:
        cp.set_node_ready(lost, True)
        node = json.loads(cp.kubectl("get", "node", lost, "-o", "json").stdout)
        taints = [t for t in node["spec"].get("taints") or [] if t["key"] != "node.kubernetes.io/out-of-service"]
        cp.kubectl("patch", "node", lost, "--type=merge", "-p", json.dumps({"spec": {"taints": taints}}))
        cp.kubectl("delete", "hacluster", "fence", "-n", NS, "--wait=false")
        cp.kubectl("delete", "node", THIRD_NODE, "--wait=false")
