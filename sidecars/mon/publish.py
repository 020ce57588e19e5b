"""mon's status report in its own pod's ``hastack.io/monitor-status`` annotation (read by the operator).

mon never writes custom-resource status: the operator copies the report of the mon that decides
(operator/resources/monitor_status.py) into the ServiceMonitor's ``status``. The report is
``{"publishedAt": RFC3339, "monitors": {"ns/name": {"probes": [...]}}}``, each probe entry in the
CRD's ``status.probes[]`` shape. The operator trusts a report for 30 s, so it is rewritten every
``max_interval`` even unchanged, and at most once per ``min_interval`` when it changes.

The pod is named by ``HASTACK_POD_NAME`` / ``HASTACK_NAMESPACE`` (set by the operator); without
them (tests, a daemon on a host) nothing is published. The client is built on first use, the
blocking call runs in a thread, and a failed write is logged and retried with a backoff.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hastack_common import consts
from hastack_common.logs import kv

log = logging.getLogger(__name__)
ANNOTATION = f"{consts.GROUP}/monitor-status"
MERGE = "application/merge-patch+json"
# The CRD's status.probes[] fields; ``latency`` changes on every probe, so it alone is no reason to write.
PROBE_FIELDS = ("name", "lastResult", "consecutiveFailures", "lastChange", "latency", "alert", "reason")
VOLATILE = ("latency",)
# A pod's annotations may hold 256 KiB in all; beyond this budget the long texts are shortened.
BUDGET = 192 * 1024
SHORT = 160


# -- functional core ---------------------------------------------------------------------


def probes_of(status: Mapping[str, Any]) -> dict[str, Any]:
    """``Runtime.status()`` -> the report's ``monitors``: CRD fields only, no nulls (the CRD has none)."""
    return {
        key: {"probes": [{f: p[f] for f in PROBE_FIELDS if p.get(f) is not None} for p in entry.get("probes", [])]}
        for key, entry in sorted(status.items())
    }


def fit(monitors: dict[str, Any], budget: int = BUDGET) -> dict[str, Any]:
    """The report within ``budget`` bytes of JSON: if too large, ``lastResult`` and ``reason`` are cut
    to their first ``SHORT`` characters (a very large mon still reports every probe's state)."""
    if len(json.dumps(monitors, separators=(",", ":"))) <= budget:
        return monitors
    cut = {f: SHORT for f in ("lastResult", "reason")}
    return {k: {"probes": [{f: (v[: cut[f]] if f in cut and isinstance(v, str) else v) for f, v in p.items()}
                           for p in e["probes"]]} for k, e in monitors.items()}


def fingerprint(monitors: Mapping[str, Any]) -> str:
    """What must change for a write before ``max_interval`` is up (everything but latencies)."""
    stable = {k: [{f: v for f, v in p.items() if f not in VOLATILE} for p in e["probes"]] for k, e in monitors.items()}
    return json.dumps(stable, sort_keys=True, separators=(",", ":"))


def render(monitors: Mapping[str, Any], now: dt.datetime) -> str:
    at = now.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return json.dumps({"publishedAt": at, "monitors": monitors}, sort_keys=True, separators=(",", ":"))


@dataclass
class Pacer:
    """When to write: a change after ``min_interval``, anything after ``max_interval``; after a failed
    write, retry after a backoff doubling from ``min_interval`` up to ``max_interval``."""

    min_interval: float = 1.0
    max_interval: float = 10.0
    written_at: float = -1e9
    written: str | None = None
    failures: int = 0
    failed_at: float = -1e9

    def due(self, now: float, fp: str) -> bool:
        if self.failures:
            backoff = min(self.max_interval, self.min_interval * 2 ** (self.failures - 1))
            if now - self.failed_at < backoff:
                return False
        since = now - self.written_at
        return since >= self.max_interval or (fp != self.written and since >= self.min_interval)

    def ok(self, now: float, fp: str) -> None:
        self.written_at, self.written, self.failures = now, fp, 0

    def failed(self, now: float) -> None:
        self.failures, self.failed_at = self.failures + 1, now


# -- imperative shell ---------------------------------------------------------------------


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str


def pod_from_env(env: Mapping[str, str] = os.environ) -> PodRef | None:
    """The pod to annotate, from the operator's ``HASTACK_POD_NAME`` / ``HASTACK_NAMESPACE``."""
    name = env.get("HASTACK_POD_NAME", "")
    if not name:
        return None
    return PodRef(env.get("HASTACK_NAMESPACE") or "default", name)


class StatusPublisher:
    def __init__(
        self,
        pod: PodRef,
        status: Callable[[], Mapping[str, Any]],
        enabled: Callable[[], bool] = lambda: True,
        min_interval: float = 1.0,
        max_interval: float = 10.0,
        on_result: Callable[[str], None] = lambda _: None,
        client: Callable[[], Any] | None = None,
    ) -> None:
        self.pod, self.status, self.enabled, self.on_result = pod, status, enabled, on_result
        self.pacer = Pacer(min_interval, max_interval)
        self._client_factory = client
        self._core: Any = None

    def _patch(self, text: str) -> None:
        if self._core is None:
            from kubernetes import client

            from hastack_mon.k8s import api_client

            self._core = client.CoreV1Api((self._client_factory or api_client)())
        body = {"metadata": {"annotations": {ANNOTATION: text}}}
        self._core.patch_namespaced_pod(self.pod.name, self.pod.namespace, body, _request_timeout=5.0,
                                        _content_type=MERGE)

    async def tick(self, now: float) -> bool:
        """Write if due; True when a write was made."""
        monitors = fit(probes_of(self.status()))
        fp = fingerprint(monitors)
        if not self.pacer.due(now, fp):
            return False
        try:
            await asyncio.to_thread(self._patch, render(monitors, dt.datetime.now(dt.UTC)))
        except Exception as exc:
            self.pacer.failed(now)
            self.on_result("error")
            log.warning("monitor status not published, retrying", extra=kv(
                pod=f"{self.pod.namespace}/{self.pod.name}", failures=self.pacer.failures, error=str(exc)[:200]))
            return False
        if self.pacer.failures:
            log.info("monitor status published again", extra=kv(pod=f"{self.pod.namespace}/{self.pod.name}"))
        self.pacer.ok(now, fp)
        self.on_result("ok")
        return True

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        log.info("publishing monitor status", extra=kv(pod=f"{self.pod.namespace}/{self.pod.name}",
                                                       annotation=ANNOTATION))
        step = min(0.5, self.pacer.min_interval)  # a change goes out within min_interval + step
        while True:
            if self.enabled():
                await self.tick(loop.time())
            await asyncio.sleep(step)
