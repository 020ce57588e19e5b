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

from hastack_common.consts import (
    ANNOTATION_MEMBER_STATUS,
    ANNOTATION_SWITCHOVER,
    API_VERSION,
    GROUP,
    HACLUSTERS,
    LABEL_ROLE,
    ROLE_ACTIVE,
    VERSION,
)
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
                 min_interval: float = 1.0, max_interval: float = 15.0,
                 on_result: Callable[[str], None] | None = None) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api)
        self.namespace, self.pod, self.status = namespace, pod, status
        self.min_interval, self.max_interval = min_interval, max_interval
        self.writes = 0
        self.on_result = on_result or (lambda result: None)  # "ok" / "error", for the metrics

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
                    self.on_result("ok")
                except Exception as exc:
                    log.warning("member status not published", extra=kv(error=str(exc)[:200]))
                    self.on_result("error")
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


class SwitchoverWatcher:
    """``kubectl annotate hac NAME hastack.io/switchover=<member>``, acted on by the active member.

    The active polls its HACluster every ``period`` (only while active). A valid target makes it
    hand over (demote, release the Lease naming the target); once it is standby again the
    annotation is cleared and the outcome recorded in an Event. A target that is not a member,
    is the active itself, or is not alive and eligible is refused the same way.
    """

    def __init__(self, api: Any, namespace: str, cluster: str, recorder: EventRecorder,
                 period: float = 1.0) -> None:
        from kubernetes import client

        self.custom = client.CustomObjectsApi(api)
        self.namespace, self.cluster, self.recorder, self.period = namespace, cluster, recorder, period

    def _read(self) -> str:
        obj: Any = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, HACLUSTERS,
                                                            self.cluster, _request_timeout=5.0)
        return str(((obj.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_SWITCHOVER, ""))

    def _clear(self) -> None:
        body = {"metadata": {"annotations": {ANNOTATION_SWITCHOVER: None}}}
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, HACLUSTERS, self.cluster,
                                                   body, _request_timeout=5.0, _content_type=MERGE)

    async def run(self, node: Any) -> None:
        from hastack_heartbeat import membership as m
        from hastack_heartbeat.events import Switchover

        while True:
            await asyncio.sleep(self.period)
            if node.state.role is not m.Role.ACTIVE:
                continue
            try:
                target = await asyncio.to_thread(self._read)
            except Exception as exc:
                log.debug("HACluster not read", extra=kv(error=str(exc)[:200]))
                continue
            if not target:
                continue
            st = node.state
            peer = st.peers.get(target)
            refusal = ("it is already active" if target == node.me
                       else "it is not a member" if peer is None
                       else "it is not alive and eligible"
                       if peer.state is not m.PeerState.ALIVE or not peer.eligible else "")
            if refusal:
                await self._finish(node, "Warning", "SwitchoverRefused", f"switchover to {target} refused: {refusal}")
                continue
            standby = asyncio.Event()

            def on_role(a: Any, now: float, standby: asyncio.Event = standby) -> None:
                if a.new == "standby":
                    standby.set()

            node.role_listeners.append(on_role)
            t0 = node.clock()
            try:
                node.feed(Switchover(target, "hastack.io/switchover annotation"))
                await asyncio.wait_for(standby.wait(), 60)
            except TimeoutError:
                pass
            finally:
                node.role_listeners.remove(on_role)
            outcome = "done" if standby.is_set() else "timed out"
            await self._finish(node, "Normal", "Switchover",
                               f"switchover from {node.me} to {target} {outcome} in {node.clock() - t0:.2f}s")

    async def _finish(self, node: Any, kind: str, reason: str, message: str) -> None:
        log.info("switchover", extra=kv(outcome=reason, detail=message))
        try:
            await asyncio.to_thread(self._clear)
        except Exception as exc:
            log.warning("switchover annotation not cleared", extra=kv(error=str(exc)[:200]))
        await self.recorder.emit(node.clock(), kind, reason, message)
