"""What the lab adds to a bare cluster: CoreDNS as a pod, and loop-device disks offered as
`local` Block PersistentVolumes with node affinity behind a WaitForFirstConsumer class.
Manifest builders are pure; `disks` attaches loop devices (idempotent, by backing file)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.lab_net import DNS_SERVICE_IP

STORAGE_CLASS = "hastack-local"
DNS_LABELS = {"k8s-app": "kube-dns"}

COREFILE = """.:53 {
    errors
    health :8080
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    cache 5
    reload
}
"""


def coredns_manifests(image: str) -> list[dict[str, Any]]:
    ns = "kube-system"
    meta = {"name": "coredns", "namespace": ns}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:coredns",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": ns}],
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"Corefile": COREFILE}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": DNS_LABELS},
                "template": {
                    "metadata": {"labels": DNS_LABELS},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "dnsPolicy": "Default",
                        "containers": [
                            {
                                "name": "coredns",
                                "image": image,
                                "imagePullPolicy": "Never",
                                "args": ["-conf", "/etc/coredns/Corefile"],
                                "ports": [
                                    {"containerPort": 53, "protocol": "UDP", "name": "dns"},
                                    {"containerPort": 53, "protocol": "TCP", "name": "dns-tcp"},
                                ],
                                "readinessProbe": {
                                    "httpGet": {"path": "/ready", "port": 8181},
                                    "periodSeconds": 1,
                                },
                                "livenessProbe": {
                                    "httpGet": {"path": "/health", "port": 8080},
                                    "periodSeconds": 10,
                                },
                                "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns"}],
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": ns, "labels": DNS_LABELS},
            "spec": {
                "clusterIP": DNS_SERVICE_IP,
                "selector": DNS_LABELS,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                ],
            },
        },
    ]


def storage_class() -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS},
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Retain",
    }


@dataclass(frozen=True)
class Disk:
    node: str
    index: int
    backing: Path
    device: str
    size_bytes: int

    @property
    def pv_name(self) -> str:
        return f"{self.node}-disk-{self.index}"


def local_pv(disk: Disk) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": disk.pv_name, "labels": {"hastack.io/lab-node": disk.node}},
        "spec": {
            "capacity": {"storage": str(disk.size_bytes)},
            "volumeMode": "Block",
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": STORAGE_CLASS,
            "local": {"path": disk.device},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "kubernetes.io/hostname", "operator": "In", "values": [disk.node]}
                            ]
                        }
                    ]
                }
            },
        },
    }


def attach_disk(node: str, index: int, disk_dir: Path, size_bytes: int) -> Disk:
    """A sparse backing file and its loop device; reuses the device already attached to it."""
    disk_dir.mkdir(parents=True, exist_ok=True)
    backing = disk_dir / f"{node}-disk-{index}.img"
    if not backing.exists():
        with open(backing, "wb") as f:
            f.truncate(size_bytes)
    found = subprocess.run(
        ["losetup", "-j", str(backing), "-n", "-O", "NAME"], capture_output=True, text=True, check=True
    ).stdout.split()
    device = (
        found[0]
        if found
        else subprocess.run(
            ["losetup", "--find", "--show", str(backing)], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    return Disk(node, index, backing, device, size_bytes)
