"""Kubernetes Events about ServiceMonitors: the thin adapter behind the ``event`` receiver.

The client is created on first use (never at import), from the pod's service account or a
kubeconfig; the blocking API call runs in a thread.
"""

from __future__ import annotations

import asyncio
import datetime
import socket
from typing import Any

from hastack_mon.receivers import KubeEvent

GROUP_VERSION = "hastack.io/v1alpha1"


def event_body(e: KubeEvent, host: str) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{e.name}.", "namespace": e.namespace},
        "involvedObject": {
            "apiVersion": GROUP_VERSION,
            "kind": "ServiceMonitor",
            "name": e.name,
            "namespace": e.namespace,
            **({"uid": e.uid} if e.uid else {}),
        },
        "type": e.type,
        "reason": e.reason,
        "message": e.message,
        "source": {"component": "hastack-mon", "host": host},
        "reportingComponent": "hastack.io/mon",
        "reportingInstance": host,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def api_client() -> Any:
    """A Kubernetes ApiClient from the pod's service account, else the kubeconfig (KUBECONFIG)."""
    from kubernetes import client, config

    cfg = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=cfg)
    except config.ConfigException:
        config.load_kube_config(client_configuration=cfg)
    return client.ApiClient(cfg)


class KubeEventSink:
    def __init__(self) -> None:
        self._api: Any = None

    def _client(self) -> Any:
        if self._api is None:
            from kubernetes import client

            self._api = client.CoreV1Api(api_client())
        return self._api

    async def emit(self, event: KubeEvent) -> None:
        body = event_body(event, socket.gethostname())
        await asyncio.to_thread(lambda: self._client().create_namespaced_event(event.namespace, body))
