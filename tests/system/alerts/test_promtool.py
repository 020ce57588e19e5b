"""The chart's alerts under the real Prometheus tools: `promtool check rules` on the plain file and on
the spec of the PrometheusRule helm renders, `promtool test rules` on both (every alert fires when it
should and not in its near misses), and a broken expression makes promtool fail."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

from harness.alerts_rules import (
    ALERTS_FILE,
    MONITORING_APIS,
    alert_names,
    helm_template,
    load_rules,
    promtool,
)
from harness.procs import run

HERE = pathlib.Path(__file__).parent
TEST_FILES = sorted(HERE.glob("*.test.yaml"))


def check(path: pathlib.Path) -> str:
    res = run([promtool(), "check", "rules", str(path)], check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout + res.stderr


def point_at(test_file: pathlib.Path, rules: pathlib.Path, tmp: pathlib.Path) -> pathlib.Path:
    """A copy of the test file whose rule_files is ``rules``."""
    doc = yaml.safe_load(test_file.read_text())
    doc["rule_files"] = [str(rules)]
    copy = tmp / test_file.name
    copy.write_text(yaml.safe_dump(doc, sort_keys=False))
    return copy


def unit_test(test_file: pathlib.Path, rules: pathlib.Path, tmp: pathlib.Path) -> tuple[int, str]:
    """Run one test file against ``rules``."""
    res = run([promtool(), "test", "rules", str(point_at(test_file, rules, tmp))], check=False)
    return res.returncode, res.stdout + res.stderr


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The PrometheusRule's spec as helm renders it with default values, as a rule file."""
    docs = helm_template(show_only="templates/prometheusrule.yaml")
    assert [d["kind"] for d in docs] == ["PrometheusRule"]
    path = tmp_path_factory.mktemp("rendered") / "prometheusrule-spec.yaml"
    path.write_text(yaml.safe_dump(docs[0]["spec"]))
    return path


def test_the_rule_file_passes_promtool_check() -> None:
    out = check(ALERTS_FILE)
    assert f"SUCCESS: {len(load_rules())} rules found" in out


def test_the_rendered_prometheusrule_passes_promtool_check_and_equals_the_file(rendered: pathlib.Path) -> None:
    out = check(rendered)
    assert f"SUCCESS: {len(load_rules())} rules found" in out
    assert yaml.safe_load(rendered.read_text()) == yaml.safe_load(ALERTS_FILE.read_text())


def test_promtool_unit_tests_pass_on_the_file() -> None:
    res = run([promtool(), "test", "rules", *map(str, TEST_FILES)], check=False)  # rule_files: the chart's file
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert out.count("SUCCESS") == len(TEST_FILES), out


def test_promtool_unit_tests_pass_on_the_rendered_rule(rendered: pathlib.Path, tmp_path: pathlib.Path) -> None:
    copies = [point_at(f, rendered, tmp_path) for f in TEST_FILES]
    res = run([promtool(), "test", "rules", *map(str, copies)], check=False)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert out.count("SUCCESS") == len(TEST_FILES), out


# Each mutation is a plausible mistake; the near-miss and firing cases of the test files must catch it.
MUTATIONS = [
    ("HAClusterNoActiveMember", "for: 1m\n", "for: 0s\n"),  # a switchover gap would page
    ("HAClusterNoActiveMember", '(up{hacluster!=""})', '(up{hacluster="none"})'),  # no fallback on `up`
    ("HAClusterSplitBrain", "(hastack_blockrepl_split_brain) == 1", "(hastack_blockrepl_split_brain) == 2"),
    ("HAClusterNoEligibleStandby", "hastack_heartbeat_eligible == 1", "hastack_heartbeat_eligible >= 0"),
    ("ReplicatedVolumeDegraded", '"Consistent|Outdated|Inconsistent|Diskless"', '"Consistent|Outdated|Diskless"'),
    ("ReplicatedVolumeDegraded", '"Consistent|Outdated|Inconsistent|Diskless"', '"Outdated|Inconsistent|Diskless"'),
    ("ReplicatedVolumeDegraded", "unless on (namespace, hacluster, resource, pod)",
     "or on (namespace, hacluster, resource, pod)"),
    ("ReplicatedVolumeResyncStalled", "[5m])) >= 0", "[5m])) <= 0"),
    ("ReplicatedVolumeWritesSuspended", '(hastack_blockrepl_role{role="Primary"}) == 1',
     '(hastack_blockrepl_role{role="Primary"}) >= 0'),
    ("HAClusterFailoverHappened", 'failovers_total{reason="failover"}[10m]', 'failovers_total[10m]'),
    ("ServiceMonitorProbeDown", 'state="alerting"', 'state=~"alerting|suppressed|pending"'),
    ("HastackOperatorNoLeader", "max by (namespace) (hastack_operator_leader) == 0",
     "min by (namespace) (hastack_operator_leader) == 0"),
]


def mutate(alert: str, old: str, new: str) -> str:
    """alerts.yaml with ``old`` replaced by ``new`` in the first rule of ``alert`` that has it."""
    text = ALERTS_FILE.read_text()
    start = text.find(f"- alert: {alert}\n")
    while start >= 0:
        end = text.find("- alert: ", start + 1)
        end = len(text) if end < 0 else end
        if old in text[start:end]:
            return text[:start] + text[start:end].replace(old, new, 1) + text[end:]
        start = text.find(f"- alert: {alert}\n", end)
    raise AssertionError(f"{old!r} is in no rule of {alert}")


@pytest.mark.parametrize(("alert", "old", "new"), MUTATIONS, ids=[f"{m[0]}-{i}" for i, m in enumerate(MUTATIONS)])
def test_a_broken_expression_fails_the_promtool_tests(alert: str, old: str, new: str,
                                                      tmp_path: pathlib.Path) -> None:
    broken = tmp_path / "alerts.yaml"
    broken.write_text(mutate(alert, old, new))
    check(broken)  # still valid PromQL: only the unit tests can tell
    results = [unit_test(f, broken, tmp_path) for f in TEST_FILES if f"alertname: {alert}" in f.read_text()]
    failures = "\n".join(out for code, out in results if code != 0)
    assert failures, f"no promtool test failed with {alert} broken ({old!r} -> {new!r})"
    assert f"alertname: {alert}," in failures


def cases(test_files: list[pathlib.Path]) -> dict[str, dict[str, int]]:
    """Per alert (and per `cause`), how many evaluations expect it firing / expect nothing."""
    out: dict[str, dict[str, int]] = {}
    for f in test_files:
        for test in yaml.safe_load(f.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                name, expected = case["alertname"], case.get("exp_alerts") or []
                out.setdefault(name, {"firing": 0, "quiet": 0})["quiet" if not expected else "firing"] += 1
                for alert in expected:
                    cause = alert["exp_labels"].get("cause")
                    if cause:
                        out.setdefault(f"{name}/{cause}", {"firing": 0, "quiet": 0})["firing"] += 1
    return out


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    seen = cases(TEST_FILES)
    for name in alert_names():
        assert seen.get(name, {}).get("firing"), f"{name}: no test expects it to fire"
        assert seen.get(name, {}).get("quiet"), f"{name}: no test expects it to stay quiet"
    for rule in load_rules():
        cause = rule.get("labels", {}).get("cause")
        if cause:
            assert seen.get(f"{rule['alert']}/{cause}", {}).get("firing"), f"{rule['alert']} ({cause}) never fires"


def test_not_rendered_without_the_prometheus_operator_or_when_disabled() -> None:
    kinds = [d["kind"] for d in helm_template(api_versions=())]
    assert "PrometheusRule" not in kinds and "PodMonitor" not in kinds and "Deployment" in kinds
    off = {"prometheusRule": {"enabled": False}, "podMonitor": {"enabled": False}}
    kinds = [d["kind"] for d in helm_template(off, api_versions=MONITORING_APIS)]
    assert "PrometheusRule" not in kinds and "PodMonitor" not in kinds
    kinds = [d["kind"] for d in helm_template(api_versions=MONITORING_APIS)]
    assert kinds.count("PrometheusRule") == 1 and kinds.count("PodMonitor") == 3


def test_values_shape_the_rendered_rules(tmp_path: pathlib.Path) -> None:
    values: dict[str, Any] = {"prometheusRule": {
        "labels": {"release": "kube-prometheus"},
        "runbookBaseURL": "https://wiki.example.com/hastack/",
        "additionalRuleLabels": {"team": "storage", "severity": "ignored"},
        "severityOverrides": {"HAClusterFailoverHappened": "info"},
        "disabledAlerts": ["ServiceMonitorProbeDown", "ServiceMonitorReceiverFailing", "ServiceMonitorConfigRejected"],
    }}
    [rule_obj] = helm_template(values, show_only="templates/prometheusrule.yaml")
    assert rule_obj["metadata"]["labels"]["release"] == "kube-prometheus"
    rules = [r for g in rule_obj["spec"]["groups"] for r in g["rules"]]
    assert "hastack-mon" not in [g["name"] for g in rule_obj["spec"]["groups"]]  # emptied group dropped
    assert {r["alert"] for r in rules} == set(alert_names()) - set(values["prometheusRule"]["disabledAlerts"])
    for r in rules:
        assert r["labels"]["team"] == "storage"
        assert r["annotations"]["runbook_url"] == f"https://wiki.example.com/hastack/{r['alert']}.md"
        original = next(o for o in load_rules() if o["alert"] == r["alert"])
        want = "info" if r["alert"] == "HAClusterFailoverHappened" else original["labels"]["severity"]
        assert r["labels"]["severity"] == want  # overrides apply, additionalRuleLabels never override
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(rule_obj["spec"]))
    check(path)


def test_bad_values_are_refused_by_the_schema() -> None:
    for bad in ({"disabledAlerts": ["NoSuchAlert"]}, {"severityOverrides": {"HAClusterPeerDead": "page"}},
                {"severityOverrides": {"NoSuchAlert": "info"}}, {"runbookBaseURL": "docs/runbooks"}):
        with pytest.raises(RuntimeError, match=r"values don't meet the specifications|schema"):
            helm_template({"prometheusRule": bad})


def test_podmonitors_give_the_labels_the_alerts_use() -> None:
    docs = {d["metadata"]["name"]: d for d in helm_template(show_only="templates/podmonitor.yaml")}
    members = docs["hastack-members"]["spec"]
    assert members["selector"]["matchExpressions"] == [{"key": "hastack.io/cluster", "operator": "Exists"}]
    ports = {e["port"]: e for e in members["podMetricsEndpoints"]}
    assert set(ports) == {"block-metrics", "heart-metrics", "mon-metrics"}
    for endpoint in ports.values():
        assert {"sourceLabels": ["__meta_kubernetes_pod_label_hastack_io_cluster"],
                "targetLabel": "hacluster"} in endpoint["relabelings"]
    assert ports["mon-metrics"].get("honorLabels") is True  # mon's namespace label is the ServiceMonitor's
    assert docs["hastack-monitors"]["spec"]["podMetricsEndpoints"][0].get("honorLabels") is True


def test_podmonitors_select_what_the_operator_builds() -> None:
    """The member pods and standalone mon pods the operator builds carry the selected label and
    serve /metrics on the named ports the PodMonitors scrape."""
    from harness import samples
    from hastack_operator.resources import members, monitor_objects
    from hastack_operator.resources.spec import HACluster, ReplicatedVolume

    cluster = HACluster.from_body(samples.hacluster(name="db"))
    pod = members.pod_template(cluster, ReplicatedVolume.from_body(samples.replicatedvolume()), "hastack:dev")
    ports = {p["name"] for c in pod["spec"]["initContainers"] for p in c.get("ports", [])}
    docs = {d["metadata"]["name"]: d for d in helm_template(show_only="templates/podmonitor.yaml")}
    scraped = {e["port"] for e in docs["hastack-members"]["spec"]["podMetricsEndpoints"]}
    assert scraped <= ports, f"member pods serve {sorted(ports)}"
    assert pod["metadata"]["labels"]["hastack.io/cluster"] == "db"

    standalone = [o for o in monitor_objects.desired(samples.servicemonitor(), "hastack:dev")
                  if o["kind"] in ("StatefulSet", "Deployment")]
    template = standalone[0]["spec"]["template"]
    expr = docs["hastack-monitors"]["spec"]["selector"]["matchExpressions"][0]
    assert expr["key"] in template["metadata"]["labels"]
    mon_ports = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
    assert docs["hastack-monitors"]["spec"]["podMetricsEndpoints"][0]["port"] in mon_ports
