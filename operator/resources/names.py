"""Names of everything the operator creates for a HACluster (one place, so nothing drifts)."""

from __future__ import annotations

from hastack_common import consts


def members(cluster: str, replicas: int) -> list[str]:
    return [f"{cluster}-{i}" for i in range(replicas)]


def statefulset(cluster: str) -> str:
    return cluster


def peer_service(cluster: str) -> str:
    return f"{cluster}-peers"


def config_map(cluster: str) -> str:
    return f"{cluster}-hastack"


def secret(cluster: str) -> str:
    return f"{cluster}-hastack-auth"


def lease(cluster: str) -> str:
    return f"{cluster}-hastack"


def member_account(cluster: str) -> str:
    return f"{cluster}-member"


def pdb(cluster: str) -> str:
    return cluster


def peer_domain(cluster: str, namespace: str, cluster_domain: str = "cluster.local") -> str:
    return f"{peer_service(cluster)}.{namespace}.svc.{cluster_domain}"


def monitor_deployment(monitor: str) -> str:
    return f"hasm-{monitor}"


def cluster_labels(cluster: str) -> dict[str, str]:
    return {consts.LABEL_CLUSTER: cluster, "app.kubernetes.io/managed-by": "hastack",
            "app.kubernetes.io/part-of": "hastack"}


def selector(cluster: str) -> dict[str, str]:
    return {consts.LABEL_CLUSTER: cluster}
