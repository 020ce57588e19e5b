"""Reconcile a ServiceMonitor: its configuration reaches the mon sidecars of the target
HACluster (through that cluster's ConfigMap, no pod roll), or a standalone mon Deployment."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hastack_common import consts
from hastack_operator.k8s import Kube
from hastack_operator.reconcile import hacluster
from hastack_operator.reconcile.status_patch import status_changed
from hastack_operator.resources import monitor_objects, monitor_status, names
from hastack_operator.resources.conditions import Conditions
from hastack_operator.resources.validation import spec_problems


def reconcile(kube: Kube, body: dict[str, Any], image: str, now: dt.datetime | None = None,
              monitors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """``monitors``: every ServiceMonitor of the target cluster, when the caller has them indexed."""
    now = now or dt.datetime.now(dt.UTC)
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
        cluster = kube.get(consts.API_VERSION, "HACluster", meta["namespace"], cluster_name)
        if cluster is None:
            conds.success("Accepted", "SpecAccepted", "the spec is valid")
            conds.error("Ready", "ClusterNotFound", f"HACluster {cluster_name} does not exist")
            return {"observedGeneration": generation, "conditions": conds.to_list()}
        hacluster.refresh_config(kube, cluster, image, monitors)
        conds.success("Accepted", "SpecAccepted", f"probed by the members of HACluster {cluster_name}")
        prune(kube, body, set())
        return with_probe_status(kube, body, conds, now)
    else:
        wanted = monitor_objects.desired(body, image)
        for obj in wanted:
            kube.apply(obj)
        prune(kube, body, {(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in wanted})
        conds.success("Accepted", "SpecAccepted", f"probed by the standalone {wanted[-1]['metadata']['name']}")
        return with_probe_status(kube, body, conds, now)
    return {"observedGeneration": generation, "conditions": conds.to_list()}


def mon_pod(kube: Kube, body: dict[str, Any]) -> dict[str, Any] | None:
    """The pod whose mon decides: the active member's, or the standalone mon's."""
    meta = body["metadata"]
    cluster = ((body.get("spec") or {}).get("target") or {}).get("haCluster")
    if cluster:
        selector = f"{consts.LABEL_CLUSTER}={cluster},{consts.LABEL_ROLE}={consts.ROLE_ACTIVE}"
        pods = kube.list("v1", "Pod", meta["namespace"], selector)
        return pods[0] if len(pods) == 1 else None
    return kube.get("v1", "Pod", meta["namespace"], f"{names.monitor_deployment(meta['name'])}-0")


def with_probe_status(kube: Kube, body: dict[str, Any], conds: Conditions, now: dt.datetime) -> dict[str, Any]:
    meta = body["metadata"]
    generation = int(meta.get("generation") or 0)
    part, why = monitor_status.report_of(mon_pod(kube, body), f"{meta['namespace']}/{meta['name']}", now)
    accepted = [c for c in conds.to_list() if c["type"] == "Accepted"]
    out = monitor_status.status(generation, {"conditions": accepted}, part, why, now)
    return out


def refresh(kube: Kube, body: dict[str, Any], now: dt.datetime | None = None) -> None:
    """Copy the deciding mon's report into the monitor's status (on pod changes, no config work)."""
    now = now or dt.datetime.now(dt.UTC)
    old = dict(body.get("status") or {})
    if old.get("observedGeneration") != body["metadata"].get("generation"):
        return
    conds = Conditions(int(body["metadata"].get("generation") or 0), list(old.get("conditions") or []), now=now)
    new = with_probe_status(kube, body, conds, now)
    if status_changed(old, new):
        meta = body["metadata"]
        kube.patch(consts.API_VERSION, "ServiceMonitor", meta["namespace"], meta["name"], {"status": new},
                   subresource="status")


def prune(kube: Kube, body: dict[str, Any], keep: set[tuple[str, str, str]]) -> None:
    """Remove the standalone mon's objects no longer wanted (e.g. the target became a HACluster)."""
    meta = body["metadata"]
    selector = f"{monitor_objects.LABEL_MONITOR}={meta['name']}"
    for api_version, kind in monitor_objects.PRUNABLE:
        for obj in kube.list(api_version, kind, meta["namespace"], selector):
            mine = any(r.get("uid") == meta.get("uid") for r in obj["metadata"].get("ownerReferences") or [])
            if mine and (api_version, kind, obj["metadata"]["name"]) not in keep:
                kube.delete(api_version, kind, meta["namespace"], obj["metadata"]["name"])
