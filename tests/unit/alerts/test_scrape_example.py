"""charts/hastack/files/prometheus-example.yaml gives each target the labels the alerts use.

Debian's promtool is built without Kubernetes service discovery, so it cannot load this file;
the two relabel actions it uses (keep, replace) are applied here as Prometheus documents them
(source labels joined by ";", the regex anchored, replace's default regex "(.*)" and "$1")."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from harness.alerts_rules import CHART

CONFIG = yaml.safe_load((CHART / "files" / "prometheus-example.yaml").read_text())


def relabel(target: dict[str, str], rules: list[dict[str, Any]]) -> dict[str, str] | None:
    labels = dict(target)
    for r in rules:
        value = r.get("separator", ";").join(labels.get(s, "") for s in r["source_labels"])
        match = re.fullmatch(r.get("regex", "(.*)"), value)
        action = r.get("action", "replace")
        if action == "keep":
            if not match:
                return None
        elif action == "replace":
            if match:
                labels[r["target_label"]] = match.expand(r.get("replacement", "$1").replace("$1", r"\1"))
        else:
            raise AssertionError(f"relabel action {action} not modelled here")
    return {k: v for k, v in labels.items() if not k.startswith("__")}


def pod_target(pod: str, container: str, port: str, labels: dict[str, str], init: bool) -> dict[str, str]:
    t = {"__meta_kubernetes_namespace": "shop", "__meta_kubernetes_pod_name": pod,
         "__meta_kubernetes_pod_container_name": container, "__meta_kubernetes_pod_container_port_name": port,
         "__meta_kubernetes_pod_container_init": str(init).lower()}
    for k, v in labels.items():
        key = re.sub(r"[^a-zA-Z0-9_]", "_", k)
        t[f"__meta_kubernetes_pod_label_{key}"] = v
        t[f"__meta_kubernetes_pod_labelpresent_{key}"] = "true"
    return t


MEMBER = {"hastack.io/cluster": "db", "apps.kubernetes.io/pod-index": "0"}
CASES = [
    (pod_target("db-0", "blockrepl", "block-metrics", MEMBER, True), "hastack-members"),
    (pod_target("db-0", "heartbeat", "heart-metrics", MEMBER, True), "hastack-members"),
    (pod_target("db-0", "mon", "mon-metrics", MEMBER, True), "hastack-mon"),
    (pod_target("db-0", "blockrepl", "replication", MEMBER, True), None),
    (pod_target("db-0", "app", "http", MEMBER, False), None),
    (pod_target("hasm-web-0", "mon", "metrics", {"hastack.io/monitor": "web"}, False), "hastack-mon"),
    (pod_target("hastack-5d9", "operator", "metrics", {"app.kubernetes.io/name": "hastack",
                                                      "app.kubernetes.io/component": "operator"}, False),
     "hastack-operator"),
    (pod_target("other-0", "app", "metrics", {"app": "other"}, False), None),
]


@pytest.mark.parametrize(("target", "job"), CASES, ids=[f"{c[0]['__meta_kubernetes_pod_name']}:"
                                                        f"{c[0]['__meta_kubernetes_pod_container_port_name']}"
                                                        for c in CASES])
def test_each_target_lands_in_one_job_with_the_alert_labels(target: dict[str, str], job: str | None) -> None:
    kept = {sc["job_name"]: relabel(target, sc["relabel_configs"]) for sc in CONFIG["scrape_configs"]}
    kept = {name: labels for name, labels in kept.items() if labels is not None}
    assert list(kept) == ([job] if job else [])
    if job:
        labels = kept[job]
        assert labels["namespace"] == "shop" and labels["pod"] == target["__meta_kubernetes_pod_name"]
        assert labels["container"] == target["__meta_kubernetes_pod_container_name"]
        if "__meta_kubernetes_pod_label_hastack_io_cluster" in target:
            assert labels["hacluster"] == "db"


def test_mon_keeps_its_own_namespace_label_and_rules_are_loaded() -> None:
    jobs = {sc["job_name"]: sc for sc in CONFIG["scrape_configs"]}
    assert jobs["hastack-mon"].get("honor_labels") is True
    assert not jobs["hastack-members"].get("honor_labels")
    assert CONFIG["rule_files"] == ["alerts.yaml"]
    assert (CHART / "files" / "alerts.yaml").is_file()
