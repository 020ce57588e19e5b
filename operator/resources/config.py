"""The members' ConfigMap: one YAML file per sidecar, rendered from the common typed models.

Sidecars reload it on change, so a new ServiceMonitor or new timings never roll a pod.
Every file is validated by its model here, so a spec the sidecars would refuse is
refused by the operator first, with the sidecar's own message.
"""

from __future__ import annotations

from typing import Any

import yaml

from hastack_common import config_blockrepl, config_heartbeat, config_mon, consts
from hastack_common.sizing import quantity_bytes
from hastack_operator.resources import names
from hastack_operator.resources.members import BACKING_DEVICE, DATA_DIR, METRICS_PORTS, SECRET_DIR
from hastack_operator.resources.spec import HACluster, ReplicatedVolume


def _dump(model: Any) -> str:
    return yaml.safe_dump(model.model_dump(by_alias=True, exclude_none=True), sort_keys=False)


def heartbeat(cluster: HACluster, volume: ReplicatedVolume | None = None,
              member: str = "") -> config_heartbeat.HeartbeatConfig:
    """``member``'s file (its own mount directory); the volume section only with a volume."""
    members = names.members(cluster.name, cluster.replicas)
    fo = cluster.failover
    preferred = fo.get("preferredMember")
    return config_heartbeat.HeartbeatConfig.model_validate({
        "cluster": cluster.name,
        "namespace": cluster.namespace,
        "members": members,
        "peerDomain": names.peer_domain(cluster.name, cluster.namespace),
        "leaseName": names.lease(cluster.name),
        "timing": cluster.heartbeat,
        "failover": {
            "autoFailback": bool(fo.get("autoFailback", False)),
            "preferredMember": members[preferred] if preferred is not None and preferred < len(members) else None,
            "maxFailures": fo.get("maxFailures", 3),
            "failureTimeout": fo.get("failureTimeout", "10m"),
        },
        "secretFile": f"{SECRET_DIR}/heartbeat",
        "metricsPort": METRICS_PORTS["heartbeat"],
        **({"volume": {
            "mountDir": f"{DATA_DIR}/{member}",
            "fsType": volume.filesystem.get("type", "ext4"),
            "fsck": bool(volume.filesystem.get("fsck", True)),
            "waitForGate": "120s",  # mount after the app containers' subPath binds exist
        }} if volume is not None else {}),
    })


def blockrepl(cluster: HACluster, volume: ReplicatedVolume, ordinal: int) -> config_blockrepl.BlockreplConfig:
    members = names.members(cluster.name, cluster.replicas)
    domain = names.peer_domain(cluster.name, cluster.namespace)
    size = quantity_bytes(volume.size)
    size = -(-size // (1 << 20)) * (1 << 20)
    sb = dict(volume.spec.get("splitBrain") or {})
    return config_blockrepl.BlockreplConfig.model_validate({
        "resource": f"{cluster.namespace}/{volume.name}",
        "nodeId": ordinal,
        "size": size,
        "disk": {"path": BACKING_DEVICE, "metadata": "internal"},
        "controlSocket": consts.BLOCKREPL_SOCKET,
        "net": {"listen": f"0.0.0.0:{consts.REPLICATION_PORT}", "protocol": volume.protocol,
                "secretFile": f"{SECRET_DIR}/replication"},
        "peers": [{"nodeId": i, "name": m, "address": f"{m}.{domain}:{consts.REPLICATION_PORT}"}
                  for i, m in enumerate(members) if i != ordinal],
        "sync": {"rate": quantity_bytes(volume.spec.get("syncRate", "100Mi")),
                 **({"verifySchedule": volume.spec["verify"]} if volume.spec.get("verify") else {})},
        "splitBrain": sb,
        "fencing": "resource-only",
        # blockrepl's fence-peer handler in a cluster: heartbeat records the peer Outdated on the Lease
        "handlers": {"outdatePeerSocket": consts.HEARTBEAT_SOCKET},
        "metrics": {"listen": f"0.0.0.0:{METRICS_PORTS['blockrepl']}"},
    })


def monitor(body: dict[str, Any]) -> config_mon.MonitorConfig:
    meta = body["metadata"]
    return config_mon.MonitorConfig.model_validate({
        "name": meta["name"], "namespace": meta.get("namespace", "default"), "uid": meta.get("uid"),
        "spec": body["spec"]})


def mon(monitors: list[dict[str, Any]], alerting: str) -> config_mon.MonConfig:
    return config_mon.MonConfig.model_validate({
        "monitors": [monitor(m).model_dump(by_alias=True, exclude_none=True) for m in monitors],
        "alerting": alerting,
        "metricsAddress": f"0.0.0.0:{METRICS_PORTS['mon']}",
    })


def config_map(cluster: HACluster, volume: ReplicatedVolume | None,
               monitors: list[dict[str, Any]]) -> dict[str, Any]:
    data = {"mon.yaml": _dump(mon(monitors, "active"))}
    for i, member in enumerate(names.members(cluster.name, cluster.replicas)):
        data[f"heartbeat-{i}.yaml"] = _dump(heartbeat(cluster, volume, member))
        if volume is not None:
            data[f"blockrepl-{i}.yaml"] = _dump(blockrepl(cluster, volume, i))
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": names.config_map(cluster.name), "namespace": cluster.namespace,
                     "labels": names.cluster_labels(cluster.name)},
        "data": data,
    }
