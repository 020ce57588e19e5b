"""Between full reconciles: status from the member pods' reports, plus the two ongoing duties
that follow from it (fencing lost nodes, the next rolling-update step). Applies no objects."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hastack_common import consts
from hastack_operator.k8s import Kube
from hastack_operator.reconcile import actions, monitor, volume
from hastack_operator.reconcile.reads import ApiReads, Reads
from hastack_operator.reconcile.status_patch import write_status
from hastack_operator.resources import monitor_objects, names
from hastack_operator.resources import status as status_builder
from hastack_operator.resources.conditions import Conditions
from hastack_operator.resources.spec import HACluster


def cluster(kube: Kube, body: dict[str, Any], now: dt.datetime | None = None,
            reads: Reads | None = None) -> dict[str, Any]:
    now = now or dt.datetime.now(dt.UTC)
    reads = reads or ApiReads(kube)
    c = HACluster.from_body(body)
    old = dict(body.get("status") or {})
    if old.get("observedGeneration") != c.generation:
        return old  # the reconcile of this generation has not run yet: it writes status first
    pods = reads.pods(c.namespace, c.name)
    members = [status_builder.member_from_pod(p, now) for p in pods]
    fence = actions.fencing_plan(kube, reads, c, pods, now)
    step = actions.rollout_step(c, body, pods, members, reads.statefulset(c.namespace, names.statefulset(c.name)))
    if (fence or step.action in ("delete", "switchover")) and not reads.fresh:
        # about to delete or fence: decide again from the API server, not from the watch
        return cluster(kube, body, now, ApiReads(kube))
    actions.perform_fencing(kube, c, pods, fence)
    actions.perform_rollout(kube, c, pods, step)
    status = status_builder.cluster_status(c.generation, old, members, names.members(c.name, c.replicas), now)
    conds = Conditions(c.generation, [*status["conditions"],
                                      *[x for x in old.get("conditions") or [] if x.get("type") == "Accepted"]],
                       now=now)
    actions.update_condition(conds, step)
    status["conditions"] = conds.to_list()
    return status


def cluster_of(pod: dict[str, Any]) -> tuple[str, str] | None:
    """(namespace, HACluster) of a member pod, or None."""
    meta = pod.get("metadata") or {}
    name = (meta.get("labels") or {}).get(consts.LABEL_CLUSTER)
    return (meta["namespace"], name) if name and meta.get("namespace") else None


def from_pod(kube: Kube, pod: dict[str, Any], reads: Reads | None = None) -> None:
    meta = pod.get("metadata") or {}
    ns = meta.get("namespace")
    standalone = (meta.get("labels") or {}).get(monitor_objects.LABEL_MONITOR)
    if standalone and ns:
        body = kube.get(consts.API_VERSION, "ServiceMonitor", ns, standalone)
        if body is not None:
            monitor.refresh(kube, body)
        return
    where = cluster_of(pod)
    if where is not None:
        refresh_cluster(kube, *where, reads=reads)


def refresh_cluster(kube: Kube, ns: str, name: str, reads: Reads | None = None) -> None:
    """A member changed: the status of its HACluster, of the monitors probing it, of its volume."""
    reads = reads or ApiReads(kube)
    body = reads.cluster(ns, name)
    if body is None:
        return
    write_status(kube, consts.API_VERSION, "HACluster", body, cluster(kube, body, reads=reads))
    refresh_dependents(kube, body, reads)


def refresh_dependents(kube: Kube, body: dict[str, Any], reads: Reads | None = None) -> None:
    """The status of the monitors probing a HACluster and of its volume (they have no timer of
    their own: the cluster's status timer and its members' events keep them current)."""
    reads = reads or ApiReads(kube)
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    for mon in reads.monitors(ns, name):
        monitor.refresh(kube, mon, reads=reads)
    ref = HACluster.from_body(body).resource("volume")
    if ref is not None:
        refresh_volume(kube, ns, ref.name, reads)


def refresh_volume(kube: Kube, ns: str, name: str, reads: Reads | None = None) -> None:
    reads = reads or ApiReads(kube)
    rv = reads.volume(ns, name)
    if rv is None:
        return
    write_status(kube, consts.API_VERSION, "ReplicatedVolume", rv, volume.reconcile(kube, rv, reads=reads))
