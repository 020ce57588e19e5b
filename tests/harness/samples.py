"""Minimal valid objects of each kind, for tests to copy and break."""

from __future__ import annotations

import copy
from typing import Any

API = "hastack.io/v1alpha1"


def hacluster(name: str = "web", namespace: str = "default", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": API, "kind": "HACluster", "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "template": {"spec": {"containers": [
                {"name": "web", "image": "hastack:dev", "command": ["python3", "-m", "http.server"]}]}},
            "resources": [{"kind": "service", "name": f"{name}-active", "port": 80, "targetPort": 8000}],
        },
    }
    body["spec"].update(copy.deepcopy(spec))
    return body


def replicatedvolume(name: str = "data", namespace: str = "default", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": API, "kind": "ReplicatedVolume", "metadata": {"name": name, "namespace": namespace},
        "spec": {"size": "1Gi", "storageClassName": "hastack-local"},
    }
    body["spec"].update(copy.deepcopy(spec))
    return body


def servicemonitor(name: str = "web-http", namespace: str = "default", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": API, "kind": "ServiceMonitor", "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "target": {"service": "web", "port": 80},
            "probes": [{"name": "http", "type": "http", "interval": "10s", "timeout": "2s"}],
            "alert": {"after": 3},
            "receivers": [{"name": "events", "type": "event"}],
        },
    }
    body["spec"].update(copy.deepcopy(spec))
    return body


def with_path(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``body`` with the dotted ``path`` (list indexes as numbers) set to ``value``;
    the value ``DELETE`` removes the key."""
    out = copy.deepcopy(body)
    node: Any = out
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    last = keys[-1]
    if value is DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return out


DELETE = object()
