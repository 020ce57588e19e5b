"""Reconcile a ReplicatedVolume: its replicas live in the member pods of the HACluster using it,
so it owns no objects itself; its status is aggregated from those members' reports."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hastack_common import consts
from hastack_operator.k8s import Kube
from hastack_operator.reconcile import hacluster
from hastack_operator.reconcile.reads import ApiReads, Reads
from hastack_operator.reconcile.status_patch import write_status
from hastack_operator.resources import names
from hastack_operator.resources import status as status_builder
from hastack_operator.resources.conditions import Conditions
from hastack_operator.resources.spec import HACluster


def reconcile(kube: Kube, body: dict[str, Any], now: dt.datetime | None = None,
              reads: Reads | None = None) -> dict[str, Any]:
    now = now or dt.datetime.now(dt.UTC)
    reads = reads or ApiReads(kube)
    meta = body["metadata"]
    generation = int(meta.get("generation") or 0)
    old = dict(body.get("status") or {})
    users = reads.clusters_using(meta["namespace"], meta["name"])
    if len(users) != 1:
        conds = Conditions(generation, list(old.get("conditions") or []), now=now)
        if users:
            names_ = ", ".join(sorted(u["metadata"]["name"] for u in users))
            conds.error("Accepted", "UsedTwice", f"a ReplicatedVolume serves one HACluster; used by {names_}")
        else:
            conds.success("Accepted", "SpecAccepted", "the spec is valid")
            conds.error("Ready", "NotAttached", "no HACluster uses this volume yet")
        return {"observedGeneration": generation, "cluster": "", "conditions": conds.to_list()}
    cluster = HACluster.from_body(users[0])
    pods = reads.pods(cluster.namespace, cluster.name)
    members = [status_builder.member_from_pod(p, now) for p in pods]
    status = status_builder.volume_status(generation, old, cluster.name, members,
                                          names.members(cluster.name, cluster.replicas), now)
    conds = Conditions(generation, status["conditions"], now=now)
    conds.success("Accepted", "SpecAccepted", f"used by HACluster {cluster.name}")
    status["conditions"] = conds.to_list()
    return status


def propagate(kube: Kube, body: dict[str, Any], image: str, reads: Reads | None = None) -> None:
    """A volume's spec changed (size, protocol, sync rate, policies): reconcile the HACluster that
    uses it, whose ConfigMap and PVCs carry those settings to the replicas."""
    reads = reads or ApiReads(kube)
    users = reads.clusters_using(body["metadata"]["namespace"], body["metadata"]["name"])
    if len(users) != 1:
        return
    outcome = hacluster.reconcile(kube, users[0], image, reads=reads, fresh=False)
    write_status(kube, consts.API_VERSION, "HACluster", users[0], outcome.status)
