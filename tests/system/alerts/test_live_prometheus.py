"""The chart's rule file in a real Prometheus, scraping real blockrepl and mon processes.

Where `promtool test rules` feeds hand-written series, this scrapes what the processes really
export: every rule evaluates without error, and the alerts for the faults made here (a replica
whose peer is gone, a probe that fails, a member nobody can scrape) appear with the labels the
runbooks speak of. The scrape adds the target labels the chart's PodMonitors add (namespace, pod,
container, hacluster) as static labels: there is no Kubernetes discovery here.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from harness.alerts_rules import ALERTS_FILE, load_rules
from harness.blockrepl_cluster import Cluster
from harness.mon_env import MonProcess, http_json, need, promql
from harness.procs import Supervisor, free_port, wait_for


def target(port: int, pod: str, container: str, hacluster: str = "db") -> dict[str, Any]:
    return {"targets": [f"127.0.0.1:{port}"],
            "labels": {"namespace": "shop", "pod": pod, "container": container, "hacluster": hacluster}}


@pytest.fixture
def volume(tmp_path: pathlib.Path) -> Iterator[Cluster]:
    (tmp_path / "vol").mkdir()
    c = Cluster(tmp_path / "vol", 2, size=8 << 20, metrics=True)
    try:
        c.start()
        c.wait_connected(60)
        yield c
    finally:
        c.stop()


def alerts(base: str) -> list[dict[str, Any]]:
    return list(http_json(f"{base}/api/v1/alerts")["data"]["alerts"])


def find(found: list[dict[str, Any]], name: str, **labels: str) -> dict[str, Any] | None:
    for a in found:
        if a["labels"]["alertname"] == name and all(a["labels"].get(k) == v for k, v in labels.items()):
            return a
    return None


def test_rules_evaluate_on_live_series_and_the_faults_alert(volume: Cluster, sup: Supervisor,
                                                            tmp_path: pathlib.Path) -> None:
    volume[0].call("primary")
    closed = free_port()  # nothing listens here: the probe fails, the "gone" member cannot be scraped
    mon = MonProcess(sup, tmp_path, {"monitors": [{"name": "web", "namespace": "shop", "spec": {
        "target": {"host": "127.0.0.1", "port": closed},
        "probes": [{"name": "tcp", "interval": "250ms", "timeout": "1s", "tcp": {}}],
        "alert": {"after": 2}, "receivers": []}}]})
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS_FILE)],
        "scrape_configs": [
            {"job_name": "hastack-members", "static_configs": [
                target(int(r.cfg["metrics"]["listen"].rsplit(":", 1)[1]), f"db-{r.node_id}", "blockrepl")
                for r in volume.replicas] + [target(closed, "gone-0", "heartbeat", hacluster="gone")]},
            {"job_name": "hastack-mon", "honor_labels": True, "static_configs": [target(mon.port, "db-0", "mon")]},
        ],
    }))
    prom = sup.start("prometheus", [need("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
                                    f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                                    f"--web.listen-address=127.0.0.1:{port}"])
    base = f"http://127.0.0.1:{port}"

    def rules_evaluated() -> list[dict[str, Any]] | None:
        assert prom.running(), prom.tail(40)
        groups = http_json(f"{base}/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("2") and
                                      not r["lastEvaluation"].startswith("0001") for r in rules) else None

    rules = wait_for(rules_evaluated, 60, "Prometheus evaluates every rule")
    assert len(rules) == len(load_rules())

    volume[1].kill()  # the peer's process dies: the Primary loses its replication link

    def faults_alerting() -> list[dict[str, Any]] | None:
        found = alerts(base)
        wanted = [find(found, "ServiceMonitorProbeDown", namespace="shop", monitor="web", probe="tcp", kind="tcp"),
                  find(found, "ReplicatedVolumeDegraded", cause="disconnected", namespace="shop", hacluster="db",
                       pod="db-0", resource="r0", peer="1"),
                  find(found, "HAClusterMemberMetricsDown", hacluster="gone", pod="gone-0", container="heartbeat"),
                  find(found, "HAClusterNoActiveMember", namespace="shop", hacluster="gone")]
        return found if all(wanted) else None

    found = wait_for(faults_alerting, 60, "the faults' alerts in Prometheus")
    # mon decided (after=2 failures): no `for` of its own, so it fires; the others wait their `for`
    assert find(found, "ServiceMonitorProbeDown")["state"] == "firing"  # type: ignore[index]
    assert find(found, "ReplicatedVolumeDegraded")["state"] == "pending"  # type: ignore[index]
    for quiet in ("HAClusterSplitBrain", "ReplicatedVolumeWritesSuspended", "ReplicatedVolumeIOErrors",
                  "ReplicatedVolumeAuthFailures", "ServiceMonitorConfigRejected"):
        assert find(found, quiet) is None, f"{quiet} on healthy series: {found}"
    groups = http_json(f"{base}/api/v1/rules")["data"]["groups"]
    broken = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"]
    assert broken == [], broken
    # the same check catches a rule that drifted from the exporter: a renamed metric or state finds nothing
    rule = next(r for r in load_rules() if r.get("labels", {}).get("cause") == "disconnected")
    assert promql(base, rule["expr"]), "the rule's own expression matches the live series"
    for old, new in (("hastack_blockrepl_connection_state", "hastack_blockrepl_connection"),
                     ('state="Connected"', 'state="Established"')):
        drifted = rule["expr"].replace(old, new)
        assert drifted != rule["expr"] and promql(base, drifted) == [], drifted
