"""Kubernetes adapters of heartbeat: the API client, the pod label agent, member status, Events.

Blocking client calls run in a worker thread, each with a request timeout. The client is built
on demand (in-cluster service account, else ``KUBECONFIG``/``--kubeconfig``), never at import.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import socket
from collections.abc import Callable
from typing import Any

from hastack_common.consts import ANNOTATION_MEMBER_STATUS, API_VERSION, LABEL_ROLE, ROLE_ACTIVE
from hastack_common.logs import kv

log = logging.getLogger(__name__)
MERGE = "application/merge-patch+json"


def api_client(kubeconfig: str | None = None) -> Any:
    from kubernetes import client, config

    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


class PodLabelAgent:
    """Label this member's pod ``hastack.io/role=active`` and take the label off every other member.

    The label follows the Lease: the new holder removes it from the others first (a dead node's
    pod keeps its labels until the node controller acts), then sets its own.
    """

    name = "pod-label"
    phase = ""

    def __init__(self, api: Any, namespace: str, me: str, members: list[str], timeout: float = 5.0) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api)
        self.namespace, self.me, self.members, self.timeout = namespace, me, members, timeout

    def _label(self, pod: str, value: str | None) -> None:
        from kubernetes.client.exceptions import ApiException

        body = {"metadata": {"labels": {LABEL_ROLE: value}}}
        try:
            self.core.patch_namespaced_pod(pod, self.namespace, body, _request_timeout=self.timeout,
                                           _content_type=MERGE)
        except ApiException as exc:
            if exc.status != 404 or pod == self.me:
                raise

    async def start(self) -> None:
        for pod in self.members:
            if pod != self.me:
                await asyncio.to_thread(self._label, pod, None)
        await asyncio.to_thread(self._label, self.me, ROLE_ACTIVE)

    async def stop(self) -> None:
        await asyncio.to_thread(self._label, self.me, None)


class StatusPublisher:
    """Writes the member status JSON into this pod's ``hastack.io/member-status`` annotation.

    Rate limited: at most one write per ``min_interval`` when it changed, and one per
    ``max_interval`` even unchanged (the operator sees the member is alive).
    """

    def __init__(self, api: Any, namespace: str, pod: str, status: Callable[[], dict[str, Any]],
                 min_interval: float = 1.0, max_interval: float = 15.0) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api)
        self.namespace, self.pod, self.status = namespace, pod, status
        self.min_interval, self.max_interval = min_interval, max_interval
        self.writes = 0

    def _publish(self, text: str) -> None:
        body = {"metadata": {"annotations": {ANNOTATION_MEMBER_STATUS: text}}}
        self.core.patch_namespaced_pod(self.pod, self.namespace, body, _request_timeout=5.0,
                                       _content_type=MERGE)

    async def run(self) -> None:
        last, written = "", -1e9
        loop = asyncio.get_running_loop()
        while True:
            summary = _summary(self.status())
            text = json.dumps(summary, sort_keys=True, separators=(",", ":"))
            if text != last or loop.time() - written >= self.max_interval:
                summary["publishedAt"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
                try:
                    await asyncio.to_thread(self._publish, json.dumps(summary, sort_keys=True, separators=(",", ":")))
                    last, written = text, loop.time()
                    self.writes += 1
                except Exception as exc:
                    log.warning("member status not published", extra=kv(error=str(exc)[:200]))
            await asyncio.sleep(self.min_interval)


def _summary(status: dict[str, Any]) -> dict[str, Any]:
    """What goes into the annotation (read by operator/resources/status.py): stable fields only, so
    it changes only when something happens; ``publishedAt`` is added when it is written."""
    lease = status.get("lease") or {}
    return {
        "role": status["role"],
        "reason": status.get("reason", ""),
        "eligible": status.get("eligible"),
        "blocked": status.get("blocked", ""),
        "peers": {k: {"state": v["state"]} for k, v in status["peers"].items()},
        "lease": {"holder": lease.get("holder", ""), "apiReachable": lease.get("apiReachable", False)},
        "lastFailover": status.get("lastFailover") or {},
        "failoverCount": status.get("failoverCount", 0),
        **({"volume": status["volume"]} if status.get("volume") else {}),
    }


class EventRecorder:
    """Events on the HACluster, rate limited per reason."""

    def __init__(self, api: Any, namespace: str, cluster: str, min_interval: float = 10.0) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api)
        self.namespace, self.cluster, self.min_interval = namespace, cluster, min_interval
        self._last: dict[str, float] = {}

    async def emit(self, now: float, kind: str, reason: str, message: str) -> None:
        if now - self._last.get(reason, -1e9) < self.min_interval:
            return
        self._last[reason] = now
        stamp = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
        body: Any = {
            "metadata": {"generateName": f"{self.cluster}.", "namespace": self.namespace},
            "involvedObject": {"apiVersion": API_VERSION, "kind": "HACluster", "name": self.cluster,
                               "namespace": self.namespace},
            "type": kind, "reason": reason, "message": message[:1000],
            "source": {"component": "hastack-heartbeat", "host": socket.gethostname()},
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        }
        try:
            await asyncio.to_thread(self.core.create_namespaced_event, self.namespace, body,
                                    _request_timeout=5.0)
        except Exception as exc:
            log.warning("event not recorded", extra=kv(reason=reason, error=str(exc)[:200]))
