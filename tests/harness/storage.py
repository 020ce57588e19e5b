"""Block PersistentVolumes for tests: `local` PVs with node affinity, as the lab offers them.

On kwok nodes nothing reads the device; the scheduler and the PV controller still bind the
claims to the node's volumes, which is what the operator's pods need to be scheduled.
"""

from __future__ import annotations

from typing import Any

STORAGE_CLASS = "hastack-local"


def storage_class(name: str = STORAGE_CLASS, expandable: bool = False) -> dict[str, Any]:
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
            "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "WaitForFirstConsumer",
            "allowVolumeExpansion": expandable}


def local_block_pv(name: str, node: str, path: str, size: str = "10Gi",
                   storage_class_name: str = STORAGE_CLASS) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": {"hastack.io/test-node": node}},
        "spec": {
            "capacity": {"storage": size}, "volumeMode": "Block", "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain", "storageClassName": storage_class_name,
            "local": {"path": path},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
        },
    }
