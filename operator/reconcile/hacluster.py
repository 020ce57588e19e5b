"""Reconcile a HACluster: build the whole desired set, apply it, prune the rest, report status.

Level-triggered: the same function runs on create, spec change, resume and a slow timer,
and from any starting point converges on the same objects.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from hastack_common import consts
from hastack_common.logs import kv
from hastack_operator import metrics
from hastack_operator.k8s import Kube
from hastack_operator.reconcile import growth
from hastack_operator.resources import cluster_objects, names
from hastack_operator.resources import status as status_builder
from hastack_operator.resources.cluster_set import PRUNABLE, desired, key, owned
from hastack_operator.resources.conditions import Conditions
from hastack_operator.resources.config import config_map
from hastack_operator.resources.spec import HACluster, ReplicatedVolume, SpecError, check_volume_fits
from hastack_operator.resources.validation import spec_problems

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    status: dict[str, Any]
    applied: int = 0
    pruned: int = 0
    retry_after: float | None = None  # a condition to wait for (e.g. the volume does not exist yet)


def monitors_for(kube: Kube, cluster: HACluster) -> list[dict[str, Any]]:
    return select_monitors(kube.list(consts.API_VERSION, "ServiceMonitor", cluster.namespace), cluster.name)


def select_monitors(items: list[dict[str, Any]], cluster: str) -> list[dict[str, Any]]:
    chosen = [m for m in items if ((m.get("spec") or {}).get("target") or {}).get("haCluster") == cluster
              and not m["metadata"].get("deletionTimestamp")]
    return sorted(chosen, key=lambda m: m["metadata"]["name"])


def volume_for(kube: Kube, cluster: HACluster) -> ReplicatedVolume | None:
    ref = cluster.resource("volume")
    if ref is None:
        return None
    body = kube.get(consts.API_VERSION, "ReplicatedVolume", cluster.namespace, ref.name)
    return ReplicatedVolume.from_body(body) if body else None


def ensure_secret(kube: Kube, cluster: HACluster) -> None:
    """Created once with fresh keys; an existing Secret is never rewritten."""
    name = names.secret(cluster.name)
    if kube.get("v1", "Secret", cluster.namespace, name) is None:
        kube.create(owned(cluster_objects.auth_secret(cluster), cluster))
        log.info("created auth secret", extra=kv(cluster=cluster.name, secret=name))


# What each cluster's last prune kept, in this process: when the desired set has not changed
# since, there is nothing new to prune (the first reconcile after a start always prunes).
_pruned_against: dict[str, frozenset[tuple[str, str, str]]] = {}


def prune(kube: Kube, cluster: HACluster, wanted: list[dict[str, Any]]) -> int:
    keep = frozenset(key(o) for o in wanted)
    if _pruned_against.get(cluster.uid) == keep:
        return 0
    selector = f"{consts.LABEL_CLUSTER}={cluster.name}"
    pruned = 0
    for api_version, kind in PRUNABLE:
        for obj in kube.list(api_version, kind, cluster.namespace, selector):
            meta = obj["metadata"]
            mine = any(r.get("uid") == cluster.uid for r in meta.get("ownerReferences") or [])
            if mine and (api_version, kind, meta["name"]) not in keep:
                kube.delete(api_version, kind, cluster.namespace, meta["name"], uid=meta.get("uid"))
                pruned += 1
                log.info("pruned", extra=kv(cluster=cluster.name, kind=kind, name=meta["name"]))
    _pruned_against[cluster.uid] = keep
    return pruned


def reconcile(kube: Kube, body: dict[str, Any], image: str, now: dt.datetime | None = None,
              monitors: list[dict[str, Any]] | None = None) -> Outcome:
    """``monitors``: the ServiceMonitors targeting this cluster, when the caller has them indexed."""
    now = now or dt.datetime.now(dt.UTC)
    cluster = HACluster.from_body(body)
    old = dict(body.get("status") or {})
    volume = volume_for(kube, cluster)
    try:
        problems = spec_problems(consts.HACLUSTERS, cluster.spec, cluster.name)
        if problems:
            raise SpecError("; ".join(problems))
        check_volume_fits(cluster, volume)
    except SpecError as exc:
        conds = Conditions(cluster.generation, list(old.get("conditions") or []), now=now)
        waiting = volume is None and cluster.resource("volume") is not None and "does not exist" in str(exc)
        conds.error("Accepted", "WaitingForVolume" if waiting else "InvalidSpec", str(exc))
        return Outcome({"phase": "Pending", "observedGeneration": cluster.generation,
                        "conditions": conds.to_list()}, retry_after=10.0 if waiting else 60.0)
    wanted = desired(cluster, volume, monitors_for(kube, cluster) if monitors is None else monitors, image)
    sts = next(o for o in wanted if o["kind"] == "StatefulSet")
    growth.keep_claim_templates(sts, kube.get("apps/v1", "StatefulSet", cluster.namespace, sts["metadata"]["name"]))
    ensure_secret(kube, cluster)
    for obj in wanted:
        kube.apply(obj)
    metrics.record_managed(cluster.uid, wanted)
    not_grown = growth.grow(kube, cluster, volume) if volume is not None else []
    pruned = prune(kube, cluster, wanted)
    pods = kube.list("v1", "Pod", cluster.namespace, f"{consts.LABEL_CLUSTER}={cluster.name}")
    members = [status_builder.member_from_pod(p, now) for p in pods]
    status = status_builder.cluster_status(cluster.generation, old, members,
                                           names.members(cluster.name, cluster.replicas), now)
    conds = Conditions(cluster.generation, status["conditions"], now=now)
    conds.success("Accepted", "SpecAccepted", f"{len(wanted)} objects applied")
    if not_grown:
        conds.error("Resized", "ResizeNotSupported", "; ".join(not_grown))
    status["conditions"] = conds.to_list()
    return Outcome(status, applied=len(wanted), pruned=pruned)


def refresh_config(kube: Kube, body: dict[str, Any], image: str,
                   monitors: list[dict[str, Any]] | None = None) -> None:
    """Re-render only the members' ConfigMap (a ServiceMonitor changed): sidecars reload it."""
    cluster = HACluster.from_body(body)
    volume = volume_for(kube, cluster)
    chosen = monitors_for(kube, cluster) if monitors is None else monitors
    kube.apply(owned(config_map(cluster, volume, chosen), cluster))
