"""The typed ServiceMonitor/mon configuration: good specs parse, bad ones are refused with reasons."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from hastack_common.config_mon import MonConfig, ServiceMonitorSpec

GOOD: dict[str, Any] = {
    "target": {"service": "web", "port": 8080},
    "probes": [
        {
            "name": "http",
            "interval": "2s",
            "timeout": "500ms",
            "type": "https",
            "http": {"path": "/healthz", "expectStatus": [200]},
        },
        {
            "name": "dns",
            "type": "dns",
            "dns": {"name": "web.example", "recordType": "A", "expect": ["10.0.0.1"]},
        },
        {"name": "run", "exec": {"command": ["true"]}},
        {"name": "port", "type": "tcp"},
    ],
    "alert": {"after": 3, "within": "1m", "failuresWithin": 5, "every": "10m", "dependsOn": ["db"]},
    "receivers": [
        {"name": "hook", "type": "webhook", "url": "http://x/"},
        {"name": "ha", "type": "failover", "haCluster": "c"},
    ],
}


def test_good_spec_round_trips_with_crd_field_names() -> None:
    spec = ServiceMonitorSpec.model_validate(GOOD)
    assert spec.alert.up_alert and spec.alert.depends_on == ["db"]  # upAlert defaults to true, as the CRD
    assert [p.kind for p in spec.probes] == ["https", "dns", "exec", "tcp"]
    dumped = spec.model_dump(by_alias=True, exclude_defaults=True)
    assert dumped["alert"]["failuresWithin"] == 5
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
        (bad(["probes", 2, "tcp"], {}), "needs a type"),
        (bad(["probes", 1, "dns"], None), "a dns probe needs the dns block"),
        (bad(["probes", 1, "type"], "ping"), "Input should be 'tcp'"),
        (bad(["alert", "failuresWithin"], None), "within and alert.failuresWithin go together"),
        (bad(["probes", 1, "name"], "http"), "repeated: http"),
        (bad(["probes"], []), "at least 1"),
        (bad(["alert", "after"], 0), "greater than or equal to 1"),
        (bad(["target", "host"], "1.2.3.4"), "exactly one of service, haCluster, host"),
        (bad(["probes", 0, "http", "bodyRegex"], "("), "invalid regular expression"),
        (bad(["probes", 0, "http", "expectStatus"], [700]), "less than or equal to 599"),
        (bad(["receivers", 0, "url"], None), "webhook and alertmanager receivers need url"),
        (bad(["receivers", 1, "haCluster"], None), "a failover receiver needs target.haCluster"),
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


def _aliases(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


def test_every_crd_field_is_understood_by_mon() -> None:
    """Contract: the operator renders spec fields verbatim, so each CRD property must exist here."""
    from hastack_common import config_mon as cm
    from hastack_common.crds import servicemonitor as crd

    pairs: list[tuple[dict[str, Any], type[BaseModel]]] = [
        (crd.SPEC, cm.ServiceMonitorSpec),
        (crd.TARGET, cm.Target),
        (crd.PROBE, cm.Probe),
        (crd.ALERT, cm.Alert),
        (crd.RECEIVER, cm.Receiver),
        (crd.PROBE["properties"]["tcp"], cm.TcpCheck),
        (crd.PROBE["properties"]["http"], cm.HttpCheck),
        (crd.PROBE["properties"]["dns"], cm.DnsCheck),
        (crd.PROBE["properties"]["tls"], cm.TlsCheck),
        (crd.PROBE["properties"]["exec"], cm.ExecCheck),
    ]
    for schema, model in pairs:
        missing = set(schema["properties"]) - _aliases(model)
        assert not missing, f"{model.__name__} lacks CRD fields {sorted(missing)}"
    assert set(crd.PROBE_TYPES) == set(cm.PROBE_KINDS)
    assert set(crd.RECEIVER_TYPES) == set(cm.RECEIVER_KINDS)


def test_render_round_trips_what_the_operator_writes() -> None:
    from hastack_common.config_mon import monitor_from_object, render
    from hastack_mon.config import parse

    obj = {
        "apiVersion": "hastack.io/v1alpha1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "resourceVersion": "7"},
        "spec": GOOD,
        "status": {"summary": "1/1 up"},
    }
    cfg = MonConfig(monitors=[monitor_from_object(obj)], alerting="active")
    text = render(cfg)
    assert "upAlert" in text and "up_alert" not in text  # CRD field names in the file
    assert parse(text) == cfg
