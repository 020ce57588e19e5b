"""Growing a ReplicatedVolume: the StatefulSet's claim templates are immutable, so the replicas'
PVCs are grown directly — where their StorageClass allows expansion — and blockrepl learns
the new size from its re-rendered config (it resizes, heartbeat grows the filesystem)."""

from __future__ import annotations

import logging
from typing import Any

from hastack_common.logs import kv
from hastack_common.sizing import pvc_quantity, quantity_bytes
from hastack_operator.k8s import Kube
from hastack_operator.resources import names
from hastack_operator.resources.spec import HACluster, ReplicatedVolume

log = logging.getLogger(__name__)


def keep_claim_templates(sts: dict[str, Any], existing: dict[str, Any] | None) -> None:
    """Apply the StatefulSet with the claim templates it was created with (they cannot change)."""
    if existing is None or "volumeClaimTemplates" not in sts["spec"]:
        return
    kept = []
    for t in (existing.get("spec") or {}).get("volumeClaimTemplates") or []:
        meta = t.get("metadata") or {}
        kept.append({"metadata": {k: v for k, v in meta.items() if k in ("name", "labels", "annotations")},
                     "spec": t.get("spec") or {}})
    sts["spec"]["volumeClaimTemplates"] = kept


def grow(kube: Kube, cluster: HACluster, volume: ReplicatedVolume, claims: list[dict[str, Any]]) -> list[str]:
    """Grow every replica's PVC (of ``claims``, the cluster's) below the wanted size; return what
    could not be grown, and why."""
    want = pvc_quantity(volume.size)
    problems = []
    expandable: dict[str, bool] = {}
    by_name = {c["metadata"]["name"]: c for c in claims}
    for member in names.members(cluster.name, cluster.replicas):
        claim = by_name.get(f"backing-{member}")
        if claim is None:
            continue
        have = ((claim.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage", "0")
        if quantity_bytes(have) >= quantity_bytes(want):
            continue
        sc = (claim.get("spec") or {}).get("storageClassName") or ""
        if sc not in expandable:
            obj = kube.get("storage.k8s.io/v1", "StorageClass", None, sc) if sc else None
            expandable[sc] = bool((obj or {}).get("allowVolumeExpansion"))
        if not expandable[sc]:
            problems.append(f"backing-{member}: StorageClass {sc or '(default)'} does not allow expansion")
            continue
        kube.patch("v1", "PersistentVolumeClaim", cluster.namespace, f"backing-{member}",
                   {"spec": {"resources": {"requests": {"storage": want}}}})
        log.info("growing replica", extra=kv(cluster=cluster.name, claim=f"backing-{member}", size=want))
    return problems


