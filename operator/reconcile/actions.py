"""What the operator does to a running HACluster besides applying objects: rolling update
steps and fencing of lost nodes, each announced by an Event on the HACluster."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from hastack_common import consts
from hastack_common.durations import parse_duration
from hastack_common.logs import kv
from hastack_operator.k8s import Kube
from hastack_operator.reconcile.reads import Reads
from hastack_operator.resources import fencing, names, rollout
from hastack_operator.resources.conditions import Conditions
from hastack_operator.resources.spec import HACluster
from hastack_operator.resources.status import Member

log = logging.getLogger(__name__)


def event(kube: Kube, cluster: HACluster, reason: str, message: str, warning: bool = False) -> None:
    now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    body = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{cluster.name}.", "namespace": cluster.namespace},
        "involvedObject": {"apiVersion": consts.API_VERSION, "kind": "HACluster", "name": cluster.name,
                           "namespace": cluster.namespace, "uid": cluster.uid},
        "reason": reason, "message": message, "type": "Warning" if warning else "Normal",
        "source": {"component": "hastack-operator"}, "reportingComponent": "hastack.io/operator",
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }
    kube.create(body)
    log.info("event", extra=kv(cluster=cluster.name, reason=reason, message=message))


def rollout_step(cluster: HACluster, body: dict[str, Any], pods: list[dict[str, Any]], members: list[Member],
                 sts: dict[str, Any] | None) -> rollout.Step:
    """The next step of the ordered rolling update (decides only)."""
    revisions = {p["metadata"]["name"]: (p["metadata"].get("labels") or {}).get(rollout.REVISION_LABEL, "")
                 for p in pods}
    pending = (body["metadata"].get("annotations") or {}).get(consts.ANNOTATION_SWITCHOVER)
    # no StatefulSet yet reads as one without a revision: one message, not a status write more
    return rollout.plan(((sts or {}).get("status") or {}).get("updateRevision", ""), revisions, members,
                        names.members(cluster.name, cluster.replicas), pending)


def update_condition(conds: Conditions, step: rollout.Step) -> None:
    """``Updating``: what the rolling update does next, or why it need not."""
    if step.action == "none":
        conds.error("Updating", "UpToDate", step.reason)
    else:
        conds.success("Updating", "RollingUpdate", f"{step.action} {step.member}: {step.reason}".strip())


def perform_rollout(kube: Kube, cluster: HACluster, pods: list[dict[str, Any]], step: rollout.Step) -> None:
    if step.action == "delete":
        pod = next(p for p in pods if p["metadata"]["name"] == step.member)
        event(kube, cluster, "RollingUpdate", f"deleting {step.member}: {step.reason}")
        kube.delete("v1", "Pod", cluster.namespace, step.member, uid=pod["metadata"]["uid"])
    elif step.action == "switchover":
        event(kube, cluster, "RollingUpdate", f"requesting switchover to {step.member}: {step.reason}")
        kube.patch(consts.API_VERSION, "HACluster", cluster.namespace, cluster.name,
                   {"metadata": {"annotations": {consts.ANNOTATION_SWITCHOVER: step.member}}})


def data_nodes(kube: Kube, cluster: HACluster, pods: list[dict[str, Any]],
               claims: list[dict[str, Any]]) -> tuple[dict[str, str], set[str]]:
    """Member -> the node its data lives on (the pod's node, else its PV's node affinity); and the PVCs."""
    where = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods
             if (p.get("spec") or {}).get("nodeName") and not p["metadata"].get("deletionTimestamp")}
    claim_names = {c["metadata"]["name"] for c in claims}
    for c in claims:
        member = c["metadata"]["name"].removeprefix("backing-")
        volume = (c.get("spec") or {}).get("volumeName")
        if member in where or not volume:
            continue
        pv = kube.get("v1", "PersistentVolume", None, volume)
        terms = ((((pv or {}).get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}).get(
            "nodeSelectorTerms") or []
        for term in terms:
            for expr in term.get("matchExpressions") or []:
                if expr.get("key") == "kubernetes.io/hostname" and expr.get("values"):
                    where[member] = expr["values"][0]
    return where, claim_names


def fencing_plan(kube: Kube, reads: Reads, cluster: HACluster, pods: list[dict[str, Any]],
                 now: dt.datetime) -> list[fencing.Action]:
    """What to do about members on lost nodes (decides only)."""
    fo = cluster.failover
    where, claims = data_nodes(kube, cluster, pods, reads.claims(cluster.namespace, cluster.name))
    nodes = {}
    for node_name in set(where.values()):
        obj = reads.node(node_name)
        if obj is not None:
            nodes[node_name] = fencing.node_health(obj)
    return fencing.plan(fo.get("fencing", "OutOfService"), parse_duration(fo.get("fenceAfter", "60s")),
                        parse_duration(fo.get("replaceAfter", "15m")), where, nodes, claims, now)


def perform_fencing(kube: Kube, cluster: HACluster, pods: list[dict[str, Any]],
                    actions: list[fencing.Action]) -> None:
    live = {p["metadata"]["name"]: p for p in pods if not p["metadata"].get("deletionTimestamp")}
    for a in actions:
        if a.kind == "taint":
            node = kube.get("v1", "Node", None, a.node) or {}
            taints = [*((node.get("spec") or {}).get("taints") or []),
                      {"key": fencing.OUT_OF_SERVICE, "value": "nodeshutdown", "effect": "NoExecute"}]
            kube.patch("v1", "Node", None, a.node, {"spec": {"taints": taints}})
            event(kube, cluster, "NodeFenced", f"tainted {a.node} {fencing.OUT_OF_SERVICE}: {a.reason}", True)
        elif a.kind == "force-delete" and a.member in live and live[a.member]["spec"].get("nodeName") == a.node:
            kube.delete("v1", "Pod", cluster.namespace, a.member, grace_seconds=0,
                        uid=live[a.member]["metadata"]["uid"])
            event(kube, cluster, "MemberFenced", f"force-deleted {a.member} on lost node {a.node}", True)
        elif a.kind == "replace":
            kube.delete("v1", "PersistentVolumeClaim", cluster.namespace, f"backing-{a.member}")
            if a.member in live:
                kube.delete("v1", "Pod", cluster.namespace, a.member, grace_seconds=0)
            event(kube, cluster, "ReplicaReplaced",
                  f"deleted backing-{a.member} so {a.member} is recreated elsewhere and fully synced: {a.reason}",
                  True)
