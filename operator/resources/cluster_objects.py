"""The HACluster's other children: Services, Lease, PDB, the members' identity and RBAC, Secret."""

from __future__ import annotations

import base64
import secrets
from typing import Any

from hastack_common import consts
from hastack_operator.resources import names
from hastack_operator.resources.spec import HACluster


def _meta(cluster: HACluster, name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": cluster.namespace, "labels": names.cluster_labels(cluster.name), **extra}


def peer_service(cluster: HACluster, with_volume: bool) -> dict[str, Any]:
    ports = [{"name": "heartbeat", "port": cluster.heartbeat_port, "protocol": "UDP"}]
    if with_volume:
        ports.append({"name": "replication", "port": consts.REPLICATION_PORT, "protocol": "TCP"})
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": _meta(cluster, names.peer_service(cluster.name)),
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                 "selector": names.selector(cluster.name), "ports": ports},
    }


def active_service(cluster: HACluster) -> dict[str, Any] | None:
    ref = cluster.resource("service")
    if ref is None:
        return None
    port = ref.port or 80
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": _meta(cluster, ref.name),
        "spec": {
            "selector": {**names.selector(cluster.name), consts.LABEL_ROLE: consts.ROLE_ACTIVE},
            "ports": [{"name": "service", "port": port, "targetPort": ref.target_port or port, "protocol": "TCP"}],
        },
    }


def lease(cluster: HACluster) -> dict[str, Any]:
    """Metadata only: the members own the Lease's spec (DESIGN "Lease")."""
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": _meta(cluster, names.lease(cluster.name))}


def pdb(cluster: HACluster) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": _meta(cluster, names.pdb(cluster.name)),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": names.selector(cluster.name)}},
    }


def member_account(cluster: HACluster) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": _meta(cluster, names.member_account(cluster.name))}


def member_role(cluster: HACluster) -> dict[str, Any]:
    """Least privilege: their own Lease, their own member pods by name, Events."""
    members = names.members(cluster.name, cluster.replicas)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": _meta(cluster, names.member_account(cluster.name)),
        "rules": [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "resourceNames": [names.lease(cluster.name)], "verbs": ["get", "watch", "update", "patch"]},
            {"apiGroups": [""], "resources": ["pods"], "resourceNames": members,
             "verbs": ["get", "patch"]},
            {"apiGroups": [consts.GROUP], "resources": ["haclusters"], "resourceNames": [cluster.name],
             "verbs": ["get", "patch"]},
            {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        ],
    }


def member_role_binding(cluster: HACluster) -> dict[str, Any]:
    account = names.member_account(cluster.name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": _meta(cluster, account),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": cluster.namespace}],
    }


SECRET_KEYS = ("heartbeat", "replication")


def auth_secret(cluster: HACluster) -> dict[str, Any]:
    """Fresh random keys; applied only when the Secret does not exist (never silently rotated)."""
    data = {k: base64.b64encode(base64.b64encode(secrets.token_bytes(32))).decode() for k in SECRET_KEYS}
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": _meta(cluster, names.secret(cluster.name)), "data": data}
