"""Reconcile a ServiceMonitor: its configuration reaches the mon sidecars of the target
HACluster (through that cluster's ConfigMap, no pod roll), or a standalone mon Deployment."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hastack_common import consts
from hastack_operator.k8s import Kube
from hastack_operator.reconcile import applied, hacluster
from hastack_operator.reconcile.reads import ApiReads, Reads
from hastack_operator.reconcile.status_patch import write_status
from hastack_operator.resources import monitor_objects, monitor_status, names
from hastack_operator.resources.conditions import Conditions
from hastack_operator.resources.validation import spec_problems


def reconcile(kube: Kube, body: dict[str, Any], image: str, now: dt.datetime | None = None,
              reads: Reads | None = None, fresh: bool = True) -> dict[str, Any]:
    """``reads``/``fresh`` as for :func:`hacluster.reconcile`."""
    now = now or dt.datetime.now(dt.UTC)
    reads = reads or ApiReads(kube)
    meta = body["metadata"]
    generation = int(meta.get("generation") or 0)
    old = dict(body.get("status") or {})
    conds = Conditions(generation, list(old.get("conditions") or []), now=now)
    problems = spec_problems(consts.SERVICEMONITORS, dict(body.get("spec") or {}), meta["name"])
    if problems:
        conds.error("Accepted", "InvalidSpec", "; ".join(problems))
        return {"observedGeneration": generation, "conditions": conds.to_list()}
    target = (body.get("spec") or {}).get("target") or {}
    cluster_name = target.get("haCluster")
    if cluster_name:
        cluster = reads.cluster(meta["namespace"], cluster_name)
        if cluster is None:
            conds.success("Accepted", "SpecAccepted", "the spec is valid")
            conds.error("Ready", "ClusterNotFound", f"HACluster {cluster_name} does not exist")
            return {"observedGeneration": generation, "conditions": conds.to_list()}
        hacluster.refresh_config(kube, cluster, image, reads, fresh)
        conds.success("Accepted", "SpecAccepted", f"probed by the members of HACluster {cluster_name}")
        prune(kube, body, set())
        return with_probe_status(kube, body, conds, now, reads)
    wanted = monitor_objects.desired(body, image)
    applied.apply_all(kube, meta.get("uid") or "", wanted, fresh)
    prune(kube, body, {(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in wanted})
    conds.success("Accepted", "SpecAccepted", f"probed by the standalone {wanted[-1]['metadata']['name']}")
    return with_probe_status(kube, body, conds, now, reads)


def mon_pod(kube: Kube, body: dict[str, Any], reads: Reads | None = None) -> dict[str, Any] | None:
    """The pod whose mon decides: the active member's, or the standalone mon's."""
    meta = body["metadata"]
    cluster = ((body.get("spec") or {}).get("target") or {}).get("haCluster")
    if cluster:
        pods = [p for p in (reads or ApiReads(kube)).pods(meta["namespace"], cluster)
                if (p["metadata"].get("labels") or {}).get(consts.LABEL_ROLE) == consts.ROLE_ACTIVE]
        return pods[0] if len(pods) == 1 else None
    return kube.get("v1", "Pod", meta["namespace"], f"{names.monitor_deployment(meta['name'])}-0")


def with_probe_status(kube: Kube, body: dict[str, Any], conds: Conditions, now: dt.datetime,
                      reads: Reads | None = None) -> dict[str, Any]:
    meta = body["metadata"]
    generation = int(meta.get("generation") or 0)
    part, why = monitor_status.report_of(mon_pod(kube, body, reads), f"{meta['namespace']}/{meta['name']}", now)
    # the previous Ready too, so that its lastTransitionTime moves only when its status does
    kept = [c for c in conds.to_list() if c["type"] in ("Accepted", "Ready")]
    out = monitor_status.status(generation, {"conditions": kept}, part, why, now)
    return out


def refresh(kube: Kube, body: dict[str, Any], now: dt.datetime | None = None, reads: Reads | None = None) -> None:
    """Copy the deciding mon's report into the monitor's status (on pod changes, no config work)."""
    now = now or dt.datetime.now(dt.UTC)
    old = dict(body.get("status") or {})
    if old.get("observedGeneration") != body["metadata"].get("generation"):
        return
    conds = Conditions(int(body["metadata"].get("generation") or 0), list(old.get("conditions") or []), now=now)
    write_status(kube, consts.API_VERSION, "ServiceMonitor", body, with_probe_status(kube, body, conds, now, reads))


# What each monitor's last prune kept, in this process (as for HAClusters: a desired set that
# has not changed since needs no new prune; the first reconcile after a start always prunes).
_pruned_against: dict[str, frozenset[tuple[str, str, str]]] = {}


def prune(kube: Kube, body: dict[str, Any], keep: set[tuple[str, str, str]]) -> None:
    """Remove the standalone mon's objects no longer wanted (e.g. the target became a HACluster)."""
    meta = body["metadata"]
    if _pruned_against.get(meta.get("uid") or "") == frozenset(keep):
        return
    if not keep and kube.get("v1", "ConfigMap", meta["namespace"], names.monitor_deployment(meta["name"])) is None:
        # the standalone ConfigMap is applied first: without it, none of the others was applied
        _pruned_against[meta.get("uid") or ""] = frozenset(keep)
        return
    selector = f"{monitor_objects.LABEL_MONITOR}={meta['name']}"
    for api_version, kind in monitor_objects.PRUNABLE:
        for obj in kube.list(api_version, kind, meta["namespace"], selector):
            mine = any(r.get("uid") == meta.get("uid") for r in obj["metadata"].get("ownerReferences") or [])
            if mine and (api_version, kind, obj["metadata"]["name"]) not in keep:
                kube.delete(api_version, kind, meta["namespace"], obj["metadata"]["name"])
    _pruned_against[meta.get("uid") or ""] = frozenset(keep)


def forget(uid: str) -> None:
    """The ServiceMonitor is gone: drop what this process remembered about it."""
    applied.forget(uid)
    _pruned_against.pop(uid, None)
