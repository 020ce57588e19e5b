"""mon against a real kube-apiserver, with only the RBAC its ServiceAccount gets: Events on the
ServiceMonitor, and ServiceMonitors read from the API in standalone mode."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from harness import samples
from harness.controlplane import ControlPlane
from harness.hastack_api import install_crds
from harness.mon_env import MonProcess, Targets, wait_for
from harness.procs import Supervisor

NS = "mon-events"
RBAC = f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: mon, namespace: {NS}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: mon-events, namespace: {NS}}}
rules:
- apiGroups: [""]
  resources: [events]
  verbs: [create]
- apiGroups: [hastack.io]
  resources: [servicemonitors]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: mon-events, namespace: {NS}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: mon-events}}
subjects: [{{kind: ServiceAccount, name: mon, namespace: {NS}}}]
"""


@pytest.fixture(scope="module")
def api(mon_cp: ControlPlane) -> ControlPlane:
    """The control plane with the CRDs, the namespace and mon's ServiceAccount and Role."""
    install_crds(mon_cp)
    if mon_cp.kubectl("get", "ns", NS, check=False).returncode != 0:
        mon_cp.kubectl("create", "namespace", NS)
    mon_cp.kubectl("apply", "-f", "-", input=RBAC)
    return mon_cp


def events(cp: ControlPlane) -> list[dict[str, Any]]:
    out = cp.kubectl("get", "events", "-n", NS, "--field-selector", "involvedObject.name=web", "-o", "json")
    return sorted(json.loads(out.stdout)["items"], key=lambda e: int(e["metadata"]["resourceVersion"]))


def test_event_receiver_records_events_on_the_servicemonitor(
    api: ControlPlane,
    targets: Targets,
    sup: Supervisor,
    tmp_path: pathlib.Path,
) -> None:
    cp = api
    body = samples.servicemonitor(
        name="web",
        namespace=NS,
        target={"host": "127.0.0.1", "port": targets.ports["http"]},
        probes=[
            {
                "name": "health",
                "type": "http",
                "interval": "250ms",
                "timeout": "250ms",
                "http": {"path": "/health"},
            }
        ],
        alert={"after": 2, "every": "0s"},
        receivers=[{"name": "events", "type": "event"}],
    )
    cp.kubectl("apply", "-f", "-", input=json.dumps(body))
    stored = json.loads(cp.kubectl("get", "servicemonitors.hastack.io", "web", "-n", NS, "-o", "json").stdout)
    kubeconfig = cp.kubeconfig_for_service_account(NS, "mon", path=tmp_path / "mon.kubeconfig")
    config = {
        "monitors": [{"name": "web", "namespace": NS, "uid": stored["metadata"]["uid"], "spec": stored["spec"]}]
    }  # the spec as the API server stored it (defaults applied)
    mon = MonProcess(sup, tmp_path, config, env={"KUBECONFIG": str(kubeconfig)})
    wait_for(lambda: mon.probe("web", "health", NS)["ok"] is True, 10, "first probe")
    targets.set_health(503)
    down = wait_for(lambda: events(cp), 20, "the Warning event")
    e = down[0]
    assert (e["type"], e["reason"]) == ("Warning", "ProbeFailed")
    assert e["involvedObject"]["kind"] == "ServiceMonitor"
    assert e["involvedObject"]["apiVersion"] == "hastack.io/v1alpha1"
    assert e["involvedObject"]["uid"] == stored["metadata"]["uid"]
    assert "2 consecutive failures" in e["message"] and "HTTP 503" in e["message"]
    assert e["source"]["component"] == "hastack-mon"
    targets.set_health(200)
    got = wait_for(lambda: [x for x in events(cp) if x["reason"] == "ProbeRecovered"], 20, "the recovery event")
    assert got[0]["type"] == "Normal"
    assert [x["reason"] for x in events(cp)] == ["ProbeFailed", "ProbeRecovered"]
    assert "hastack_mon_receiver_delivery_failures_total{" not in mon.metrics()


def probe_names(mon: MonProcess) -> set[str]:
    """Probes of the ServiceMonitors named api-* (others in the namespace belong to other tests)."""
    return {f"{k}/{p['name']}" for k, v in mon.call("status").items() if "/api-" in k for p in v["probes"]}


def test_standalone_mon_runs_the_servicemonitors_it_reads_from_the_api(
    api: ControlPlane,
    targets: Targets,
    sup: Supervisor,
    tmp_path: pathlib.Path,
) -> None:
    cp = api
    probe = {"name": "health", "type": "http", "interval": "250ms", "timeout": "250ms", "http": {"path": "/health"}}
    body = samples.servicemonitor(
        name="api-web",
        namespace=NS,
        target={"host": "127.0.0.1", "port": targets.ports["http"]},
        probes=[probe],
        receivers=[],
    )
    cp.kubectl("apply", "-f", "-", input=json.dumps(body))
    kubeconfig = cp.kubeconfig_for_service_account(NS, "mon", path=tmp_path / "mon.kubeconfig")
    mon = MonProcess(
        sup, tmp_path, {}, env={"KUBECONFIG": str(kubeconfig)}, args=["--watch-namespace", NS, "--api-poll", "500ms"]
    )
    wait_for(lambda: mon.probe("api-web", "health", NS)["ok"] is True, 15, "the ServiceMonitor probed")
    tcp = {"name": "port", "type": "tcp", "interval": "250ms", "timeout": "250ms"}
    body["spec"]["probes"].append(tcp)
    cp.kubectl("apply", "-f", "-", input=json.dumps(body))
    wait_for(lambda: probe_names(mon) == {f"{NS}/api-web/health", f"{NS}/api-web/port"}, 15, "the added probe")
    cp.kubectl("delete", "servicemonitors.hastack.io", "api-web", "-n", NS)
    wait_for(lambda: probe_names(mon) == set(), 15, "the deleted ServiceMonitor stopped")
    assert mon.proc.running()
