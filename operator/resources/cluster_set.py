"""Everything a HACluster wants to exist, as one list (pure): the input to apply and prune."""

from __future__ import annotations

from typing import Any

from hastack_common import consts
from hastack_operator.resources import cluster_objects as objs
from hastack_operator.resources import config, members
from hastack_operator.resources.spec import HACluster, ReplicatedVolume

# Kinds the operator prunes when no longer desired (the Secret never: keys are not rotated silently).
PRUNABLE = (("v1", "Service"), ("v1", "ConfigMap"), ("v1", "ServiceAccount"),
            ("apps/v1", "StatefulSet"), ("policy/v1", "PodDisruptionBudget"),
            ("coordination.k8s.io/v1", "Lease"),
            ("rbac.authorization.k8s.io/v1", "Role"), ("rbac.authorization.k8s.io/v1", "RoleBinding"))


def owner_reference(cluster: HACluster) -> dict[str, Any]:
    return {"apiVersion": consts.API_VERSION, "kind": "HACluster", "name": cluster.name, "uid": cluster.uid,
            "controller": True, "blockOwnerDeletion": True}


def owned(obj: dict[str, Any], cluster: HACluster) -> dict[str, Any]:
    obj["metadata"]["ownerReferences"] = [owner_reference(cluster)]
    return obj


def desired(cluster: HACluster, volume: ReplicatedVolume | None, monitors: list[dict[str, Any]],
            image: str) -> list[dict[str, Any]]:
    wanted = [
        objs.member_account(cluster), objs.member_role(cluster), objs.member_role_binding(cluster),
        config.config_map(cluster, volume, monitors),
        objs.peer_service(cluster, volume is not None),
        objs.active_service(cluster),
        objs.lease(cluster),
        objs.pdb(cluster),
        members.statefulset(cluster, volume, image),
    ]
    return [owned(o, cluster) for o in wanted if o is not None]


def key(obj: dict[str, Any]) -> tuple[str, str, str]:
    return obj["apiVersion"], obj["kind"], obj["metadata"]["name"]
