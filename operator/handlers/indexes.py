"""kopf indexes: what handlers would otherwise read from the API server on every run.

Each is keyed by (namespace, name of the HACluster or object) and holds the object (pods,
StatefulSets and claims trimmed to the fields the operator reads). kopf fills them from its
watches before any handler runs, and updates them before the handlers of each event.
"""

from __future__ import annotations

from typing import Any

import kopf

from hastack_common import consts
from hastack_operator.k8s import Kube
from hastack_operator.reconcile.reads import IndexReads

G, V = consts.GROUP, consts.VERSION
MEMBER = {consts.LABEL_CLUSTER: kopf.PRESENT}
NAMES = ("clusters_by_name", "clusters_by_volume", "volumes_by_name", "monitors_by_cluster",
         "members_by_cluster", "statefulsets_by_name", "claims_by_cluster", "nodes_by_name")
DIFFBASE = f"{consts.GROUP}/last-handled-configuration"  # see handlers.startup


def _pick(obj: kopf.Body, meta: tuple[str, ...], **parts: tuple[str, ...]) -> dict[str, Any]:
    """A trimmed copy: the named metadata fields and, per top-level part, the named fields."""
    out: dict[str, Any] = {"metadata": {k: obj.metadata.get(k) for k in meta if obj.metadata.get(k) is not None}}
    for part, fields in parts.items():
        src = obj.get(part) or {}
        out[part] = {k: src[k] for k in fields if k in src}
    return out


def _lean(body: kopf.Body) -> dict[str, Any]:
    """The object without what no reconcile reads (managedFields, kopf's copy of the spec):
    most of the memory an index would otherwise hold."""
    meta = {k: v for k, v in body.metadata.items() if k != "managedFields"}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != DIFFBASE}
    return {**body, "metadata": {**meta, "annotations": annotations}}


@kopf.index(G, V, consts.HACLUSTERS)
def clusters_by_name(namespace: str | None, name: str | None, body: kopf.Body, **_: Any) -> Any:
    return {(namespace, name): _lean(body)}


@kopf.index(G, V, consts.HACLUSTERS)
def clusters_by_volume(namespace: str | None, spec: kopf.Spec, body: kopf.Body, **_: Any) -> Any:
    """(namespace, ReplicatedVolume name) -> the HAClusters that use it (one, when valid)."""
    vols = {r.get("name") for r in spec.get("resources") or [] if r.get("kind") == "volume"}
    return {(namespace, v): _lean(body) for v in vols if v}


@kopf.index(G, V, consts.REPLICATEDVOLUMES)
def volumes_by_name(namespace: str | None, name: str | None, body: kopf.Body, **_: Any) -> Any:
    return {(namespace, name): _lean(body)}


@kopf.index(G, V, consts.SERVICEMONITORS)
def monitors_by_cluster(namespace: str | None, spec: kopf.Spec, body: kopf.Body, **_: Any) -> Any:
    """(namespace, HACluster name) -> the ServiceMonitors that target it."""
    cluster = (spec.get("target") or {}).get("haCluster")
    return {(namespace, cluster): _lean(body)} if cluster else None


@kopf.index("", "v1", "pods", labels=MEMBER)
def members_by_cluster(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> Any:
    pod = _pick(body, ("name", "namespace", "uid", "labels", "annotations", "deletionTimestamp"),
                spec=("nodeName",), status=("phase",))
    return {(namespace, labels[consts.LABEL_CLUSTER]): pod}


@kopf.index("apps", "v1", "statefulsets", labels=MEMBER)
def statefulsets_by_name(namespace: str | None, name: str | None, body: kopf.Body, **_: Any) -> Any:
    sts = _pick(body, ("name", "namespace", "uid", "labels", "deletionTimestamp", "generation"),
                spec=("volumeClaimTemplates",), status=("updateRevision", "currentRevision", "observedGeneration"))
    return {(namespace, name): sts}


@kopf.index("", "v1", "persistentvolumeclaims", labels=MEMBER)
def claims_by_cluster(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> Any:
    claim = _pick(body, ("name", "namespace", "uid", "labels", "deletionTimestamp"),
                  spec=("volumeName", "storageClassName", "resources"), status=("phase", "capacity"))
    return {(namespace, labels[consts.LABEL_CLUSTER]): claim}


@kopf.index("", "v1", "nodes")
def nodes_by_name(name: str | None, body: kopf.Body, **_: Any) -> Any:
    """Cluster-scoped: keyed ("", name). Only what fencing reads: Ready and the taints."""
    ready = [c for c in (body.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"]
    node = _pick(body, ("name", "uid"), spec=("taints",))
    node["status"] = {"conditions": ready}
    return {("", name): node}


def reads(kube: Kube, handler_kwargs: dict[str, Any]) -> IndexReads:
    """The reads a handler makes, from the indexes kopf passes to every handler by name."""
    return IndexReads(kube, {n: handler_kwargs.get(n) for n in NAMES})
