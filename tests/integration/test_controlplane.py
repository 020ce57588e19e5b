"""The integration harness itself: a real API server that schedules, SA credentials, node faults,
and a teardown that leaves nothing behind (after a failing test and after a killed run)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from harness import binaries, kwok
from harness.controlplane import ControlPlane, sweep_stale_workdirs
from harness.procs import pid_alive, wait_for

TESTS_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false")


def test_api_server_answers_with_the_pinned_version(control_plane: ControlPlane) -> None:
    assert control_plane.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    version = json.loads(control_plane.kubectl("version", "-o", "json").stdout)["serverVersion"]
    if not os.environ.get("KUBEBUILDER_ASSETS"):
        k8s = binaries.versions()["K8S_VERSION"]
        assert version["gitVersion"] == k8s, "binaries must be version-stamped (see build-binaries)"
    with control_plane.api_client() as api:
        names = {ns.metadata.name for ns in client.CoreV1Api(api).list_namespace().items if ns.metadata}
    assert {"default", "kube-system"} <= names


def test_deployment_pods_become_running_on_kwok_nodes(control_plane: ControlPlane, namespace: str) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                # Never pulled: kwok runs no container (see docs/testing.md).
                "spec": {"containers": [{"name": "web", "image": "example.invalid/web:1"}]},
            },
        },
    }
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(deployment))

    def running_pods() -> list[dict[str, object]] | None:
        out = control_plane.kubectl("get", "pods", "-n", namespace, "-l", "app=web", "-o", "json").stdout
        pods = json.loads(out)["items"]
        running = [p for p in pods if p["status"].get("phase") == "Running" and p["status"].get("podIP")]
        return pods if len(running) == 3 and len(pods) == 3 else None

    pods = wait_for(running_pods, 60, "3 Running pods of Deployment web")
    nodes = {p["spec"]["nodeName"] for p in pods}  # type: ignore[index]
    assert nodes <= set(control_plane.node_names), "pods must be bound by the scheduler to kwok nodes"

    def available() -> bool:
        dep = json.loads(control_plane.kubectl("get", "deploy", "web", "-n", namespace, "-o", "json").stdout)
        return dep["status"].get("availableReplicas") == 3

    wait_for(available, 60, "Deployment web to report 3 available replicas")


def test_service_account_kubeconfig_carries_only_its_rbac(
    control_plane: ControlPlane, namespace: str
) -> None:
    cp = control_plane
    cp.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    cp.kubectl("create", "role", "pod-reader", "--verb=get,list", "--resource=pods", "-n", namespace)
    cp.kubectl(
        "create",
        "rolebinding",
        "reader",
        "--role=pod-reader",
        f"--serviceaccount={namespace}:reader",
        "-n",
        namespace,
    )
    kc = cp.kubeconfig_for_service_account(namespace, "reader")

    who = json.loads(cp.kubectl("auth", "whoami", "-o", "json", kubeconfig_path=kc).stdout)
    assert who["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:reader"
    assert cp.kubectl("get", "pods", "-n", namespace, kubeconfig_path=kc).returncode == 0
    denied = cp.kubectl("get", "secrets", "-n", namespace, kubeconfig_path=kc, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    with cp.api_client(kc) as api, pytest.raises(client.ApiException) as exc:
        client.CoreV1Api(api).list_namespaced_config_map(namespace)
    assert exc.value.status == 403


def test_node_not_ready_then_healed(control_plane: ControlPlane) -> None:
    cp = control_plane
    node = cp.node_names[-1]
    try:
        cp.set_node_ready(node, False)
        obj = json.loads(cp.kubectl("get", "node", node, "-o", "json").stdout)
        assert kwok.ready_status(obj) == "Unknown"
        assert kwok.has_taint(obj, kwok.UNREACHABLE_TAINT)
    finally:
        cp.set_node_ready(node, True)
    obj = json.loads(cp.kubectl("get", "node", node, "-o", "json").stdout)
    assert kwok.ready_status(obj) == "True" and not kwok.has_taint(obj, kwok.UNREACHABLE_TAINT)


def _assert_gone(pids: list[int], workdir: Path) -> None:
    wait_for(lambda: not any(pid_alive(p) for p in pids), 20, f"processes {pids} to exit")
    # Their ports died with them (a port may already be reused by another test's server on this
    # busy machine, so a listening port would prove nothing about these processes).
    assert not workdir.exists(), f"{workdir} was left behind"


def test_teardown_after_a_failing_test_leaves_nothing() -> None:
    cp = ControlPlane(nodes=1)
    with pytest.raises(RuntimeError, match="the test failed"), cp:
        assert cp.kubectl("get", "nodes").returncode == 0
        pids, workdir = cp.pids(), cp.workdir
        assert len(pids) == 5  # etcd, apiserver, controller-manager, scheduler, kwok
        raise RuntimeError("the test failed")
    _assert_gone(pids, workdir)


def test_killed_run_leaves_no_process_and_its_directory_is_swept() -> None:
    script = textwrap.dedent(f"""
        import json, sys, time
        sys.path.insert(0, {str(TESTS_DIR)!r})
        from harness.controlplane import ControlPlane
        cp = ControlPlane(nodes=0, controllers=False).start()
        print(json.dumps({{"pids": cp.pids(), "ports": list(cp.ports.values()), "dir": str(cp.workdir)}}),
              flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert all(pid_alive(p) for p in info["pids"])
    finally:
        proc.send_signal(signal.SIGKILL)  # no finaliser, no atexit: only PDEATHSIG is left
        proc.wait(timeout=10)
    workdir = Path(info["dir"])
    wait_for(lambda: not any(pid_alive(p) for p in info["pids"]), 20, "orphans to die with their parent")
    assert workdir.exists()  # nobody could remove it ...
    assert workdir in sweep_stale_workdirs()  # ... until the next start sweeps it
    _assert_gone(info["pids"], workdir)
