"""The member StatefulSet: the user's containers behind the start gate, plus hastack's sidecars.

Shape fixed by DESIGN "Inside a member pod": native sidecars (blockrepl, heartbeat, mon)
in that order, then fsinit; the data directory a hostPath (never an emptyDir, which the
kubelet empties through a live mount); the backing PVC a raw block device.
"""

from __future__ import annotations

import copy
from typing import Any

from hastack_common import consts
from hastack_common.sizing import pvc_quantity
from hastack_operator.resources import names
from hastack_operator.resources.spec import HACluster, ReplicatedVolume

CONFIG_DIR = "/etc/hastack/config"
SECRET_DIR = "/etc/hastack/secret"
DATA_DIR = "/var/lib/hastack/data"  # heartbeat's view of the hostPath; it mounts at DATA_DIR/<member>
BACKING_DEVICE = "/dev/hastack/backing"
GATE_SOURCE = "/usr/local/bin/hastack-gate"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
METRICS_PORTS = {"blockrepl": 9781, "heartbeat": 9694, "mon": 9799}


def _env() -> list[dict[str, Any]]:
    def field(path: str) -> dict[str, Any]:
        return {"valueFrom": {"fieldRef": {"fieldPath": path}}}

    return [
        {"name": "HASTACK_POD_NAME", **field("metadata.name")},
        {"name": "HASTACK_NAMESPACE", **field("metadata.namespace")},
        {"name": "HASTACK_NODE_NAME", **field("spec.nodeName")},
        {"name": "HASTACK_POD_INDEX", **field(f"metadata.labels['{POD_INDEX_LABEL}']")},
    ]


def _mount(name: str, path: str, read_only: bool = False, propagation: str | None = None) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, "mountPath": path}
    if read_only:
        m["readOnly"] = True
    if propagation:
        m["mountPropagation"] = propagation
    return m


def _sidecar(component: str, image: str, *, privileged: bool, mounts: list[dict[str, Any]],
             ports: list[dict[str, Any]], config: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    port = METRICS_PORTS[component]
    c: dict[str, Any] = {
        "name": component,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "restartPolicy": "Always",  # a native sidecar: started in order, stopped after the app
        "command": ["hastack", component, "--config", f"{CONFIG_DIR}/{config}"],
        "env": _env(),
        "ports": [*ports, {"name": f"{component[:5]}-metrics", "containerPort": port, "protocol": "TCP"}],
        "volumeMounts": [_mount("hastack-run", consts.RUN_DIR), _mount("hastack-config", CONFIG_DIR, True),
                         *mounts],
        "securityContext": {"privileged": True} if privileged else {
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}},
        "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}},
    }
    c.update(extra or {})
    return c


def _gated(container: dict[str, Any], cluster: HACluster, volume: ReplicatedVolume | None) -> dict[str, Any]:
    c = copy.deepcopy(container)
    c["command"] = [consts.GATE_BINARY, "--name", c["name"], "--", *c["command"]]
    mounts = list(c.get("volumeMounts") or [])
    mounts += [_mount("hastack-bin", "/hastack/bin", read_only=True), _mount("hastack-run", consts.RUN_DIR)]
    ref = cluster.resource("volume")
    if volume is not None and ref is not None and ref.mount_path:
        # one directory per member, even where nodes share a filesystem (the lab): <hostPath>/<member>
        mounts.append({**_mount("hastack-data", ref.mount_path, propagation="HostToContainer"),
                       "subPathExpr": "$(HASTACK_POD_NAME)"})
        env = [e for e in c.get("env") or [] if e.get("name") != "HASTACK_POD_NAME"]
        c["env"] = [*env, _env()[0]]
    c["volumeMounts"] = mounts
    return c


def _init_containers(cluster: HACluster, volume: ReplicatedVolume | None, image: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{
        "name": "gate-install",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["cp", GATE_SOURCE, consts.GATE_BINARY],
        "volumeMounts": [_mount("hastack-bin", "/hastack/bin")],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }]
    if volume is not None:
        out.append(_sidecar(
            "blockrepl", image, privileged=True, mounts=[_mount("hastack-secret", SECRET_DIR, True)],
            ports=[{"name": "replication", "containerPort": consts.REPLICATION_PORT, "protocol": "TCP"}],
            config="blockrepl-$(HASTACK_POD_INDEX).yaml",
            extra={"volumeDevices": [{"name": "backing", "devicePath": BACKING_DEVICE}]}))
    out.append(_sidecar(
        "heartbeat", image, privileged=True,
        mounts=[_mount("hastack-secret", SECRET_DIR, True),
                _mount("hastack-data", DATA_DIR, propagation="Bidirectional")],
        ports=[{"name": "heartbeat", "containerPort": cluster.heartbeat_port, "protocol": "UDP"}],
        config="heartbeat-$(HASTACK_POD_INDEX).yaml"))
    out.append(_sidecar("mon", image, privileged=False, mounts=[], ports=[], config="mon.yaml"))
    if volume is not None:
        fs = volume.filesystem
        argv = ["hastack", "fsinit", "--fs-type", fs.get("type", "ext4"), "--label", volume.name[:12]]
        argv += [f"--mkfs-option={o}" for o in fs.get("mkfsOptions") or []]
        out.append({
            "name": "fsinit", "image": image, "imagePullPolicy": "IfNotPresent", "command": argv,
            "env": _env(), "volumeMounts": [_mount("hastack-run", consts.RUN_DIR)],
            "securityContext": {"privileged": True},
        })
    return out


def _volumes(cluster: HACluster) -> list[dict[str, Any]]:
    return [
        {"name": "hastack-run", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
        {"name": "hastack-bin", "emptyDir": {"sizeLimit": "64Mi"}},
        {"name": "hastack-data", "hostPath": {"path": cluster.host_mount_dir, "type": "DirectoryOrCreate"}},
        {"name": "hastack-config", "configMap": {"name": names.config_map(cluster.name)}},
        {"name": "hastack-secret", "secret": {"secretName": names.secret(cluster.name), "defaultMode": 0o400}},
    ]


def pod_template(cluster: HACluster, volume: ReplicatedVolume | None, image: str) -> dict[str, Any]:
    user = cluster.template
    user_meta = dict(user.get("metadata") or {})
    user_spec = copy.deepcopy(user.get("spec") or {})
    labels = {**(user_meta.get("labels") or {}), **names.selector(cluster.name)}
    spec: dict[str, Any] = {
        **{k: v for k, v in user_spec.items() if k not in ("containers", "initContainers", "volumes")},
        "serviceAccountName": names.member_account(cluster.name),
        "terminationGracePeriodSeconds": max(60, int(user_spec.get("terminationGracePeriodSeconds", 60))),
        "initContainers": [*(user_spec.get("initContainers") or []), *_init_containers(cluster, volume, image)],
        "containers": [_gated(c, cluster, volume) for c in user_spec["containers"]],
        "volumes": [*(user_spec.get("volumes") or []), *_volumes(cluster)],
        "affinity": {**(user_spec.get("affinity") or {}), "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [{
                "topologyKey": "kubernetes.io/hostname",
                "labelSelector": {"matchLabels": names.selector(cluster.name)},
            }]}},
    }
    meta: dict[str, Any] = {"labels": labels}
    if user_meta.get("annotations"):
        meta["annotations"] = dict(user_meta["annotations"])
    return {"metadata": meta, "spec": spec}


def statefulset(cluster: HACluster, volume: ReplicatedVolume | None, image: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": cluster.replicas,
        "serviceName": names.peer_service(cluster.name),
        "podManagementPolicy": "Parallel",
        "updateStrategy": {"type": "OnDelete"},  # the operator rolls: standbys, switchover, old active
        "selector": {"matchLabels": names.selector(cluster.name)},
        "template": pod_template(cluster, volume, image),
    }
    if volume is not None:
        claim: dict[str, Any] = {
            "metadata": {"name": "backing", "labels": names.selector(cluster.name)},
            "spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": "Block",
                     "resources": {"requests": {"storage": pvc_quantity(volume.size)}}},
        }
        if volume.storage_class:
            claim["spec"]["storageClassName"] = volume.storage_class
        spec["volumeClaimTemplates"] = [claim]
        policy = volume.reclaim_policy
        spec["persistentVolumeClaimRetentionPolicy"] = {"whenDeleted": policy, "whenScaled": "Retain"}
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": names.statefulset(cluster.name), "namespace": cluster.namespace,
                     "labels": names.cluster_labels(cluster.name)},
        "spec": spec,
    }
