"""Real Prometheus scraping mon, real Alertmanager receiving its pushes, a heartbeat socket for failover."""

from __future__ import annotations

import datetime
import pathlib
import time
from collections.abc import Callable
from typing import Any

from harness.mon_env import MonProcess, Targets, alertmanager, control_server, http_json, prometheus, promql, wait_for
from harness.procs import Supervisor
from hastack_common.ctlsock import CommandError
from hastack_common.failover_request import FailoverRequest

MonFactory = Callable[[dict[str, Any]], MonProcess]


def monitor(targets: Targets, receivers: list[dict[str, Any]], alert: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": "web",
        "namespace": "shop",
        "spec": {
            "target": {"host": "127.0.0.1", "port": targets.ports["http"]},
            "probes": [{"name": "health", "interval": "250ms", "timeout": "1s", "http": {"path": "/health"}}],
            "alert": alert or {"after": 2},
            "receivers": receivers,
        },
    }


def test_prometheus_scrapes_probe_series_as_the_target_goes_down_and_up(
    targets: Targets, mon_factory: MonFactory, tmp_path: pathlib.Path, sup: Supervisor
) -> None:
    mon = mon_factory({"monitors": [monitor(targets, [])]})
    _, base = prometheus(sup, tmp_path, [f"127.0.0.1:{mon.port}"])
    success = 'hastack_probe_success{namespace="shop",monitor="web",probe="health"}'
    firing = 'hastack_mon_alert_state{monitor="web",probe="health",state="alerting"}'

    def value(query: str) -> float | None:
        result = promql(base, query)
        return float(result[0]["value"][1]) if result else None

    wait_for(lambda: value(success) == 1.0, 30, "Prometheus sees the probe up")
    assert value(firing) == 0.0
    targets.set_health(500)
    wait_for(lambda: value(success) == 0.0, 20, "Prometheus sees the probe down")
    wait_for(lambda: value(firing) == 1.0, 20, "Prometheus sees the alert firing")
    failures = 'increase(hastack_probe_failures_total{monitor="web",probe="health"}[1m])'
    wait_for(lambda: (value(failures) or 0) > 0, 20, "failures counted")
    targets.set_health(200)
    wait_for(lambda: value(success) == 1.0, 20, "Prometheus sees the probe up again")
    wait_for(lambda: value(firing) == 0.0, 20, "the alert no longer firing")
    count = 'hastack_probe_duration_seconds_count{monitor="web",probe="health",kind="http"}'
    assert (value(count) or 0) >= 3
    assert promql(base, 'up{job="mon"}')[0]["value"][1] == "1"


def test_alertmanager_lists_the_alert_while_down_and_resolves_it(
    targets: Targets, mon_factory: MonFactory, tmp_path: pathlib.Path, sup: Supervisor
) -> None:
    _, base = alertmanager(sup, tmp_path)
    wait_for(lambda: http_json(f"{base}/api/v2/status"), 30, "Alertmanager up")
    receivers = [{"name": "am", "type": "alertmanager", "url": base, "labels": {"team": "shop"}, "resend": "1s"}]
    config = {"monitors": [monitor(targets, receivers)]}
    mon = mon_factory(config)
    wait_for(lambda: mon.probe("web", "health", "shop")["ok"] is True, 10, "probed")

    def ours(active: bool) -> list[dict[str, Any]]:
        flags = "active=true" if active else "active=false&silenced=false&inhibited=false&unprocessed=false"
        alerts = http_json(f"{base}/api/v2/alerts?{flags}")
        return [a for a in alerts if a["labels"].get("alertname") == "HastackProbeDown"]

    assert ours(True) == []
    targets.set_health(503)
    listed = wait_for(lambda: ours(True), 20, "the alert listed by Alertmanager")
    labels = listed[0]["labels"]
    assert labels == {
        "alertname": "HastackProbeDown",
        "namespace": "shop",
        "servicemonitor": "web",
        "probe": "health",
        "kind": "http",
        "severity": "critical",
        "team": "shop",
    }
    assert listed[0]["status"]["state"] == "active"
    assert "2 consecutive failures" in listed[0]["annotations"]["description"]
    # a reload that leaves this receiver unchanged keeps re-pushing the firing alert (endsAt moves on)
    config["monitors"].append({**monitor(targets, []), "name": "other"})
    mon.write(config)
    wait_for(lambda: "shop/other" in mon.call("status"), 10, "reloaded")
    reloaded = time.time()

    def ends_at() -> float:
        return max(datetime.datetime.fromisoformat(a["endsAt"].replace("Z", "+00:00")).timestamp() for a in ours(True))

    wait_for(lambda: ends_at() > reloaded + 4.5, 10, "the alert pushed again after the reload")
    targets.set_health(200)
    wait_for(lambda: not ours(True), 20, "the alert resolved")
    assert 'hastack_mon_receiver_deliveries_total{monitor="web",namespace="shop",receiver="am"' in mon.metrics()
    # down again, then the probe is removed from the configuration: its alert is resolved too
    targets.set_health(503)
    wait_for(lambda: ours(True), 20, "listed again")
    config["monitors"][0]["spec"]["probes"] = [{"name": "port", "type": "tcp", "interval": "250ms"}]
    mon.write(config)
    wait_for(lambda: not ours(True), 20, "the removed probe's alert resolved")


def test_failover_receiver_asks_heartbeat_once_per_outage(
    targets: Targets, mon_factory: MonFactory, tmp_path: pathlib.Path
) -> None:
    # heartbeat's side is not part of this module: a ControlServer on the agreed socket stands in
    # for it and records the requests, so this test checks mon's half of the contract.
    requests: list[dict[str, Any]] = []
    sock = str(tmp_path / "heartbeat.sock")

    async def failover(args: dict[str, Any]) -> dict[str, Any]:
        requests.append(args)
        return {"accepted": True, "action": "failover", "detail": "switching to member-1"}

    with control_server(sock, {"failover": failover}):
        receivers = [{"name": "ha", "type": "failover", "haCluster": "shop-db", "socket": sock}]
        mon = mon_factory({"monitors": [monitor(targets, receivers, {"after": 3, "every": "500ms"})]})
        targets.set_health(503)
        wait_for(lambda: requests, 15, "the failover request")

        def realerts() -> int:
            return sum(h["action"] == "realert" for h in mon.call("history"))

        wait_for(lambda: realerts() >= 2, 15, "re-alerts within the outage")
        assert len(requests) == 1  # re-alerts (every 500ms) never ask again within an outage
        req = FailoverRequest.model_validate(requests[0])
        assert (req.ha_cluster, req.monitor, req.probe) == ("shop-db", "shop/web", "health")
        assert req.reason == "alert: 3 consecutive failures (after=3)" and req.detail.startswith("HTTP 503")
        targets.set_health(200)
        wait_for(lambda: mon.probe("web", "health", "shop")["alert"] == "ok", 10, "recovered")
        targets.set_health(503)
        wait_for(lambda: len(requests) >= 2, 15, "a second outage, a second request")


def failures(mon: MonProcess) -> float:
    prefix = 'hastack_mon_receiver_delivery_failures_total{monitor="web",namespace="shop",receiver="ha"'
    return sum(float(line.split()[-1]) for line in mon.metrics().splitlines() if line.startswith(prefix))


def test_failover_refusal_is_final_and_an_unreachable_heartbeat_is_retried(
    targets: Targets, mon_factory: MonFactory, tmp_path: pathlib.Path
) -> None:
    requests: list[dict[str, Any]] = []
    sock = str(tmp_path / "heartbeat.sock")

    async def refuse(args: dict[str, Any]) -> dict[str, Any]:
        requests.append(args)
        raise CommandError("refusing failover: no standby is alive and eligible")

    receivers = [
        {"name": "ha", "type": "failover", "haCluster": "shop-db", "socket": sock, "retries": 3, "backoff": "50ms"}
    ]
    targets.set_health(503)
    mon = mon_factory({"monitors": [monitor(targets, receivers, {"after": 2})]})
    wait_for(lambda: failures(mon) == 3, 15, "three attempts on a missing socket")
    assert "No such file" in mon.log() or "Connection refused" in mon.log()
    targets.set_health(200)
    wait_for(lambda: mon.probe("web", "health", "shop")["alert"] == "ok", 10, "recovered")
    with control_server(sock, {"failover": refuse}):
        targets.set_health(503)
        wait_for(lambda: failures(mon) == 4, 15, "the refusal counted")
        assert len(requests) == 1  # a refusal is not retried
        assert "refusing failover: no standby is alive and eligible" in mon.log()
