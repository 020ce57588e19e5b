"""mon's monitor-status report: its shape, when it is written, and where (pure parts).

The API server itself is exercised in tests/system/mon/test_status_annotation.py; here the
client is a recording double only to drive the retry logic without a network.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hastack_mon.publish import (
    PROBE_FIELDS,
    Pacer,
    PodRef,
    StatusPublisher,
    fingerprint,
    fit,
    pod_from_env,
    probes_of,
    render,
)
from hastack_operator.resources import monitor_objects
from hastack_operator.resources.monitor_status import ANNOTATION_MONITOR_STATUS, report_of


def probe(name: str = "health", **over: Any) -> dict[str, Any]:
    p = {
        "name": name,
        "ok": True,
        "lastResult": "success: HTTP 200",
        "consecutiveFailures": 0,
        "lastChange": "2026-11-24T22:00:00Z",
        "latency": "1.2ms",
        "latencySeconds": 0.0012,
        "alert": "ok",
        "reason": "",
    }
    return {**p, **over}


STATUS = {"ns/web": {"probes": [probe()], "summary": "1/1 up", "alerting": 0}}


def test_report_holds_only_the_crd_probe_fields_without_nulls() -> None:
    status = {"ns/web": {"probes": [probe(), probe("port", ok=None, lastResult=None, lastChange=None,
                                                   latency=None, latencySeconds=None)]}}
    out = probes_of(status)
    assert out["ns/web"]["probes"][0] == {k: probe()[k] for k in PROBE_FIELDS}
    assert out["ns/web"]["probes"][1] == {"name": "port", "consecutiveFailures": 0, "alert": "ok", "reason": ""}


def test_the_operator_reads_what_mon_renders() -> None:
    now = dt.datetime(2026, 11, 24, 22, 0, 5, tzinfo=dt.UTC)
    text = render(probes_of(STATUS), now)
    assert json.loads(text)["publishedAt"] == "2026-11-24T22:00:05Z"
    pod = {"metadata": {"name": "hasm-web-0", "annotations": {ANNOTATION_MONITOR_STATUS: text}}}
    part, why = report_of(pod, "ns/web", now + dt.timedelta(seconds=10))
    assert why == "" and part is not None
    assert part["probes"][0]["lastResult"] == "success: HTTP 200"
    stale, why = report_of(pod, "ns/web", now + dt.timedelta(seconds=60))
    assert stale is None and "stopped reporting" in why


def test_a_very_large_report_is_shortened_to_fit_the_pod_annotations() -> None:
    long = "x" * 1024
    small = probes_of(STATUS)
    assert fit(small) is small
    big = probes_of({f"ns/m{i}": {"probes": [probe(f"p{j}", lastResult="failure: " + long, reason=long)
                                             for j in range(64)]} for i in range(4)})
    out = fit(big)
    assert len(json.dumps(out, separators=(",", ":"))) < 192 * 1024
    p = out["ns/m3"]["probes"][63]
    assert p["name"] == "p63" and p["lastResult"].startswith("failure: x") and len(p["reason"]) == 160
    assert p["consecutiveFailures"] == 0 and p["alert"] == "ok"


def test_a_new_latency_alone_is_not_a_change_but_a_new_result_is() -> None:
    base = fingerprint(probes_of(STATUS))
    assert fingerprint(probes_of({"ns/web": {"probes": [probe(latency="9ms")]}})) == base
    assert fingerprint(probes_of({"ns/web": {"probes": [probe(consecutiveFailures=1)]}})) != base
    assert fingerprint(probes_of({})) != base


@pytest.mark.parametrize(
    ("written_at", "written", "now", "fp", "due"),
    [
        (-1e9, None, 0.0, "a", True),  # never written
        (10.0, "a", 10.5, "b", False),  # changed, but within min_interval
        (10.0, "a", 11.0, "b", True),  # changed, min_interval is up
        (10.0, "a", 15.0, "a", False),  # unchanged, max_interval not up
        (10.0, "a", 20.0, "a", True),  # unchanged: republished every max_interval
    ],
)
def test_pacer(written_at: float, written: str | None, now: float, fp: str, due: bool) -> None:
    assert Pacer(1.0, 10.0, written_at, written).due(now, fp) is due


def test_pacer_backs_off_after_failures_up_to_max_interval() -> None:
    p = Pacer(1.0, 10.0)
    gaps = []
    now = 0.0
    for _ in range(7):
        while not p.due(now, "x"):
            now += 0.25
        gaps.append(now - p.failed_at if p.failures else now)
        p.failed(now)
    assert gaps[1:] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    p.ok(now, "x")
    assert not p.due(now + 1, "x") and p.due(now + 1, "y")


@given(st.lists(st.tuples(st.floats(0, 30), st.booleans()), max_size=60))
def test_pacer_never_writes_twice_within_min_interval(steps: list[tuple[float, bool]]) -> None:
    p, now, fp, last = Pacer(1.0, 10.0), 0.0, 0, None
    for dt_, change in steps:
        now += dt_
        fp += change
        if p.due(now, str(fp)):
            assert last is None or now - last >= 1.0
            last = now
            p.ok(now, str(fp))


def test_pod_from_env() -> None:
    assert pod_from_env({}) is None
    assert pod_from_env({"HASTACK_NAMESPACE": "x"}) is None
    assert pod_from_env({"HASTACK_POD_NAME": "db-0", "HASTACK_NAMESPACE": "prod"}) == PodRef("prod", "db-0")


def test_the_standalone_mon_pod_knows_its_name_and_namespace() -> None:
    body = {"metadata": {"name": "web", "namespace": "ns", "uid": "u"},
            "spec": {"target": {"host": "example.org"}, "probes": [{"name": "p", "type": "tcp"}]}}
    sts = next(o for o in monitor_objects.desired(body, "hastack:test") if o["kind"] == "StatefulSet")
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
           for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env == {"HASTACK_POD_NAME": "metadata.name", "HASTACK_NAMESPACE": "metadata.namespace"}


class FlakyCore:
    """Stands in for CoreV1Api: fails ``fail`` times, then records the patches."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.patches: list[tuple[str, str, Any]] = []

    def patch_namespaced_pod(self, name: str, namespace: str, body: Any, **kw: Any) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("connection refused")
        self.patches.append((namespace, name, body))


def test_a_failed_write_is_retried_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    core, results = FlakyCore(fail=2), list[str]()
    pub = StatusPublisher(PodRef("ns", "db-0"), lambda: STATUS, on_result=results.append, client=lambda: None)
    pub._core = core

    async def go() -> list[bool]:
        return [await pub.tick(t) for t in (0.0, 0.5, 1.0, 2.0, 3.0, 3.5)]

    assert asyncio.run(go()) == [False, False, False, False, True, False]
    assert results == ["error", "error", "ok"]
    (ns, name, body), = core.patches
    assert (ns, name) == ("ns", "db-0")
    report = json.loads(body["metadata"]["annotations"]["hastack.io/monitor-status"])
    assert report["monitors"] == probes_of(STATUS)
    assert "monitor status not published" in caplog.text
