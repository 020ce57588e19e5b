"""The typed ServiceMonitor/mon configuration: good specs parse, bad ones are refused with reasons."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from hastack_common.config_mon import MonConfig, ServiceMonitorSpec

GOOD: dict[str, Any] = {
    "target": {"service": "web", "port": 8080},
    "probes": [
        {
            "name": "http",
            "interval": "2s",
            "timeout": "500ms",
            "http": {"path": "/healthz", "expectedStatus": [200]},
        },
        {"name": "dns", "dns": {"name": "web.example", "type": "A", "expect": ["10.0.0.1"]}},
        {"name": "run", "exec": {"command": ["true"]}},
    ],
    "alert": {"after": 3, "within": "1m", "every": "10m", "upAlert": True, "dependsOn": ["db"]},
    "receivers": [
        {"name": "hook", "webhook": {"url": "http://x/"}},
        {"name": "ha", "failover": {"haCluster": "c"}},
    ],
}


def test_good_spec_round_trips_with_crd_field_names() -> None:
    spec = ServiceMonitorSpec.model_validate(GOOD)
    assert spec.alert.up_alert and spec.alert.depends_on == ["db"]
    assert [p.kind for p in spec.probes] == ["http", "dns", "exec"]
    dumped = spec.model_dump(by_alias=True, exclude_defaults=True)
    assert dumped["alert"]["upAlert"] is True
    assert ServiceMonitorSpec.model_validate(dumped) == spec


def bad(path: list[Any], value: Any) -> dict[str, Any]:
    import copy

    spec = copy.deepcopy(GOOD)
    node: Any = spec
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return spec


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (bad(["probes", 0, "interval"], "2 seconds"), "invalid duration"),
        (bad(["probes", 0, "timeout"], "0"), "timeout must be positive"),
        (bad(["probes", 0, "tcp"], {}), "exactly one of tcp, http, https, dns, tls, exec"),
        (bad(["probes", 1, "name"], "http"), "repeated: http"),
        (bad(["probes"], []), "at least 1"),
        (bad(["alert", "after"], 0), "greater than or equal to 1"),
        (bad(["target", "host"], "1.2.3.4"), "exactly one of service, haCluster, host"),
        (bad(["probes", 0, "http", "bodyRegex"], "("), "invalid regular expression"),
        (bad(["probes", 0, "http", "expectedStatus"], [700]), "less than or equal to 599"),
        (bad(["receivers", 0, "event"], {}), "exactly one of event, webhook, alertmanager, failover"),
        (bad(["probes", 0, "retries"], 3), "Extra inputs are not permitted"),
    ],
)
def test_bad_specs_are_refused(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ServiceMonitorSpec.model_validate(spec)


def test_monitors_unique_by_namespace_and_name() -> None:
    m = {"name": "a", "spec": GOOD}
    with pytest.raises(ValidationError, match="default/a"):
        MonConfig.model_validate({"monitors": [m, m]})
    assert len(MonConfig.model_validate({"monitors": [m, {**m, "namespace": "b"}]}).monitors) == 2
