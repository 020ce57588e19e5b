"""mon as a real process: alert sequences delivered to a real webhook endpoint, asserted exactly."""

from __future__ import annotations

import datetime
import itertools
import pathlib
import re
from collections.abc import Callable
from typing import Any

from harness.mon_env import MonProcess, Targets, wait_for

MonFactory = Callable[[dict[str, Any]], MonProcess]


def web_monitor(targets: Targets, alert: dict[str, Any], name: str = "web") -> dict[str, Any]:
    return {
        "name": name,
        "spec": {
            "target": {"host": "127.0.0.1", "port": targets.ports["http"]},
            "probes": [{"name": "health", "interval": "200ms", "timeout": "1s", "http": {"path": "/health"}}],
            "alert": alert,
            "receivers": [{"name": "hook", "type": "webhook", "url": targets.url("/hook"), "backoff": "100ms"}],
        },
    }


def hooks(targets: Targets) -> list[dict[str, Any]]:
    return list(targets.admin("/admin/hooks")["hooks"])


def kinds(targets: Targets) -> list[tuple[str, str]]:
    return [(h["serviceMonitor"], h["kind"]) for h in hooks(targets)]


def ts(h: dict[str, Any]) -> float:
    return datetime.datetime.fromisoformat(h["time"].replace("Z", "+00:00")).timestamp()


def test_after_every_upalert_from_a_down_start(targets: Targets, mon_factory: MonFactory) -> None:
    targets.set_health(503, "down")  # down before mon starts: no storm, alert only after 3 failures
    mon = mon_factory({"monitors": [web_monitor(targets, {"after": 3, "every": "1s", "upAlert": True})]})
    first = wait_for(lambda: hooks(targets), 15, "the first alert")
    assert first[0]["kind"] == "alert" and first[0]["consecutiveFailures"] == 3
    assert first[0]["reason"] == "alert: 3 consecutive failures (after=3)"
    assert first[0]["detail"].startswith("HTTP 503") and first[0]["status"] == "firing"
    wait_for(lambda: len(hooks(targets)) >= 3, 15, "two re-alerts")
    targets.set_health(200)
    wait_for(lambda: kinds(targets)[-1] == ("web", "upalert"), 15, "the up-alert")
    got = hooks(targets)
    seq = [h["kind"] for h in got]
    assert seq[0] == "alert" and seq[-1] == "upalert"
    assert set(seq[1:-1]) == {"realert"}, seq
    times = [ts(h) for h in got[:-1]]
    assert all(b - a >= 0.95 for a, b in itertools.pairwise(times)), times  # every: 1s
    status = mon.probe("web", "health")
    assert status["alert"] == "ok" and status["ok"] is True
    wait_for(lambda: mon.probe("web", "health")["consecutiveFailures"] == 0, 5, "status settles")
    n = len(got)
    wait_for(lambda: mon.probe("web", "health")["reason"] == "success", 5, "steady")
    assert len(hooks(targets)) == n  # nothing more while up
    history = [(h["monitor"], h["action"]) for h in mon.call("history") if h["action"] != "transition"]
    assert history == [("web", k) for k in ["alert", *["realert"] * (n - 2), "resolve", "upalert"]]


def test_depends_on_suppresses_the_child_until_the_parent_is_up(
    targets: Targets, mon_factory: MonFactory, tmp_path: pathlib.Path
) -> None:
    flag = tmp_path / "db-up"
    flag.touch()
    db = {
        "name": "db",
        "spec": {
            "target": {"host": "127.0.0.1"},
            "probes": [
                {
                    "name": "up",
                    "type": "exec",
                    "interval": "200ms",
                    "exec": {"command": ["test", "-e", str(flag)]},
                }
            ],
            "alert": {"after": 1, "upAlert": True},
            "receivers": [{"name": "hook", "type": "webhook", "url": targets.url("/hook")}],
        },
    }
    web = web_monitor(targets, {"after": 2, "dependsOn": ["db"], "upAlert": False})
    mon = mon_factory({"monitors": [db, web]})
    wait_for(lambda: mon.probe("web", "health")["ok"] is True, 10, "web probed")
    wait_for(lambda: mon.probe("db", "up")["ok"] is True, 10, "db probed")
    flag.unlink()
    targets.set_health(503)
    wait_for(lambda: ("db", "alert") in kinds(targets), 10, "db alert")
    wait_for(lambda: mon.probe("web", "health")["consecutiveFailures"] >= 6, 10, "web failing a while")
    web_status = mon.probe("web", "health")
    assert web_status["alert"] == "suppressed"
    assert "dependency db down" in web_status["reason"]
    assert kinds(targets) == [("db", "alert")]
    flag.touch()
    wait_for(lambda: ("web", "alert") in kinds(targets), 10, "web alert once db is up")
    assert kinds(targets) == [("db", "alert"), ("db", "upalert"), ("web", "alert")]
    targets.set_health(200)
    wait_for(lambda: mon.probe("web", "health")["alert"] == "ok", 10, "web recovered")
    assert kinds(targets) == [("db", "alert"), ("db", "upalert"), ("web", "alert")]  # web has no upAlert


def test_webhook_retries_until_the_endpoint_recovers(targets: Targets, mon_factory: MonFactory) -> None:
    targets.admin("/admin/hook", {"fail": 3})
    targets.set_health(503)
    mon = mon_factory({"monitors": [web_monitor(targets, {"after": 1, "every": "0s"})]})
    wait_for(lambda: hooks(targets), 15, "delivery after the endpoint recovers")
    assert kinds(targets) == [("web", "alert")]
    assert targets.admin("/admin/hooks")["refused"] == 3
    metrics = mon.metrics()
    line = next(m for m in metrics.splitlines() if m.startswith("hastack_mon_receiver_delivery_failures_total{"))
    assert 'receiver="hook"' in line and float(line.split()[-1]) == 3.0
    assert 'hastack_mon_receiver_deliveries_total{monitor="web",namespace="default",receiver="hook"' in metrics


def test_reload_adds_probes_and_keeps_running_on_a_bad_file(targets: Targets, mon_factory: MonFactory) -> None:
    cfg: dict[str, Any] = {"monitors": [web_monitor(targets, {"after": 1, "every": "0s"})]}
    mon = mon_factory(cfg)
    wait_for(lambda: mon.probe("web", "health")["ok"] is True, 10, "first probe")
    tcp = {"name": "tcp", "interval": "200ms", "tcp": {"port": targets.ports["tcp"], "expect": "hello"}}
    cfg["monitors"][0]["spec"]["probes"].append(tcp)
    mon.write(cfg)
    wait_for(lambda: mon.probe("web", "tcp")["ok"] is True, 10, "reloaded probe")
    pid = mon.proc.pid
    mon.write({"monitors": [{"name": "broken", "spec": {"probes": []}}]})
    wait_for(lambda: "configuration refused" in mon.log(), 10, "refusal logged")
    assert mon.probe_names("web") == {"health", "tcp"}
    assert mon.proc.pid == pid and mon.proc.running()
    refused = re.search(r'^hastack_mon_config_reloads_total\{result="error"\} (\S+)$', mon.metrics(), re.M)
    assert refused and float(refused.group(1)) >= 1  # the series exists at 0 from the start
    cfg["monitors"][0]["spec"]["probes"] = [tcp]
    mon.write(cfg)
    wait_for(lambda: mon.probe_names("web") == {"tcp"}, 10, "probe removed")
    assert 'probe="health"' not in mon.metrics().split("hastack_mon_receiver")[0]
