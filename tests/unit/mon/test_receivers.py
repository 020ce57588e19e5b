"""Receiver payloads and routing (pure parts; deliveries to real endpoints are system tests)."""

from __future__ import annotations

import asyncio
from typing import Any

from hastack_common.config_mon import Receiver
from hastack_mon.k8s import event_body
from hastack_mon.metrics import Metrics
from hastack_mon.receivers import QUEUE_SIZE, RESEND, KubeEvent, Notification, Worker

N = Notification(
    "alert",
    "shop",
    "web",
    "health",
    "http",
    "10.0.0.1:80",
    "alert: 3 consecutive failures (after=3)",
    "HTTP 503",
    1_700_000_000.5,
    1_700_000_000.5,
    3,
)


def worker(**spec: object) -> Worker:
    r = Receiver.model_validate({"name": "r", **spec})
    return Worker(
        r,
        namespace="shop",
        monitor="web",
        uid="u-1",
        metrics=Metrics(),
        http=lambda: None,  # type: ignore[arg-type,return-value]
        events=None,
        ha_cluster="db",
    )


def test_webhook_payload() -> None:
    p = N.payload()
    assert p["version"] == "1" and p["kind"] == "alert" and p["status"] == "firing"
    assert (p["namespace"], p["serviceMonitor"], p["probe"], p["probeKind"]) == ("shop", "web", "health", "http")
    assert p["time"] == "2023-11-14T22:13:20.500000Z" and p["consecutiveFailures"] == 3
    assert Notification(**{**N.__dict__, "kind": "upalert"}).payload()["status"] == "resolved"


def test_alertmanager_alert_body() -> None:
    w = worker(type="alertmanager", url="http://am:9093", labels={"team": "shop"})
    body = w._am_alert(N, N.at + 240)
    assert body["labels"] == {
        "alertname": "HastackProbeDown",
        "namespace": "shop",
        "servicemonitor": "web",
        "probe": "health",
        "kind": "http",
        "severity": "critical",
        "team": "shop",
    }
    assert body["startsAt"] == "2023-11-14T22:13:20.500000Z" and body["endsAt"] == "2023-11-14T22:17:20.500000Z"
    assert "HTTP 503" in body["annotations"]["description"]


def test_routing_by_receiver_type() -> None:
    async def go() -> dict[str, list[str]]:
        out = {}
        for spec in (
            {"type": "webhook", "url": "http://x"},
            {"type": "alertmanager", "url": "http://x"},
            {"type": "failover"},
            {"type": "event"},
        ):
            w = worker(**spec)
            for kind in ("alert", "realert", "upalert", "resolve"):
                w.submit(Notification(**{**N.__dict__, "kind": kind}))
            out[str(spec["type"])] = [w.queue.get_nowait().kind for _ in range(w.queue.qsize())]
        return out

    assert asyncio.run(go()) == {
        "webhook": ["alert", "realert", "upalert"],
        "alertmanager": ["alert", "realert", "resolve"],
        "failover": ["alert"],
        "event": ["alert", "realert", "upalert"],
    }


def test_full_queue_drops_the_oldest_and_counts_it() -> None:
    async def go() -> Worker:
        w = worker(type="webhook", url="http://x")
        for i in range(QUEUE_SIZE + 2):
            w.submit(Notification(**{**N.__dict__, "consecutive_failures": i}))
        return w

    w = asyncio.run(go())
    assert w.queue.qsize() == QUEUE_SIZE and w.queue.get_nowait().consecutive_failures == 2
    assert w.metrics.delivery_failures.labels("shop", "web", "r", "webhook")._value.get() == 2


def test_failover_cluster_defaults_to_the_target() -> None:
    assert worker(type="failover").ha_cluster == "db"
    assert worker(type="failover", haCluster="other").ha_cluster == "other"


def test_event_body() -> None:
    body = event_body(KubeEvent("shop", "web", "u-1", "Warning", "ProbeFailed", "probe health down"), "node-1")
    assert body["involvedObject"] == {
        "apiVersion": "hastack.io/v1alpha1",
        "kind": "ServiceMonitor",
        "name": "web",
        "namespace": "shop",
        "uid": "u-1",
    }
    assert body["metadata"] == {"generateName": "web.", "namespace": "shop"}
    assert (body["type"], body["reason"], body["source"]["component"]) == ("Warning", "ProbeFailed", "hastack-mon")


def test_a_resend_queued_behind_a_resolve_does_not_revive_the_alert() -> None:
    posted: list[tuple[str, str]] = []

    async def go() -> None:
        w = worker(type="alertmanager", url="http://am:9093")

        async def post(url: str, body: Any, timeout: float, headers: dict[str, str], ctx: Any = None) -> None:
            posted.append((body[0]["labels"]["probe"], body[0]["endsAt"]))

        w._post = post  # type: ignore[method-assign]  # records instead of sending
        await w.deliver(N)  # firing
        resend = Notification(**{**N.__dict__, "kind": RESEND})
        for n in (Notification(**{**N.__dict__, "kind": "resolve"}), resend):
            await w.deliver(n)
        assert w.firing == {}

    asyncio.run(go())
    assert len(posted) == 2  # the alert and its resolve; the stale resend sent nothing


def test_forgetting_a_probe_resolves_even_an_alert_still_queued() -> None:
    posted: list[str] = []

    async def go() -> None:
        w = worker(type="alertmanager", url="http://am:9093")

        async def post(url: str, body: Any, timeout: float, headers: dict[str, str], ctx: Any = None) -> None:
            posted.append(
                "resolved"
                if body[0]["endsAt"] <= body[0]["startsAt"] or "removed" in body[0]["annotations"]["description"]
                else "firing"
            )

        w._post = post  # type: ignore[method-assign]  # records instead of sending
        w.submit(N)  # queued, not delivered yet
        w.forget("health")
        w.forget("never-alerted")  # nothing to resolve: nothing sent
        while not w.queue.empty():
            await w.deliver(w.queue.get_nowait())
        assert w.firing == {}

    asyncio.run(go())
    assert posted == ["firing", "resolved"]
