"""Reconcile a HACluster: build the whole desired set, apply it, prune the rest, report status.

Level-triggered: the same function runs on create, spec change, resume and a slow timer,
and from any starting point converges on the same objects.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

from hastack_common import consts
from hastack_common.logs import kv
from hastack_operator import metrics
from hastack_operator.k8s import Kube
from hastack_operator.reconcile import applied, growth
from hastack_operator.reconcile.reads import ApiReads, Reads
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


def volume_for(reads: Reads, cluster: HACluster) -> ReplicatedVolume | None:
    ref = cluster.resource("volume")
    if ref is None:
        return None
    body = reads.volume(cluster.namespace, ref.name)
    return ReplicatedVolume.from_body(body) if body else None


def ensure_secret(kube: Kube, cluster: HACluster, fresh: bool = True) -> None:
    """Created once with fresh keys; an existing Secret is never rewritten. Without ``fresh``,
    a Secret this process already saw is not read again."""
    name = names.secret(cluster.name)
    key = ("v1", "Secret", cluster.namespace, name)
    if not fresh and applied.seen(cluster.uid, key, "exists"):
        return
    if kube.get("v1", "Secret", cluster.namespace, name) is None:
        kube.create(owned(cluster_objects.auth_secret(cluster), cluster))
        log.info("created auth secret", extra=kv(cluster=cluster.name, secret=name))
    applied.remember(cluster.uid, key, "exists")


# What this process last recorded on each cluster's anchor (owner uid -> object names).
_recorded: dict[str, frozenset[applied.Name]] = {}


def apply_and_prune(kube: Kube, cluster: HACluster, wanted: list[dict[str, Any]], fresh: bool,
                    reconciled_before: bool) -> int:
    """Apply the desired set, then delete what was applied before and is no longer desired.

    The anchor (the members' ServiceAccount, always desired, applied first) records every
    object applied for the cluster; what it names and the desired set does not is pruned by
    name. Without a record (objects applied before records existed, or the anchor deleted by
    hand) every prunable kind is listed, as a safety net."""
    want = frozenset(key(o) for o in wanted)
    anchor, rest = wanted[0], wanted[1:]
    known = None if fresh else _recorded.get(cluster.uid)
    if known is None:
        live = kube.get(anchor["apiVersion"], anchor["kind"], cluster.namespace, anchor["metadata"]["name"])
        known = applied.recorded_on(live) if live is not None else (None if reconciled_before else frozenset())
    if known is None:
        applied.apply_all(kube, cluster.uid, [applied.with_record(anchor, want), *rest], fresh)
        pruned = prune_listed(kube, cluster, want)
    else:
        applied.apply_all(kube, cluster.uid, [applied.with_record(anchor, known | want), *rest], fresh)
        pruned = prune_named(kube, cluster, known - want)
        if known - want:
            applied.apply_all(kube, cluster.uid, [applied.with_record(anchor, want)], fresh)
    _recorded[cluster.uid] = want
    return pruned


def _owned_by(obj: dict[str, Any], cluster: HACluster) -> bool:
    return any(r.get("uid") == cluster.uid for r in obj["metadata"].get("ownerReferences") or [])


def _prune_one(kube: Kube, cluster: HACluster, api_version: str, kind: str, obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    kube.delete(api_version, kind, cluster.namespace, meta["name"], uid=meta.get("uid"))
    log.info("pruned", extra=kv(cluster=cluster.name, kind=kind, name=meta["name"]))


def prune_named(kube: Kube, cluster: HACluster, gone: frozenset[applied.Name]) -> int:
    pruned = 0
    for api_version, kind, name in sorted(gone):
        if (api_version, kind) not in PRUNABLE:
            continue
        obj = kube.get(api_version, kind, cluster.namespace, name)
        if obj is not None and _owned_by(obj, cluster):
            _prune_one(kube, cluster, api_version, kind, obj)
            pruned += 1
    return pruned


def prune_listed(kube: Kube, cluster: HACluster, keep: frozenset[applied.Name]) -> int:
    selector = f"{consts.LABEL_CLUSTER}={cluster.name}"
    pruned = 0
    for api_version, kind in PRUNABLE:
        for obj in kube.list(api_version, kind, cluster.namespace, selector):
            if _owned_by(obj, cluster) and (api_version, kind, obj["metadata"]["name"]) not in keep:
                _prune_one(kube, cluster, api_version, kind, obj)
                pruned += 1
    return pruned


def reconcile(kube: Kube, body: dict[str, Any], image: str, now: dt.datetime | None = None,
              reads: Reads | None = None, fresh: bool = True) -> Outcome:
    """``reads``: where to read volume, monitors, pods and StatefulSet (the API server by default).
    ``fresh``: apply every object; otherwise skip those whose manifest this process applied last."""
    now = now or dt.datetime.now(dt.UTC)
    reads = reads or ApiReads(kube)
    cluster = HACluster.from_body(body)
    old = dict(body.get("status") or {})
    volume = volume_for(reads, cluster)
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
    monitors = reads.monitors(cluster.namespace, cluster.name)
    wanted = desired(cluster, volume, monitors, image)
    sts = next(o for o in wanted if o["kind"] == "StatefulSet")
    # claim templates never change once created, so an indexed copy is as good as a fresh one
    growth.keep_claim_templates(sts, reads.statefulset(cluster.namespace, sts["metadata"]["name"]))
    ensure_secret(kube, cluster, fresh)
    pruned = apply_and_prune(kube, cluster, wanted, fresh, reconciled_before=bool(old))
    _config_of[cluster.uid] = config_inputs(cluster, volume, monitors)
    metrics.record_managed(cluster.uid, wanted)
    not_grown = growth.grow(kube, cluster, volume, reads.claims(cluster.namespace, cluster.name)) \
        if volume is not None else []
    pods = reads.pods(cluster.namespace, cluster.name)
    members = [status_builder.member_from_pod(p, now) for p in pods]
    status = status_builder.cluster_status(cluster.generation, old, members,
                                           names.members(cluster.name, cluster.replicas), now)
    conds = Conditions(cluster.generation, status["conditions"], now=now)
    conds.success("Accepted", "SpecAccepted", f"{len(wanted)} objects applied")
    if not_grown:
        conds.error("Resized", "ResizeNotSupported", "; ".join(not_grown))
    status["conditions"] = conds.to_list()
    return Outcome(status, applied=len(wanted), pruned=pruned)


def config_inputs(cluster: HACluster, volume: ReplicatedVolume | None, monitors: list[dict[str, Any]]) -> str:
    """Everything the members' ConfigMap is rendered from, as one comparable string."""
    return json.dumps([cluster.name, cluster.namespace, cluster.uid, cluster.spec,
                       [volume.name, volume.spec] if volume else None,
                       [[m["metadata"].get(k) for k in ("name", "namespace", "uid")] + [m.get("spec")]
                        for m in monitors]], sort_keys=True, default=str)


# Per cluster, the inputs of the ConfigMap this process last applied: a monitor's reconcile
# that would render the same ConfigMap again skips rendering (YAML of every sidecar's config).
_config_of: dict[str, str] = {}


def refresh_config(kube: Kube, body: dict[str, Any], image: str, reads: Reads | None = None,
                   fresh: bool = True) -> None:
    """Re-render only the members' ConfigMap (a ServiceMonitor changed): sidecars reload it."""
    reads = reads or ApiReads(kube)
    cluster = HACluster.from_body(body)
    volume = volume_for(reads, cluster)
    chosen = reads.monitors(cluster.namespace, cluster.name)
    inputs = config_inputs(cluster, volume, chosen)
    if not fresh and _config_of.get(cluster.uid) == inputs:
        return
    applied.apply_all(kube, cluster.uid, [owned(config_map(cluster, volume, chosen), cluster)], fresh)
    _config_of[cluster.uid] = inputs


def forget(uid: str) -> None:
    """The HACluster is gone: drop what this process remembered about it."""
    applied.forget(uid)
    _recorded.pop(uid, None)
    _config_of.pop(uid, None)
