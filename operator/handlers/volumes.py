"""ReplicatedVolume: accepted, validated against its HACluster, status from the replicas.

No timer of its own (a timer would make kopf put a finalizer on every volume, two more writes
per object): the status of a volume in use is refreshed with its HACluster's, and a volume
whose HACluster is deleted is refreshed then."""

from __future__ import annotations

from typing import Any

import kopf

from hastack_common import consts
from hastack_operator.handlers import indexes
from hastack_operator.handlers.common import run
from hastack_operator.reconcile import status_only, volume

G, V, P = consts.GROUP, consts.VERSION, consts.REPLICATEDVOLUMES


@kopf.on.resume(G, V, P, id="reconcile")
@kopf.on.create(G, V, P, id="reconcile")
@kopf.on.update(G, V, P, field="spec", id="reconcile")
def reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **kwargs: Any) -> None:
    reads = indexes.reads(memo.kube, kwargs)
    run(P, "reconcile", body, patch, lambda: volume.reconcile(memo.kube, dict(body), reads=reads))


@kopf.on.update(G, V, P, field="spec", id="propagate")
def propagate(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    volume.propagate(memo.kube, dict(body), memo.image, reads=indexes.reads(memo.kube, kwargs))


@kopf.on.event(G, V, consts.HACLUSTERS, id="volume-freed", when=lambda type, **_: type == "DELETED")
def volume_freed(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """A HACluster is gone: its volume is no longer attached (or no longer used twice)."""
    reads = indexes.reads(memo.kube, kwargs)
    for r in (body.get("spec") or {}).get("resources") or []:
        if r.get("kind") == "volume" and r.get("name"):
            status_only.refresh_volume(memo.kube, body.metadata.namespace or "", r["name"], reads)
