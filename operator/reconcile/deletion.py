"""Deleting a HACluster: members stop (and unmount) before anything they use disappears.

The finalizer holds the HACluster until its member pods are gone, so their sidecars have
unmounted, unexposed and detached on every node; then the garbage collector removes the
owned children (Services, ConfigMap, Secret, Lease, RBAC). The replicas' PVCs follow the
volume's reclaimPolicy through the StatefulSet's persistentVolumeClaimRetentionPolicy.
"""

from __future__ import annotations

from typing import Any

from hastack_common import consts
from hastack_operator.k8s import Kube
from hastack_operator.resources import names


def members_remaining(kube: Kube, body: dict[str, Any]) -> list[str]:
    """Delete the StatefulSet (once) and return the member pods still present."""
    meta = body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    sts = kube.get("apps/v1", "StatefulSet", ns, names.statefulset(name))
    if sts is not None and not sts["metadata"].get("deletionTimestamp"):
        kube.delete("apps/v1", "StatefulSet", ns, names.statefulset(name), uid=sts["metadata"]["uid"])
    pods = kube.list("v1", "Pod", ns, f"{consts.LABEL_CLUSTER}={name}")
    return sorted(p["metadata"]["name"] for p in pods)
