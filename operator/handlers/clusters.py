"""HACluster: one level-triggered reconcile; member pods' reports refresh the status."""

from __future__ import annotations

from typing import Any

import kopf

from hastack_common import consts
from hastack_operator.handlers import indexes
from hastack_operator.handlers.common import run
from hastack_operator.reconcile import deletion, hacluster, status_only

G, V, P = consts.GROUP, consts.VERSION, consts.HACLUSTERS


@kopf.on.resume(G, V, P, id="reconcile")
@kopf.on.create(G, V, P, id="reconcile")
@kopf.on.update(G, V, P, field="spec", id="reconcile")
@kopf.timer(G, V, P, interval=300, initial_delay=300, id="resync")
def reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo,
              monitors_by_cluster: kopf.Index[Any, Any] | None = None,
              **_: Any) -> None:
    monitors = indexes.monitors_of(monitors_by_cluster, body.metadata.namespace or "", body.metadata.name or "")

    def step() -> dict[str, Any]:
        outcome = hacluster.reconcile(memo.kube, dict(body), memo.image, monitors=monitors)
        if outcome.retry_after:
            patch.status.update(outcome.status)
            raise kopf.TemporaryError(outcome.status["conditions"][0]["message"], delay=outcome.retry_after)
        return outcome.status

    run(P, "reconcile", body, patch, step)


@kopf.timer(G, V, P, interval=15, initial_delay=15, id="status")
def refresh_status(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    run(P, "status", body, patch, lambda: status_only.cluster(memo.kube, dict(body)))


@kopf.on.event("", "v1", "pods", labels={consts.LABEL_CLUSTER: kopf.PRESENT}, id="member")
@kopf.on.event("", "v1", "pods", labels={"hastack.io/monitor": kopf.PRESENT}, id="standalone-mon")
def member_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A member published a report (or changed phase): refresh its cluster's and volume's status."""
    status_only.from_pod(memo.kube, dict(body))


@kopf.on.delete(G, V, P, id="cleanup")
def cleanup(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    remaining = deletion.members_remaining(memo.kube, dict(body))
    if remaining:
        raise kopf.TemporaryError(f"waiting for members to stop: {', '.join(remaining)}", delay=2)
