"""hastack on a real control plane: install the CRDs and the chart's RBAC, run the operator.

Used by the integration tier (kwok nodes) and by the lab.
"""

from __future__ import annotations

import json
import pathlib
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from harness import binaries
from harness.controlplane import ControlPlane
from harness.procs import Child, Supervisor, Timeout, free_port, run, wait_for

ROOT = pathlib.Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
CHART = ROOT / "charts" / "hastack"
PLURALS = ("haclusters", "replicatedvolumes", "servicemonitors")


def install_crds(cp: ControlPlane, timeout: float = 60.0) -> None:
    cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
    for plural in PLURALS:
        cp.kubectl("wait", "--for=condition=Established", f"crd/{plural}.hastack.io",
                   f"--timeout={int(timeout)}s", timeout=timeout + 10)


def helm_template(namespace: str, release: str = "hastack", values: dict[str, Any] | None = None,
                  include_crds: bool = False) -> list[dict[str, Any]]:
    argv = [str(binaries.find("helm")), "template", release, str(CHART), "--namespace", namespace,
            "--kube-version", binaries.versions()["K8S_VERSION"]]
    if include_crds:
        argv.append("--include-crds")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump(values or {}, f)
        f.flush()
        out = run([*argv, "-f", f.name]).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def apply_objects(cp: ControlPlane, objects: list[dict[str, Any]], *extra: str) -> str:
    text = yaml.safe_dump_all(objects)
    return cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", *extra, input=text).stdout


def ensure_namespace(cp: ControlPlane, name: str) -> None:
    if cp.kubectl("get", "namespace", name, check=False).returncode != 0:
        cp.kubectl("create", "namespace", name)


def install_rbac(cp: ControlPlane, namespace: str, release: str = "hastack",
                 mutate: Callable[[dict[str, Any]], None] | None = None) -> str:
    """Apply the chart's ServiceAccount and RBAC (not its Deployment); return the SA name.

    ``mutate`` may change each object first (a test drops a verb to prove RBAC is checked).
    """
    ensure_namespace(cp, namespace)
    wanted = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    objects = [o for o in helm_template(namespace, release) if o["kind"] in wanted]
    for o in objects:
        if mutate:
            mutate(o)
    apply_objects(cp, objects)
    return next(o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount")


class OperatorProcess:
    """`hastack operator` as a real process, with the credentials it is given."""

    def __init__(self, cp: ControlPlane, kubeconfig: Path, lease_namespace: str, name: str = "operator",
                 extra_args: tuple[str, ...] = ()) -> None:
        self.cp = cp
        self.kubeconfig = kubeconfig
        self.lease_namespace = lease_namespace
        self.name = name
        self.extra_args = extra_args
        self.health_port = free_port()
        self.metrics_port = free_port()
        self._sup = Supervisor(cp.workdir / "logs")
        self.child: Child | None = None
        self.child_env: dict[str, str] = {}

    def start(self) -> OperatorProcess:
        argv = [sys.executable, "-m", "hastack_common.cli", "operator",
                f"--lease-namespace={self.lease_namespace}", f"--health-port={self.health_port}",
                f"--metrics-port={self.metrics_port}", *self.extra_args]
        env = {"KUBECONFIG": str(self.kubeconfig), "HASTACK_LOG_LEVEL": "INFO",
               "POD_NAME": self.name, "PYTHONUNBUFFERED": "1", **self.child_env}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        self.child = self._sup.start(self.name, argv, env=env)
        return self

    def log(self) -> str:
        return self.child.log_path.read_text(errors="replace") if self.child else ""

    def wait_log(self, text: str, timeout: float = 60.0) -> None:
        try:
            wait_for(lambda: text in self.log(), timeout, f"{self.name} to log {text!r}")
        except Timeout as exc:
            state = "running" if self.running() else f"exited {self.child.proc.returncode if self.child else None}"
            raise Timeout(f"{exc}; the process is {state}, its log ({self.child.log_path if self.child else '-'}):"
                          f"\n{self.tail()}") from None

    def tail(self, lines: int = 40) -> str:
        return self.child.tail(lines) if self.child else ""

    def running(self) -> bool:
        return bool(self.child and self.child.running())

    def stop(self) -> None:
        self._sup.stop_all(grace=10)


def operator_writes(cp: ControlPlane, namespace: str, kinds: str, *selector: str) -> dict[str, str]:
    """What the operator wrote, per object: the resourceVersion of objects only it writes, and for
    StatefulSets and PodDisruptionBudgets (whose status the controllers keep writing) the times of
    the operator's own managed-fields entries, which any write by its field manager moves."""
    from hastack_common.consts import FIELD_MANAGER

    out: dict[str, str] = {}
    items = json.loads(cp.kubectl("get", kinds, "-n", namespace, *selector, "-o", "json").stdout)["items"]
    for obj in items:
        meta = obj["metadata"]
        key = f"{obj['kind']}/{meta['name']}"
        if obj["kind"] in ("StatefulSet", "PodDisruptionBudget"):
            mine = [f"{m.get('operation')}@{m.get('time')}" for m in meta.get("managedFields") or []
                    if m.get("manager") == FIELD_MANAGER]
            out[key] = ",".join(sorted(mine))
        else:
            out[key] = meta["resourceVersion"]
    return out


def get_object(cp: ControlPlane, plural: str, name: str, namespace: str) -> dict[str, Any]:
    out = cp.kubectl("get", f"{plural}.hastack.io", name, "-n", namespace, "-o", "json").stdout
    obj: dict[str, Any] = json.loads(out)
    return obj


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return None


def wait_condition(cp: ControlPlane, plural: str, name: str, namespace: str, ctype: str,
                   status: str = "True", timeout: float = 60.0) -> dict[str, Any]:
    def ok() -> dict[str, Any] | None:
        obj = get_object(cp, plural, name, namespace)
        c = condition(obj, ctype)
        gen = obj["metadata"].get("generation")
        if c and c["status"] == status and (obj.get("status") or {}).get("observedGeneration") == gen:
            return obj
        return None

    return wait_for(ok, timeout, f"{plural}/{name} {ctype}={status}")



FAST_LEASE = ("--lease-duration=4", "--renew-deadline=3", "--renew-period=1")


def chart_operator(cp: ControlPlane, watch: str, name: str, release: str = "hastack-system",
                   env: dict[str, str] | None = None,
                   mutate: Callable[[dict[str, Any]], None] | None = None) -> OperatorProcess:
    """The CRDs, the chart's RBAC for ``release`` (in a namespace of that name), and a started
    operator watching ``watch`` with that ServiceAccount's token (never as admin)."""
    install_crds(cp)
    ensure_namespace(cp, release)
    ensure_namespace(cp, watch)
    sa = install_rbac(cp, release, release=release, mutate=mutate)
    op = OperatorProcess(cp, cp.kubeconfig_for_service_account(release, sa), release, name=name,
                         extra_args=(f"--namespace={watch}", *FAST_LEASE))
    op.child_env = dict(env or {})
    return op.start()
