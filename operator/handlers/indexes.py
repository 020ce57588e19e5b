"""kopf indexes: what handlers would otherwise list from the API server on every run."""

from __future__ import annotations

from typing import Any

import kopf

from hastack_common import consts

G, V = consts.GROUP, consts.VERSION


@kopf.index(G, V, consts.SERVICEMONITORS)
def monitors_by_cluster(namespace: str | None, spec: kopf.Spec, body: kopf.Body, **_: Any) -> Any:
    """(namespace, HACluster name) -> the ServiceMonitors that target it."""
    cluster = (spec.get("target") or {}).get("haCluster")
    return {(namespace, cluster): dict(body)} if cluster else None


def monitors_of(index: kopf.Index[Any, Any] | None, namespace: str, cluster: str) -> list[dict[str, Any]] | None:
    """None without an index (the reconcile then lists them from the API server)."""
    if index is None:
        return None
    items = [dict(m) for m in index.get((namespace, cluster), [])]
    return sorted(items, key=lambda m: m["metadata"]["name"])
