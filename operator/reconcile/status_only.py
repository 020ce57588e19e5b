"""Between full reconciles: status from the member pods' reports, plus the two ongoing duties
that follow from it (fencing lost nodes, the next rolling-update step). Applies no objects."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hastack_common import consts
from hastack_operator.k8s import Kube
from hastack_operator.reconcile import actions, monitor, volume
from hastack_operator.reconcile.status_patch import status_changed
from hastack_operator.resources import monitor_objects, names
from hastack_operator.resources import status as status_builder
from hastack_operator.resources.conditions import Conditions
from hastack_operator.resources.spec import HACluster


def cluster(kube: Kube, body: dict[str, Any], now: dt.datetime | None = None) -> dict[str, Any]:
    now = now or dt.datetime.now(dt.UTC)
    c = HACluster.from_body(body)
    old = dict(body.get("status") or {})
    if old.get("observedGeneration") != c.generation:
        return old  # the reconcile of this generation has not run yet: it writes status first
    pods = kube.list("v1", "Pod", c.namespace, f"{consts.LABEL_CLUSTER}={c.name}")
    members = [status_builder.member_from_pod(p, now) for p in pods]
    status = status_builder.cluster_status(c.generation, old, members, names.members(c.name, c.replicas), now)
    conds = Conditions(c.generation, [*status["conditions"],
                                      *[x for x in old.get("conditions") or [] if x.get("type") == "Accepted"]],
                       now=now)
    actions.fence_lost_nodes(kube, c, pods, now)
    step = actions.rolling_update(kube, c, body, pods, members)
    if step.action == "none":
        conds.error("Updating", "UpToDate", step.reason)
    else:
        conds.success("Updating", "RollingUpdate", f"{step.action} {step.member}: {step.reason}".strip())
    status["conditions"] = conds.to_list()
    return status


def from_pod(kube: Kube, pod: dict[str, Any]) -> None:
    meta = pod.get("metadata") or {}
    ns = meta.get("namespace")
    standalone = (meta.get("labels") or {}).get(monitor_objects.LABEL_MONITOR)
    if standalone and ns:
        body = kube.get(consts.API_VERSION, "ServiceMonitor", ns, standalone)
        if body is not None:
            monitor.refresh(kube, body)
        return
    name = (meta.get("labels") or {}).get(consts.LABEL_CLUSTER)
    body = kube.get(consts.API_VERSION, "HACluster", ns, name) if name and ns else None
    if body is None:
        return
    new = cluster(kube, body)
    if status_changed(dict(body.get("status") or {}), new):
        kube.patch(consts.API_VERSION, "HACluster", ns, name, {"status": new}, subresource="status")
    for mon in kube.list(consts.API_VERSION, "ServiceMonitor", ns):
        if ((mon.get("spec") or {}).get("target") or {}).get("haCluster") == name:
            monitor.refresh(kube, mon)
    ref = HACluster.from_body(body).resource("volume")
    rv = kube.get(consts.API_VERSION, "ReplicatedVolume", ns, ref.name) if ref else None
    if ref is not None and rv is not None:
        new_rv = volume.reconcile(kube, rv)
        if status_changed(dict(rv.get("status") or {}), new_rv):
            kube.patch(consts.API_VERSION, "ReplicatedVolume", ns, ref.name, {"status": new_rv},
                       subresource="status")
