"""mon publishes its status in its own pod's ``hastack.io/monitor-status`` annotation, through a
real kube-apiserver, with the token of the members' ServiceAccount holding exactly the Role the
operator builds (hastack_operator.resources.cluster_objects.member_role)."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import re
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness import samples
from harness.controlplane import ControlPlane
from harness.hastack_api import apply_objects, ensure_namespace, install_crds
from harness.mon_env import MonProcess, Targets, wait_for
from harness.procs import Supervisor
from hastack_common import consts
from hastack_operator.resources import cluster_objects, names
from hastack_operator.resources.monitor_status import ANNOTATION_MONITOR_STATUS
from hastack_operator.resources.spec import HACluster

NS = "mon-publish"
CLUSTER = "db"
POD = f"{CLUSTER}-0"


def pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": {consts.LABEL_CLUSTER: CLUSTER}},
            "spec": {"serviceAccountName": names.member_account(CLUSTER),  # no controllers: no "default" account
                     "containers": [{"name": "app", "image": "hastack:test", "command": ["sleep", "1"]}]}}


@pytest.fixture(scope="module")
def member_kubeconfig(mon_cp: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The member ServiceAccount, its Role as the operator builds it, and member pods db-0 and db-1
    (db-2, the third member, has no pod yet)."""
    cp = mon_cp
    install_crds(cp)
    ensure_namespace(cp, NS)
    apply_objects(cp, [samples.hacluster(CLUSTER, NS, replicas=3)])
    uid = json.loads(cp.kubectl("get", "hac", CLUSTER, "-n", NS, "-o", "json").stdout)["metadata"]["uid"]
    spec = HACluster.from_body({"metadata": {"name": CLUSTER, "namespace": NS, "uid": uid},
                                "spec": samples.hacluster(CLUSTER, NS, replicas=3)["spec"]})
    apply_objects(cp, [cluster_objects.member_account(spec), cluster_objects.member_role(spec),
                       cluster_objects.member_role_binding(spec), pod(POD), pod(f"{CLUSTER}-1"), pod("outsider")])
    return cp.kubeconfig_for_service_account(NS, names.member_account(CLUSTER),
                                             path=tmp_path_factory.mktemp("sa") / "member.kubeconfig")


def annotation(cp: ControlPlane, name: str = POD) -> dict[str, Any] | None:
    out = cp.kubectl("get", "pod", name, "-n", NS, "-o", "json")
    raw = (json.loads(out.stdout)["metadata"].get("annotations") or {}).get(ANNOTATION_MONITOR_STATUS)
    return json.loads(raw) if raw else None


def published_at(report: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(report["publishedAt"].replace("Z", "+00:00"))


def probes(report: dict[str, Any] | None, key: str = f"{NS}/web") -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in ((report or {}).get("monitors") or {}).get(key, {}).get("probes", [])}


def config(targets: Targets, **extra: Any) -> dict[str, Any]:
    port = targets.ports["http"]
    return {**extra, "monitors": [{"name": "web", "namespace": NS, "spec": {
        "target": {"host": "127.0.0.1", "port": port},
        "probes": [{"name": "health", "type": "http", "interval": "250ms", "timeout": "500ms",
                    "http": {"path": "/health"}},
                   {"name": "port", "type": "tcp", "interval": "250ms", "timeout": "500ms"}],
        "alert": {"after": 2, "every": "0s"},
        "receivers": [],
    }}]}


def publishes(mon: MonProcess, result: str = "ok") -> int:
    m = re.search(rf'^hastack_mon_status_publishes_total\{{result="{result}"\}} (\S+)$', mon.metrics(), re.M)
    return int(float(m.group(1))) if m else 0


def probe_count(mon: MonProcess) -> int:
    pattern = r'^hastack_probe_duration_seconds_count\{[^}]*probe="port"[^}]*\} (\S+)$'
    m = re.search(pattern, mon.metrics(), re.M)
    return int(float(m.group(1))) if m else 0


def test_mon_publishes_its_status_on_its_own_pod(
    mon_cp: ControlPlane, member_kubeconfig: pathlib.Path, targets: Targets, sup: Supervisor, tmp_path: pathlib.Path
) -> None:
    cp = mon_cp
    # The token is the member account's: it may patch its own pods and no other.
    with cp.api_client(member_kubeconfig) as api, pytest.raises(ApiException) as denied:
        client.CoreV1Api(api).patch_namespaced_pod("outsider", NS, {"metadata": {"labels": {"x": "y"}}})
    assert denied.value.status == 403
    env = {"KUBECONFIG": str(member_kubeconfig), "HASTACK_POD_NAME": POD, "HASTACK_NAMESPACE": NS}
    mon = MonProcess(sup, tmp_path, config(targets), env=env)

    # 1. The report appears, in the CRD's probes[] shape, once both probes succeeded.
    report = wait_for(lambda: (r := annotation(cp)) and all(
        str(p.get("lastResult", "")).startswith("success") for p in probes(r).values()) and len(probes(r)) == 2
        and r, 20, "the monitor-status annotation with both probes up")
    for p in probes(report).values():
        assert set(p) <= {"name", "lastResult", "consecutiveFailures", "lastChange", "latency", "alert", "reason"}
        assert p["alert"] == "ok" and p["consecutiveFailures"] == 0
    assert probes(report)["health"]["lastResult"].startswith("success: HTTP 200")
    assert abs((dt.datetime.now(dt.UTC) - published_at(report)).total_seconds()) < 30
    assert annotation(cp, "outsider") is None

    # 2. Idle: republished (publishedAt advances) within the operator's 30 s trust, but not on
    #    every probe — a new latency alone is no reason to write.
    first, writes = published_at(report), publishes(mon)
    later = wait_for(lambda: (r := annotation(cp)) and published_at(r) > first and r, 30, "the idle republish")
    assert {k: {f: v for f, v in p.items() if f != "latency"} for k, p in probes(later).items()} == \
        {k: {f: v for f, v in p.items() if f != "latency"} for k, p in probes(report).items()}
    elapsed = (published_at(later) - first).total_seconds()
    assert 5 <= elapsed <= 20, elapsed  # every ~10 s while idle (whole seconds in the report)
    assert publishes(mon) - writes <= 3, "an idle mon must not rewrite its report on every probe"

    # 3. The target goes down: the report follows within a few seconds, well before the idle republish.
    targets.stop()
    down = wait_for(lambda: (r := annotation(cp)) and all(
        p.get("alert") == "alerting" for p in probes(r).values()) and r, 20, "both probes alerting in the report")
    for p in probes(down).values():
        assert p["lastResult"].startswith("failure") and p["consecutiveFailures"] >= 2
    assert "monitor status not published" not in mon.log()


def test_publishing_is_switched_off_by_the_config_flag(
    mon_cp: ControlPlane, member_kubeconfig: pathlib.Path, targets: Targets, sup: Supervisor, tmp_path: pathlib.Path
) -> None:
    cp = mon_cp
    pod_name = f"{CLUSTER}-1"
    env = {"KUBECONFIG": str(member_kubeconfig), "HASTACK_POD_NAME": pod_name, "HASTACK_NAMESPACE": NS}
    mon = MonProcess(sup, tmp_path, config(targets, publishStatus=False), env=env)
    wait_for(lambda: probe_count(mon) >= 8, 20, "the probes running for a couple of seconds")
    assert annotation(cp, pod_name) is None and publishes(mon) == 0
    mon.write(config(targets, publishStatus=True))  # the same mon, reloaded with the flag on
    got = wait_for(lambda: annotation(cp, pod_name), 20, "the report once publishing is on")
    assert set(probes(got)) == {"health", "port"}


def test_failed_writes_are_retried_and_never_stop_probing(
    mon_cp: ControlPlane, member_kubeconfig: pathlib.Path, targets: Targets, sup: Supervisor, tmp_path: pathlib.Path
) -> None:
    """The pod is missing (404) for a while: mon logs, counts and retries, probes on, and the report
    appears once the pod exists."""
    cp = mon_cp
    name = f"{CLUSTER}-2"
    cp.kubectl("delete", "pod", name, "-n", NS, "--ignore-not-found", "--wait=false")
    env = {"KUBECONFIG": str(member_kubeconfig), "HASTACK_POD_NAME": name, "HASTACK_NAMESPACE": NS}
    mon = MonProcess(sup, tmp_path, config(targets), env=env)
    wait_for(lambda: publishes(mon, "error") >= 2, 20, "failed writes counted")
    assert "monitor status not published, retrying" in mon.log() and "Not Found" in mon.log()
    assert mon.alive_or_fail() and mon.probe("web", "port", NS)["ok"] is True
    apply_objects(cp, [pod(name)])
    got = wait_for(lambda: annotation(cp, name), 30, "the report once the pod exists")
    assert set(probes(got)) == {"health", "port"} and publishes(mon) >= 1
    assert "monitor status published again" in mon.log()
    cp.kubectl("delete", "pod", name, "-n", NS, "--wait=false")
