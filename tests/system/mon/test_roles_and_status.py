"""alerting: active (heartbeat's state file decides), and status events coalesced per interval."""

from __future__ import annotations

import contextlib
import json
import pathlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from harness.mon_env import MonProcess, Targets, wait_for
from hastack_common.state_file import GateState, write_state

MonFactory = Callable[[dict[str, Any]], MonProcess]


def spec(targets: Targets, interval: str = "200ms") -> dict[str, Any]:
    return {
        "target": {"host": "127.0.0.1", "port": targets.ports["http"]},
        "probes": [{"name": "health", "type": "http", "interval": interval, "http": {"path": "/health"}}],
        "alert": {"after": 2, "every": "0s", "upAlert": False},
        "receivers": [{"name": "hook", "type": "webhook", "url": targets.url("/hook")}],
    }


def set_role(run: pathlib.Path, role: str) -> None:
    write_state(run, GateState(member="m-0", role=role, serve=role == "active", generation=1))  # type: ignore[arg-type]


def test_only_the_active_member_alerts(targets: Targets, mon_factory: MonFactory, tmp_path: pathlib.Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    set_role(run, "standby")
    cfg = {
        "alerting": "active",
        "stateFile": str(run / "state.json"),
        "monitors": [{"name": "web", "spec": spec(targets)}],
    }
    mon = mon_factory(cfg)
    targets.set_health(503)
    wait_for(lambda: mon.probe("web", "health")["consecutiveFailures"] >= 5, 10, "failing on the standby")
    status = mon.probe("web", "health")
    assert status["alert"] == "suppressed" and "standby" in status["reason"]
    assert targets.admin("/admin/hooks")["hooks"] == []
    set_role(run, "active")  # promoted: the next failed result alerts
    hooks = wait_for(lambda: targets.admin("/admin/hooks")["hooks"], 10, "the alert once active")
    assert [h["kind"] for h in hooks] == ["alert"]
    assert mon.probe("web", "health")["alert"] == "alerting"


def test_status_events_are_coalesced(targets: Targets, mon_factory: MonFactory) -> None:
    mon = mon_factory({"statusInterval": "1s", "monitors": [{"name": "web", "spec": spec(targets, "100ms")}]})
    wait_for(lambda: mon.probe("web", "health")["ok"] is True, 10, "first result")
    events: list[dict[str, Any]] = []
    s = socket.socket(socket.AF_UNIX)
    s.connect(mon.socket)
    s.sendall(b'{"cmd": "events"}\n')
    f = s.makefile("r")
    assert json.loads(f.readline())["ok"]

    def read() -> None:
        with contextlib.suppress(OSError, ValueError):
            for line in f:
                events.append(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    start = time.monotonic()
    flaps = 0
    while time.monotonic() - start < 3:  # flap the target: many results change state
        targets.set_health(503 if flaps % 2 == 0 else 200)
        flaps += 1
        time.sleep(0.1)
    targets.set_health(200)
    wait_for(lambda: mon.probe("web", "health")["ok"] is True, 10, "settled")

    def last_status_up() -> bool:
        status = [e for e in list(events) if e["event"] == "status"]
        return bool(status) and status[-1]["status"]["summary"] == "1/1 up"

    wait_for(last_status_up, 10, "the settled status published")
    s.shutdown(socket.SHUT_RDWR)
    s.close()
    reader.join(5)
    status = [e for e in events if e["event"] == "status"]
    elapsed = time.monotonic() - start
    assert status, events
    assert len(status) <= elapsed / 1.0 + 1, [e.get("status", {}).get("summary") for e in status]
    assert status[-1]["monitor"] == "web" and "probes" in status[-1]["status"]
    transitions = [h for h in mon.call("history") if h["action"] == "transition"]
    assert len(transitions) > len(status)  # many changes, few status events


def test_concurrency_cap_holds_with_hung_targets(targets: Targets, mon_factory: MonFactory) -> None:
    hang = {"send": "x", "expect": "never"}
    probes = [
        {"name": f"hang-{i}", "type": "tcp", "interval": "500ms", "timeout": "500ms", "tcp": hang} for i in range(6)
    ]
    target = {"host": "127.0.0.1", "port": targets.ports["hang"]}
    mon = mon_factory(
        {"maxConcurrency": 2, "monitors": [{"name": "hang", "spec": {"target": target, "probes": probes}}]}
    )
    wait_for(lambda: targets.admin("/admin/hung")["max"] >= 2, 10, "the cap reached")
    wait_for(
        lambda: all(p["consecutiveFailures"] >= 2 for p in mon.call("status")["default/hang"]["probes"]),
        20,
        "every hung probe timed out twice",
    )
    assert targets.admin("/admin/hung")["max"] == 2  # never more than maxConcurrency in flight
    details = {p["lastResult"] for p in mon.call("status")["default/hang"]["probes"]}
    assert details == {"failure: timeout after 0.5s"}


def test_probes_that_raise_are_failed_probes_and_mon_keeps_running(targets: Targets, mon_factory: MonFactory) -> None:
    # inputs the probe libraries raise on (not a network failure): a bad HTTP method, a DNS label
    # longer than 63 bytes. Each must be a failed probe with the exception as detail.
    probes = [
        {"name": "bad-method", "type": "http", "interval": "200ms", "http": {"method": "GE T"}},
        {"name": "bad-name", "type": "dns", "interval": "200ms", "dns": {"name": "x" * 70 + ".test"}},
        {"name": "good", "type": "http", "interval": "200ms", "http": {"path": "/health"}},
    ]
    target = {"host": "127.0.0.1", "port": targets.ports["http"]}
    mon = mon_factory({"monitors": [{"name": "m", "spec": {"target": target, "probes": probes}}]})
    wait_for(lambda: mon.probe("m", "bad-name")["consecutiveFailures"] >= 3, 10, "bad probes failing")
    wait_for(lambda: mon.probe("m", "bad-method")["consecutiveFailures"] >= 3, 10, "bad probes failing")
    assert mon.probe("m", "bad-method")["lastResult"].startswith("failure: probe error: ValueError")
    assert mon.probe("m", "bad-name")["lastResult"].startswith("failure: probe error: UnicodeError")
    good = mon.probe("m", "good")
    assert good["ok"] is True and good["alert"] == "ok"
    errors = [line for line in mon.metrics().splitlines() if line.startswith("hastack_probe_errors_total{")]
    assert len(errors) == 2 and all(float(line.split()[-1]) >= 3 for line in errors)
    assert mon.proc.running()
