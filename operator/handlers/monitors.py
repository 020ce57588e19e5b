"""ServiceMonitor (servicemonitors.hastack.io): configuration for the mon sidecars."""

from __future__ import annotations

from typing import Any

import kopf

from hastack_common import consts
from hastack_operator.handlers import indexes
from hastack_operator.handlers.common import run
from hastack_operator.reconcile import hacluster, monitor

G, V, P = consts.GROUP, consts.VERSION, consts.SERVICEMONITORS


@kopf.on.resume(G, V, P, id="reconcile")
@kopf.on.create(G, V, P, id="reconcile")
@kopf.on.update(G, V, P, field="spec", id="reconcile")
@kopf.timer(G, V, P, interval=300, initial_delay=300, id="resync")
def reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo,
              monitors_by_cluster: kopf.Index[Any, Any] | None = None,
              **_: Any) -> None:
    cluster = ((body.get("spec") or {}).get("target") or {}).get("haCluster") or ""
    monitors = indexes.monitors_of(monitors_by_cluster, body.metadata.namespace or "", cluster)
    run(P, "reconcile", body, patch, lambda: monitor.reconcile(memo.kube, dict(body), memo.image, monitors=monitors))


@kopf.on.delete(G, V, P, optional=True)
def removed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Drop the monitor from its cluster's mon configuration (best effort: no finalizer)."""
    name = ((body.get("spec") or {}).get("target") or {}).get("haCluster")
    cluster = memo.kube.get(consts.API_VERSION, "HACluster", body.metadata.namespace, name) if name else None
    if cluster is not None:
        hacluster.refresh_config(memo.kube, cluster, memo.image)
