"""A standalone mon for a ServiceMonitor whose target is not a HACluster (pure builders)."""

from __future__ import annotations

from typing import Any

import yaml

from hastack_common import consts
from hastack_operator.resources import config, names
from hastack_operator.resources.members import CONFIG_DIR, METRICS_PORTS

LABEL_MONITOR = f"{consts.GROUP}/monitor"


def _meta(body: dict[str, Any], name: str) -> dict[str, Any]:
    meta = body["metadata"]
    return {"name": name, "namespace": meta["namespace"],
            "labels": {LABEL_MONITOR: meta["name"], "app.kubernetes.io/managed-by": "hastack",
                       "app.kubernetes.io/component": "mon"},
            "ownerReferences": [{"apiVersion": consts.API_VERSION, "kind": "ServiceMonitor", "name": meta["name"],
                                 "uid": meta.get("uid", ""), "controller": True, "blockOwnerDeletion": True}]}


def desired(body: dict[str, Any], image: str) -> list[dict[str, Any]]:
    name = names.monitor_deployment(body["metadata"]["name"])
    mon_yaml = yaml.safe_dump(config.mon([body], "always").model_dump(by_alias=True, exclude_none=True),
                              sort_keys=False)
    labels = {LABEL_MONITOR: body["metadata"]["name"]}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(body, name), "data": {"mon.yaml": mon_yaml}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(body, name)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(body, name),
         "rules": [{"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
                   {"apiGroups": [""], "resources": ["pods"], "resourceNames": [f"{name}-0"],
                    "verbs": ["get", "patch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _meta(body, name),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": body["metadata"]["namespace"]}]},
        # A StatefulSet of one, so the pod's name is known and mon may patch only that pod
        # (it publishes its status there, as members do).
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta(body, name), "spec": {
            "replicas": 1,
            "serviceName": name,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "serviceAccountName": name,
                "securityContext": {"runAsNonRoot": True, "runAsUser": 65532,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "mon", "image": image, "imagePullPolicy": "IfNotPresent",
                    "command": ["hastack", "mon", "--config", f"{CONFIG_DIR}/mon.yaml"],
                    # mon publishes its status on this pod (hastack.io/monitor-status), named by these
                    "env": [{"name": "HASTACK_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "HASTACK_NAMESPACE",
                             "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
                    "ports": [{"name": "metrics", "containerPort": METRICS_PORTS["mon"]}],
                    "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                                     {"name": "run", "mountPath": consts.RUN_DIR}],
                    "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]}},
                    # mon's RSS on real nodes is ~155 MiB (Python + the Kubernetes client): 128Mi OOMKilled it
                    "resources": {"requests": {"cpu": "20m", "memory": "160Mi"}, "limits": {"memory": "256Mi"}},
                }],
                "volumes": [{"name": "config", "configMap": {"name": name}},
                            {"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}}],
            }},
        }},
    ]


PRUNABLE = (("v1", "ConfigMap"), ("v1", "ServiceAccount"), ("rbac.authorization.k8s.io/v1", "Role"),
            ("rbac.authorization.k8s.io/v1", "RoleBinding"), ("apps/v1", "StatefulSet"))
