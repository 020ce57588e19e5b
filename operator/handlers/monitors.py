"""ServiceMonitor (servicemonitors.hastack.io): configuration for the mon sidecars."""

from __future__ import annotations

from typing import Any

import kopf

from hastack_common import consts
from hastack_operator.handlers import indexes
from hastack_operator.handlers.common import run
from hastack_operator.reconcile import hacluster, monitor, status_patch

G, V, P = consts.GROUP, consts.VERSION, consts.SERVICEMONITORS


def _reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, fresh: bool, kwargs: dict[str, Any]) -> None:
    reads = indexes.reads(memo.kube, kwargs)
    run(P, "reconcile", body, patch,
        lambda: monitor.reconcile(memo.kube, dict(body), memo.image, reads=reads, fresh=fresh))


@kopf.on.resume(G, V, P, id="reconcile")
@kopf.on.create(G, V, P, id="reconcile")
@kopf.on.update(G, V, P, field="spec", id="reconcile")
def reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, reason: str, **kwargs: Any) -> None:
    _reconcile(body, patch, memo, reason == kopf.Reason.RESUME, kwargs)


def _standalone(spec: kopf.Spec, **_: Any) -> bool:
    return not (spec.get("target") or {}).get("haCluster")


# Only standalone monitors have a resync of their own: a monitor of a HACluster lives in that
# cluster's ConfigMap (re-applied by the cluster's resync) and its status is refreshed with the
# cluster's; without a timer, kopf puts no finalizer on it (two writes fewer per monitor).
@kopf.timer(G, V, P, interval=300, initial_delay=300, id="resync", when=_standalone)
def resync(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **kwargs: Any) -> None:
    _reconcile(body, patch, memo, True, kwargs)


@kopf.on.event(G, V, P, id="removed", when=lambda type, **_: type == "DELETED")
def removed(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """Drop the monitor from its cluster's mon configuration. An event handler, not a deletion
    handler: a monitor of a HACluster carries no finalizer, so it is gone when this runs."""
    monitor.forget(body.metadata.uid or "")
    status_patch.forget_status(consts.API_VERSION, "ServiceMonitor", body.metadata.namespace or "",
                               body.metadata.name or "")
    name = ((body.get("spec") or {}).get("target") or {}).get("haCluster")
    reads = indexes.reads(memo.kube, kwargs)
    cluster = reads.cluster(body.metadata.namespace or "", name) if name else None
    if cluster is not None:
        hacluster.refresh_config(memo.kube, cluster, memo.image, reads)
