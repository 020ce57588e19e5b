"""The alerting rule docs/mon.md proposes for the chart, checked with promtool against mon's series."""

from __future__ import annotations

import json
import pathlib

from harness.mon_env import need
from harness.procs import run


def series(monitor: str, state: str) -> str:
    return f'hastack_mon_alert_state{{namespace="shop",monitor="{monitor}",probe="health",kind="http",state="{state}"}}'


RULES = {
    "groups": [
        {
            "name": "hastack-mon",
            "rules": [
                {
                    "alert": "HastackProbeDown",
                    "expr": 'max by (namespace, monitor, probe) (hastack_mon_alert_state{state="alerting"}) == 1',
                    "labels": {"severity": "critical"},
                }
            ],
        }
    ]
}

TEST = {
    "rule_files": ["rules.yml"],
    "evaluation_interval": "1m",
    "tests": [
        {
            "interval": "1m",
            "input_series": [
                # web/health: ok, alerting for 3 minutes, ok again (mon's gauge, one series per state)
                {
                    "series": series("web", "alerting"),
                    "values": "0 0 1 1 1 0 0",
                },
                {
                    "series": series("web", "ok"),
                    "values": "1 1 0 0 0 1 1",
                },
                # suppressed (dependency down / standby): no page
                {
                    "series": series("api", "suppressed"),
                    "values": "1 1 1 1 1 1 1",
                },
            ],
            "alert_rule_test": [
                {"eval_time": "1m", "alertname": "HastackProbeDown", "exp_alerts": []},
                {
                    "eval_time": "3m",
                    "alertname": "HastackProbeDown",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "severity": "critical",
                                "namespace": "shop",
                                "monitor": "web",
                                "probe": "health",
                            }
                        }
                    ],
                },
                {"eval_time": "6m", "alertname": "HastackProbeDown", "exp_alerts": []},
            ],
        }
    ],
}


def test_chart_rule_pages_on_mons_decision_only(tmp_path: pathlib.Path) -> None:
    (tmp_path / "rules.yml").write_text(json.dumps(RULES))
    (tmp_path / "test.yml").write_text(json.dumps(TEST))
    res = run([need("promtool"), "test", "rules", str(tmp_path / "test.yml")], check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout + res.stderr
