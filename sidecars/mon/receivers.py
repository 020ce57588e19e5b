"""Receivers: where alerts go. Kubernetes Event, webhook, Alertmanager v2, HACluster failover.

Each receiver gets its own ordered queue and worker, so a slow or failing receiver delays only
itself (never the probes, never the other receivers) and a resolve never overtakes its alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from hastack_common import ctlsock
from hastack_common.config_mon import Receiver
from hastack_common.durations import parse_duration
from hastack_common.failover_request import FAILOVER_CMD, FailoverRequest
from hastack_common.logs import kv
from hastack_mon.metrics import Metrics
from hastack_mon.probes import tls_context

log = logging.getLogger(__name__)
QUEUE_SIZE = 1000


def rfc3339(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Notification:
    kind: str  # alert | realert | upalert | resolve
    namespace: str
    monitor: str
    probe: str
    probe_kind: str
    target: str
    reason: str
    detail: str
    at: float
    started_at: float  # when the outage's first alert fired (for Alertmanager's startsAt)
    consecutive_failures: int

    def payload(self) -> dict[str, Any]:
        """The webhook's JSON body (documented in docs/mon.md)."""
        return {
            "version": "1",
            "kind": self.kind,
            "status": "resolved" if self.kind in ("upalert", "resolve") else "firing",
            "namespace": self.namespace,
            "serviceMonitor": self.monitor,
            "probe": self.probe,
            "probeKind": self.probe_kind,
            "target": self.target,
            "reason": self.reason,
            "detail": self.detail,
            "consecutiveFailures": self.consecutive_failures,
            "time": rfc3339(self.at),
            "member": socket.gethostname(),
        }


class DeliveryError(Exception):
    """A delivery attempt failed; ``retry`` says whether trying again may help."""

    def __init__(self, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass(frozen=True)
class KubeEvent:
    """A Kubernetes Event about a ServiceMonitor (involvedObject: servicemonitors.hastack.io)."""

    namespace: str
    name: str
    uid: str | None
    type: str  # Normal | Warning
    reason: str
    message: str


class EventSink(Protocol):
    async def emit(self, event: KubeEvent) -> None: ...


Send = Callable[[Notification], Awaitable[None]]
RESEND = "resend"  # alertmanager only: a firing alert pushed again (startsAt kept, endsAt moved on)
FORGET = "forget"  # alertmanager only: the probe was removed, resolve what it left firing
KINDS = {
    "event": ("alert", "realert", "upalert"),
    "webhook": ("alert", "realert", "upalert"),
    "alertmanager": ("alert", "realert", "resolve"),
    "failover": ("alert",),
}


class Worker:
    """One receiver of one ServiceMonitor: an ordered queue, retries with exponential backoff."""

    def __init__(
        self,
        spec: Receiver,
        *,
        namespace: str,
        monitor: str,
        uid: str | None,
        metrics: Metrics,
        http: Callable[[], aiohttp.ClientSession],
        events: EventSink | None,
        ha_cluster: str | None = None,
    ) -> None:
        self.default_cluster = ha_cluster
        self.ha_cluster = spec.ha_cluster or ha_cluster or ""
        self.spec, self.namespace, self.monitor, self.uid = spec, namespace, monitor, uid
        self.metrics, self._http, self._events = metrics, http, events
        self.queue: asyncio.Queue[Notification] = asyncio.Queue(QUEUE_SIZE)
        self.firing: dict[str, Notification] = {}  # alertmanager: probe -> its firing alert
        self._task: asyncio.Task[None] | None = None
        self._resend: asyncio.Task[None] | None = None
        self.attempts = spec.retries
        self.backoff = parse_duration(spec.backoff)
        self.max_backoff = parse_duration(spec.max_backoff)
        self.timeout = parse_duration(spec.timeout)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"receiver {self.monitor}/{self.spec.name}")
        if self.spec.type == "alertmanager":
            self._resend = asyncio.create_task(self._resend_loop())

    async def stop(self) -> None:
        for t in (self._task, self._resend):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        for n in list(self.firing.values()):  # a removed monitor's alerts are resolved, best effort
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._alertmanager(self._resolution(n)), self.timeout)

    def forget(self, probe: str) -> None:
        """The probe was removed from the configuration: resolve its firing alert, in queue order
        (an alert still queued is delivered, then resolved)."""
        if self.spec.type == "alertmanager":
            now = time.time()
            self._enqueue(Notification(FORGET, self.namespace, self.monitor, probe, "", "", "", "", now, now, 0))

    @staticmethod
    def _resolution(n: Notification) -> Notification:
        return dataclasses.replace(n, kind="resolve", reason="probe removed from the configuration", at=time.time())

    def submit(self, n: Notification) -> None:
        if n.kind in KINDS[self.spec.kind]:
            self._enqueue(n)

    def _enqueue(self, n: Notification) -> None:
        if self.queue.full():  # never block the probes: the oldest undelivered notification goes
            self.queue.get_nowait()
            self._failed("queue full, oldest notification dropped")
        self.queue.put_nowait(n)

    def _labels(self) -> tuple[str, str, str, str]:
        return (self.namespace, self.monitor, self.spec.name, self.spec.kind)

    def _failed(self, why: str) -> None:
        self.metrics.delivery_failures.labels(*self._labels()).inc()
        fields = kv(monitor=self.monitor, receiver=self.spec.name, error=why)
        log.warning("receiver delivery failed", extra=fields)

    async def _run(self) -> None:
        while True:
            n = await self.queue.get()
            await self.deliver(n)

    async def deliver(self, n: Notification) -> bool:
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                await self._send(n)
                self.metrics.deliveries.labels(*self._labels()).inc()
                log.info(
                    "alert delivered",
                    extra=kv(
                        monitor=self.monitor,
                        probe=n.probe,
                        kind=n.kind,
                        receiver=self.spec.name,
                        attempt=attempt,
                    ),
                )
                return True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                retry = exc.retry if isinstance(exc, DeliveryError) else True
                self._failed(f"attempt {attempt}/{self.attempts}: {exc}")
                if not retry or attempt == self.attempts:
                    return False
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
        return False

    async def _send(self, n: Notification) -> None:
        kind = self.spec.kind
        if kind == "webhook":
            await self._webhook(n)
        elif kind == "alertmanager":
            await self._alertmanager(n)
        elif kind == "failover":
            await self._failover(n)
        else:
            await self._event(n)

    async def _post(self, url: str, body: Any, timeout: float, headers: dict[str, str], ctx: Any = None) -> None:
        tmo = aiohttp.ClientTimeout(total=timeout)
        try:
            async with self._http().post(url, json=body, headers=headers, timeout=tmo, ssl=ctx) as resp:
                if resp.status >= 300:
                    text = (await resp.content.read(300)).decode("utf-8", "replace")
                    raise DeliveryError(
                        f"POST {url}: HTTP {resp.status} {text}",
                        retry=resp.status >= 500 or resp.status == 429,
                    )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise DeliveryError(f"POST {url}: {type(exc).__name__}: {exc}") from exc

    async def _webhook(self, n: Notification) -> None:
        r = self.spec
        assert r.url is not None
        ctx = tls_context(not r.insecure_skip_verify, r.ca_file) if r.url.startswith("https:") else None
        await self._post(r.url, n.payload(), self.timeout, r.headers, ctx)

    def _am_alert(self, n: Notification, ends: float) -> dict[str, Any]:
        am = self.spec
        return {
            "labels": {
                "alertname": "HastackProbeDown",
                "namespace": n.namespace,
                "servicemonitor": n.monitor,
                "probe": n.probe,
                "kind": n.probe_kind,
                "severity": "critical",
                **am.labels,
            },
            "annotations": {
                "summary": f"{n.namespace}/{n.monitor} probe {n.probe} is down",
                "description": f"{n.reason}; last result: {n.detail}",
                "target": n.target,
            },
            "startsAt": rfc3339(n.started_at),
            "endsAt": rfc3339(ends),
        }

    async def _alertmanager(self, n: Notification) -> None:
        am = self.spec
        assert am.url is not None
        period = parse_duration(am.resend)
        if n.kind == "resolve":
            self.firing.pop(n.probe, None)
            body = [self._am_alert(n, n.at)]
        elif n.kind == FORGET:
            firing = self.firing.pop(n.probe, None)
            if firing is None:
                return
            body = [self._am_alert(self._resolution(firing), time.time())]
        elif n.kind == RESEND:
            if n.probe not in self.firing:  # resolved since the resend was queued: stay resolved
                return
            body = [self._am_alert(n, n.at + 4 * period)]
        else:
            self.firing[n.probe] = n
            body = [self._am_alert(n, n.at + 4 * period)]
        url = am.url.rstrip("/") + "/api/v2/alerts"
        await self._post(url, body, self.timeout, am.headers)

    async def _resend_loop(self) -> None:
        """Alertmanager forgets an alert past its endsAt: firing alerts are pushed again."""
        period = parse_duration(self.spec.resend)
        while True:
            await asyncio.sleep(period)
            for n in list(self.firing.values()):  # through the queue: never overtakes a resolve
                if not self.queue.full():
                    self.queue.put_nowait(dataclasses.replace(n, kind=RESEND, at=time.time()))

    async def _failover(self, n: Notification) -> None:
        req = FailoverRequest(
            ha_cluster=self.ha_cluster,
            reason=n.reason,
            monitor=f"{n.namespace}/{n.monitor}",
            probe=n.probe,
            detail=n.detail,
            requested_at=rfc3339(n.at),
        )
        try:
            await ctlsock.call(self.spec.socket, FAILOVER_CMD, req.model_dump(by_alias=True), self.timeout)
        except ctlsock.ControlError as exc:  # with a cause: unreachable (retry); without: refused
            unreachable = exc.__cause__ is not None
            raise DeliveryError(f"failover of {self.ha_cluster}: {exc}", retry=unreachable) from exc

    async def _event(self, n: Notification) -> None:
        if self._events is None:
            raise DeliveryError("no Kubernetes API client in this process (not in a pod?)", retry=False)
        up = n.kind == "upalert"
        reason = "ProbeRecovered" if up else self.spec.reason
        msg = f"probe {n.probe} ({n.probe_kind} {n.target}): {n.reason}; last result: {n.detail}"
        kind = "Normal" if up else "Warning"
        await self._events.emit(KubeEvent(n.namespace, n.monitor, self.uid, kind, reason, msg[:1000]))
