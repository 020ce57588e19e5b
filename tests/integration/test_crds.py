"""The CRDs on a real kube-apiserver: established, explained, and refusing bad objects."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from harness import samples
from harness.controlplane import ControlPlane
from harness.hastack_api import install_crds
from harness.procs import wait_for
from harness.samples import DELETE, with_path

NS = "crd-tests"


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> ControlPlane:
    install_crds(control_plane)
    if control_plane.kubectl("get", "ns", NS, check=False).returncode != 0:
        control_plane.kubectl("create", "namespace", NS)
    return control_plane


def apply(cp: ControlPlane, body: dict[str, Any], *extra: str) -> tuple[int, str]:
    res = cp.kubectl("apply", "-f", "-", *extra, input=json.dumps(body), check=False)
    return res.returncode, res.stdout + res.stderr


def test_crds_established_with_names(api: ControlPlane) -> None:
    out = api.kubectl("api-resources", "--api-group=hastack.io", "-o", "wide").stdout
    for short in ("hac", "rvol", "hasm"):
        assert short in out
    cats = api.kubectl("get", "hastack", "-A").stderr + api.kubectl("get", "hastack", "-A").stdout
    assert "error" not in cats.lower()


def test_kubectl_explain_documents_fields(api: ControlPlane) -> None:
    # An Established CRD's schema reaches the API server's OpenAPI document a moment later
    # (kubectl explain reads that): wait until each kind is there, then read its fields.
    for kind in ("hacluster", "replicatedvolume", "servicemonitors.hastack.io"):
        wait_for(lambda k=kind: api.kubectl("explain", k, check=False).returncode == 0 or None, 60,
                 f"{kind} in the API server's OpenAPI document")  # fmt: skip
    out = api.kubectl("explain", "hacluster.spec.heartbeat").stdout
    assert "keepalive" in out and "deadTime" in out
    assert "before any standby can acquire the Lease" in out
    out = api.kubectl("explain", "replicatedvolume.spec.protocol").stdout
    assert "synchronous" in out
    out = api.kubectl("explain", "servicemonitors.hastack.io.spec.alert.after").stdout
    assert "alertafter" in out


RV = samples.replicatedvolume(namespace=NS)
HAC = samples.hacluster(namespace=NS)
SM = samples.servicemonitor(namespace=NS)

INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("protocol D", with_path(RV, "spec.protocol", "D"), 'Unsupported value: "D"'),
    ("size zero", with_path(RV, "spec.size", "0"), "size must be positive"),
    ("size negative", with_path(RV, "spec.size", "-1Gi"), "size must be positive"),
    ("size not a quantity", with_path(RV, "spec.size", "ten gigs"), "must be a quantity such as 10Gi"),
    ("replicas 4", with_path(RV, "spec.replicas", 4), "should be less than or equal to 3"),
    ("size missing", with_path(RV, "spec.size", DELETE), "spec.size: Required value"),
    ("filesystem ntfs", with_path(RV, "spec.filesystem", {"type": "ntfs"}), 'Unsupported value: "ntfs"'),
    ("after-sb policy", with_path(RV, "spec.splitBrain", {"afterSb2Pri": "discard-secondary"}),
     'Unsupported value: "discard-secondary"'),
    ("deadTime <= warnTime", with_path(HAC, "spec.heartbeat", {"warnTime": "3s", "deadTime": "3s"}),
     "deadTime must be greater than warnTime"),
    ("warnTime <= keepalive", with_path(HAC, "spec.heartbeat", {"keepalive": "2s", "warnTime": "1s"}),
     "warnTime must be greater than keepalive"),
    ("bad duration", with_path(HAC, "spec.heartbeat", {"keepalive": "5 seconds"}), "should match"),
    ("renewDeadline >= leaseDuration",
     with_path(HAC, "spec.heartbeat", {"renewDeadline": "4s", "leaseDuration": "4s"}),
     "renewDeadline must be less than leaseDuration"),
    ("lease without margin", with_path(HAC, "spec.heartbeat", {"renewDeadline": "3800ms"}),
     "renewDeadline + 500ms (heartbeat's safety margin) must not exceed leaseDuration"),
    ("lease in milliseconds", with_path(HAC, "spec.heartbeat", {"leaseDuration": "4500ms"}), "should match"),
    ("one member", with_path(HAC, "spec.replicas", 1), "should be greater than or equal to 2"),
    ("container without command", with_path(HAC, "spec.template.spec.containers.0.command", DELETE),
     "command: Required value"),
    ("volume without mountPath", with_path(HAC, "spec.resources", [{"kind": "volume", "name": "data"}]),
     "a volume resource needs mountPath"),
    ("fencing enum", with_path(HAC, "spec.failover", {"fencing": "STONITH"}), 'Unsupported value: "STONITH"'),
    ("two targets", with_path(SM, "spec.target", {"service": "web", "host": "example.org"}),
     "target needs exactly one of service, haCluster or host"),
    ("timeout > interval", with_path(SM, "spec.probes.0.timeout", "20s"), "timeout must not exceed interval"),
    ("dns probe without dns", with_path(SM, "spec.probes.0.type", "dns"), "a dns probe needs the dns block"),
    ("failover receiver without cluster",
     with_path(SM, "spec.receivers", [{"name": "move", "type": "failover"}]),
     "a failover receiver needs target.haCluster"),
    ("webhook without url", with_path(SM, "spec.receivers", [{"name": "hook", "type": "webhook"}]),
     "webhook and alertmanager receivers need url"),
    ("alert after 0", with_path(SM, "spec.alert.after", 0), "should be greater than or equal to 1"),
    ("no probes", with_path(SM, "spec.probes", []), "should have at least 1 items"),
]


@pytest.mark.parametrize(("body", "message"), [(b, m) for _, b, m in INVALID], ids=[i for i, _, _ in INVALID])
def test_invalid_objects_are_refused(api: ControlPlane, body: dict[str, Any], message: str) -> None:
    code, out = apply(api, body)
    assert code != 0, f"the API server accepted an invalid object:\n{out}"
    assert message in out, out


def test_valid_samples_are_accepted_with_defaults(api: ControlPlane) -> None:
    for body in (RV, HAC, SM):
        code, out = apply(api, body)
        assert code == 0, out
    hac = json.loads(api.kubectl("get", "hac", "web", "-n", NS, "-o", "json").stdout)
    assert hac["spec"]["heartbeat"] == {
        "keepalive": "500ms", "warnTime": "1500ms", "deadTime": "3s", "initDead": "10s", "port": 694,
        "leaseDuration": "4s", "renewPeriod": "1s", "renewDeadline": "3s"}
    assert hac["spec"]["replicas"] == 2 and hac["spec"]["failover"]["fencing"] == "OutOfService"
    rv = json.loads(api.kubectl("get", "rvol", "data", "-n", NS, "-o", "json").stdout)
    assert rv["spec"]["protocol"] == "C" and rv["spec"]["filesystem"]["type"] == "ext4"


UpdateCase = tuple[str, Callable[[], dict[str, Any]], Callable[[], dict[str, Any]], str]

UPDATES: list[UpdateCase] = [
    ("size shrinks", lambda: with_path(RV, "spec.size", "2Gi"), lambda: with_path(RV, "spec.size", "1Gi"),
     "size may only grow"),
    ("storage class changes", lambda: RV, lambda: with_path(RV, "spec.storageClassName", "other"),
     "storageClassName is immutable"),
    ("replicas change", lambda: RV, lambda: with_path(RV, "spec.replicas", 3), "replicas is immutable"),
    ("filesystem changes", lambda: RV, lambda: with_path(RV, "spec.filesystem", {"type": "xfs"}),
     "filesystem.type is immutable"),
    ("cluster volume changes",
     lambda: with_path(HAC, "spec.resources", [{"kind": "volume", "name": "data", "mountPath": "/d"}]),
     lambda: with_path(HAC, "spec.resources", [{"kind": "volume", "name": "other", "mountPath": "/d"}]),
     "the volume of a HACluster cannot be changed"),
]


@pytest.mark.parametrize(("before", "after", "message"), [u[1:] for u in UPDATES],
                         ids=[u[0] for u in UPDATES])
def test_forbidden_updates_are_refused(api: ControlPlane, before: Callable[[], dict[str, Any]],
                                       after: Callable[[], dict[str, Any]], message: str) -> None:
    first, second = before(), after()
    name = "upd-" + first["kind"].lower()
    first["metadata"]["name"] = second["metadata"]["name"] = name
    api.kubectl("delete", f"{first['kind'].lower()}.hastack.io", name, "-n", NS, "--ignore-not-found",
                "--wait=true")
    code, out = apply(api, first)
    assert code == 0, out
    code, out = apply(api, second)
    assert code != 0 and message in out, out


def test_allowed_updates(api: ControlPlane) -> None:
    body = with_path(RV, "metadata.name", "grows")
    assert apply(api, body)[0] == 0
    for path, value in (("spec.size", "3Gi"), ("spec.protocol", "A"), ("spec.syncRate", "10Mi")):
        body = with_path(body, path, value)
        code, out = apply(api, body)
        assert code == 0, out


def test_unknown_fields_are_refused_by_strict_clients_and_pruned_otherwise(api: ControlPlane) -> None:
    body = with_path(RV, "metadata.name", "unknown-field")
    body = with_path(body, "spec.replicaCount", 3)
    code, out = apply(api, body)
    assert code != 0 and 'unknown field "spec.replicaCount"' in out, out
    code, out = apply(api, body, "--validate=false")
    assert code == 0, out
    stored = yaml.safe_load(api.kubectl("get", "rvol", "unknown-field", "-n", NS, "-o", "yaml").stdout)
    assert "replicaCount" not in stored["spec"]
