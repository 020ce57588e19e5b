"""ReplicatedVolume: accepted, validated against its HACluster, status from the replicas."""

from __future__ import annotations

from typing import Any

import kopf

from hastack_common import consts
from hastack_operator.handlers import indexes
from hastack_operator.handlers.common import run
from hastack_operator.reconcile import volume

G, V, P = consts.GROUP, consts.VERSION, consts.REPLICATEDVOLUMES


@kopf.on.resume(G, V, P, id="reconcile")
@kopf.on.create(G, V, P, id="reconcile")
@kopf.on.update(G, V, P, field="spec", id="reconcile")
@kopf.timer(G, V, P, interval=60, initial_delay=60, id="resync")
def reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **kwargs: Any) -> None:
    reads = indexes.reads(memo.kube, kwargs)
    run(P, "reconcile", body, patch, lambda: volume.reconcile(memo.kube, dict(body), reads=reads))


@kopf.on.update(G, V, P, field="spec", id="propagate")
def propagate(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    volume.propagate(memo.kube, dict(body), memo.image, reads=indexes.reads(memo.kube, kwargs))
