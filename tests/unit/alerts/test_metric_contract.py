"""Contract between the chart's alerts and the components: every metric an alert reads is exported
by a component under that exact name, with every label the alert matches or groups by, and every
label value it matches is one the component can produce. Either side renamed: this fails."""

from __future__ import annotations

import re
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics import MetricWrapperBase

import hastack_blockrepl.metrics as blockrepl_metrics
import hastack_heartbeat.metrics as heartbeat_metrics
import hastack_heartbeat.wire as heartbeat_wire
import hastack_mon.metrics as mon_metrics
import hastack_operator.metrics as operator_metrics
from harness.alerts_rules import grouping, load_rules, selectors

# Labels the scrape adds (charts/hastack/templates/podmonitor.yaml; docs/operator.md "Alerts").
MEMBER_TARGET = {"namespace", "pod", "container", "hacluster", "job", "instance", "endpoint"}
OPERATOR_TARGET = {"namespace", "pod", "container", "job", "instance", "endpoint"}
# `up` is written by Prometheus itself for every target
SYNTHETIC = {"up": ("prometheus", MEMBER_TARGET | OPERATOR_TARGET)}

# label values the components can produce, for matchers on them
VALUES: dict[tuple[str, str], tuple[str, ...]] = {
    ("hastack_heartbeat_role", "role"): heartbeat_metrics.ROLES,
    ("hastack_heartbeat_peer_state", "state"): heartbeat_metrics.PEER_STATES,
    ("hastack_heartbeat_failovers_total", "reason"): heartbeat_metrics.TAKEOVER_KINDS,
    ("hastack_heartbeat_bad_packets_total", "reason"): heartbeat_wire.REASONS,
    ("hastack_heartbeat_status_publishes_total", "result"): heartbeat_metrics.PUBLISH_RESULTS,
    ("hastack_blockrepl_role", "role"): blockrepl_metrics.ROLES,
    ("hastack_blockrepl_disk_state", "state"): blockrepl_metrics.DISKS,
    ("hastack_blockrepl_connection_state", "state"): blockrepl_metrics.CONNECTIONS,
    ("hastack_blockrepl_replication_state", "state"): blockrepl_metrics.REPLICATIONS,
    ("hastack_mon_alert_state", "state"): mon_metrics.ALERT_STATES,
    ("hastack_mon_config_reloads_total", "result"): mon_metrics.RELOAD_RESULTS,
    ("hastack_mon_status_publishes_total", "result"): mon_metrics.PUBLISH_RESULTS,
}
RULES = load_rules()


def exposed_names(metric: Any) -> list[str]:
    """What a prometheus_client metric is called on /metrics (counters add `_total`)."""
    name, kind = metric._name, metric._type
    if kind == "counter":
        return [name + "_total"]
    if kind == "histogram":
        return [name + "_bucket", name + "_sum", name + "_count"]
    return [name]


def collect(component: str, holder: Any, target: set[str]) -> dict[str, tuple[str, set[str]]]:
    out = {}
    for value in vars(holder).values():
        if isinstance(value, MetricWrapperBase):
            for name in exposed_names(value):
                labels = set(value._labelnames) | target | ({"le"} if name.endswith("_bucket") else set())
                out[name] = (component, labels)
    return out


def heartbeat() -> heartbeat_metrics.Metrics:
    return heartbeat_metrics.Metrics(CollectorRegistry())


def blockrepl() -> blockrepl_metrics.Metrics:
    return blockrepl_metrics.Metrics("shop/db", CollectorRegistry())


EXPORTED: dict[str, tuple[str, set[str]]] = {
    **collect("heartbeat", heartbeat(), MEMBER_TARGET),
    **collect("blockrepl", blockrepl(), MEMBER_TARGET),
    **collect("mon", mon_metrics.Metrics(), MEMBER_TARGET),
    **collect("operator", operator_metrics, OPERATOR_TARGET),
    **{name: (c, set(labels)) for name, (c, labels) in SYNTHETIC.items()},
}


def rule_id(rule: dict[str, Any]) -> str:
    return rule["alert"] + ("/" + rule["labels"]["cause"] if "cause" in rule.get("labels", {}) else "")


def test_the_exported_set_is_what_the_components_serve() -> None:
    """The collector above reads names the way /metrics shows them (guards the helper itself)."""
    text = generate_latest(heartbeat().registry).decode()
    assert re.search(r"^hastack_heartbeat_failovers_total\{", text, re.M)
    assert "hastack_heartbeat_failovers_total" in EXPORTED
    assert "hastack_blockrepl_resync_bytes_total" in EXPORTED
    assert "hastack_blockrepl_resync_bytes" not in EXPORTED
    assert EXPORTED["hastack_blockrepl_out_of_sync_bytes"][1] >= {"resource", "peer", "hacluster"}
    assert all(name.startswith("hastack_") for name in EXPORTED if name not in SYNTHETIC)


def contract_problems(alert: str, expr: str) -> list[str]:
    """What in ``expr`` the components do not export: names, labels, label values, grouping."""
    found = selectors(expr)
    if not found:
        return [f"{alert}: no metric found in {expr!r}"]
    problems = []
    for sel in found:
        if sel.metric not in EXPORTED:
            problems.append(f"{alert}: {sel.metric} is exported by no component")
            continue
        component, labels = EXPORTED[sel.metric]
        for m in sel.matchers:
            if m.label not in labels:
                problems.append(f"{alert}: {sel.metric} ({component}) has no label {m.label}")
                continue
            known = VALUES.get((sel.metric, m.label))
            if known is None or m.op not in ("=", "=~"):
                continue
            wanted = m.value.split("|") if m.op == "=~" else [m.value]
            unknown = [v for v in wanted if v not in known]
            if unknown:
                problems.append(f"{alert}: {sel.metric}{{{m.label}}} is never {unknown} (only {known})")
    for kind, group, metrics in grouping(expr):
        if not metrics:
            problems.append(f"{alert}: `{kind}` over no metric")
        for metric in metrics:
            missing = set(group) - EXPORTED.get(metric, ("", set(group)))[1]
            if missing:
                problems.append(f"{alert}: {kind} ({', '.join(group)}) but {metric} lacks {sorted(missing)}")
    return problems


@pytest.mark.parametrize("rule", RULES, ids=rule_id)
def test_every_metric_label_and_value_an_alert_reads_is_exported(rule: dict[str, Any]) -> None:
    assert contract_problems(rule["alert"], rule["expr"]) == []


@pytest.mark.parametrize(("expr", "problem"), [
    ('sum by (namespace, hacluster) (hastack_heartbeat_roles{role="active"}) == 0', "exported by no component"),
    ('sum by (namespace, hacluster) (hastack_heartbeat_role{role="Active"}) == 0', "is never ['Active']"),
    ('sum by (namespace, cluster) (hastack_heartbeat_role{role="active"}) == 0', "lacks ['cluster']"),
    ('max by (resource) (hastack_blockrepl_disk_state{state=~"Outdated|Stale"}) == 1', "is never ['Stale']"),
    ("increase(hastack_blockrepl_resync_bytes[5m]) > 0", "exported by no component"),  # counters add _total
    ('hastack_operator_leader{hacluster="db"} == 0', "has no label hacluster"),
    ('a_metric and on (namespace, peer) hastack_heartbeat_role', "lacks ['peer']"),
])
def test_the_contract_check_catches_a_broken_alert(expr: str, problem: str) -> None:
    problems = contract_problems("Broken", expr)
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize("rule", [r for r in RULES if "for" not in r], ids=rule_id)
def test_counters_an_instant_alert_counts_exist_from_the_start(rule: dict[str, Any]) -> None:
    """increase() cannot see a counter's first step if the series appears at 1: an alert without
    `for` that counts events needs the series exported at 0 from the start."""
    registries = {"heartbeat": heartbeat().registry, "blockrepl": blockrepl().registry,
                  "mon": mon_metrics.Metrics().registry}
    for sel in selectors(rule["expr"]):
        component = EXPORTED[sel.metric][0]
        if not sel.in_range_function or component not in registries:
            continue
        text = generate_latest(registries[component]).decode()
        series = [line for line in text.splitlines() if line.startswith(sel.metric + "{") or
                  line.startswith(sel.metric + " ")]
        for m in sel.matchers:
            if m.op == "=":
                series = [s for s in series if f'{m.label}="{m.value}"' in s]
            elif m.op == "=~":
                series = [s for s in series if re.search(rf'{m.label}="({m.value})"', s)]
        assert series, f"{rule['alert']}: {sel.metric} {sel.matchers} is not exported until it first counts"
