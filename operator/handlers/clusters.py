"""HACluster: one level-triggered reconcile; member pods' reports refresh the status."""

from __future__ import annotations

from typing import Any

import kopf

from hastack_common import consts
from hastack_operator.handlers import indexes
from hastack_operator.handlers.common import run
from hastack_operator.reconcile import deletion, hacluster, status_only, status_patch
from hastack_operator.reconcile.coalesce import Coalescer

G, V, P = consts.GROUP, consts.VERSION, consts.HACLUSTERS

_refreshing = Coalescer()


def _reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, fresh: bool, kwargs: dict[str, Any]) -> None:
    reads = indexes.reads(memo.kube, kwargs)

    def step() -> dict[str, Any]:
        outcome = hacluster.reconcile(memo.kube, dict(body), memo.image, reads=reads, fresh=fresh)
        if outcome.retry_after:
            patch.status.update(outcome.status)
            raise kopf.TemporaryError(outcome.status["conditions"][0]["message"], delay=outcome.retry_after)
        return outcome.status

    run(P, "reconcile", body, patch, step)


@kopf.on.resume(G, V, P, id="reconcile")
@kopf.on.create(G, V, P, id="reconcile")
@kopf.on.update(G, V, P, field="spec", id="reconcile")
def reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, reason: str, **kwargs: Any) -> None:
    # after a restart every object is applied again; within a run, unchanged manifests are skipped
    _reconcile(body, patch, memo, reason == kopf.Reason.RESUME, kwargs)


@kopf.timer(G, V, P, interval=300, initial_delay=300, id="resync")
def resync(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **kwargs: Any) -> None:
    """Every object applied again: what was changed or deleted behind the operator's back returns."""
    _reconcile(body, patch, memo, True, kwargs)


@kopf.timer(G, V, P, interval=15, initial_delay=15, id="status")
def refresh_status(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **kwargs: Any) -> None:
    """Reports go stale without any event: the cluster's, its monitors' and its volume's status."""
    reads = indexes.reads(memo.kube, kwargs)
    run(P, "status", body, patch, lambda: status_only.cluster(memo.kube, dict(body), reads=reads))
    status_only.refresh_dependents(memo.kube, dict(body), reads)


@kopf.on.event("", "v1", "pods", labels={consts.LABEL_CLUSTER: kopf.PRESENT}, id="member")
@kopf.on.event("", "v1", "pods", labels={"hastack.io/monitor": kopf.PRESENT}, id="standalone-mon")
def member_changed(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """A member published a report (or changed phase): refresh its cluster's and volume's status.
    Events of one cluster's members that arrive while its refresh runs make one more refresh."""
    pod = dict(body)
    where = status_only.cluster_of(pod)
    if where is None:
        status_only.from_pod(memo.kube, pod)
        return
    reads = indexes.reads(memo.kube, kwargs)
    _refreshing.run(where, lambda: status_only.refresh_cluster(memo.kube, *where, reads=reads))


@kopf.on.delete(G, V, P, id="cleanup")
def cleanup(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    remaining = deletion.members_remaining(memo.kube, dict(body))
    if remaining:
        raise kopf.TemporaryError(f"waiting for members to stop: {', '.join(remaining)}", delay=2)
    hacluster.forget(body.metadata.uid or "")
    status_patch.forget_status(consts.API_VERSION, "HACluster", body.metadata.namespace or "", body.metadata.name or "")
