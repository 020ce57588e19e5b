"""The e2e tier on a kind cluster instead of the lab (`pytest tests/e2e --cluster=kind`, or
HASTACK_E2E_CLUSTER=kind), through pytest-kind, where Docker and kind exist.

Only the tests that need nothing but a Kubernetes cluster run there (pods talking across nodes,
the chart's operator accepting each kind); the lab's own tests (node faults, host-side checks of
mounts and loop devices, local Block PVs on loop devices) skip with the reason. On machines
without a Docker engine the whole selection skips, saying what is missing; on this project's
machines the lab is the e2e tier and never skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import binaries
from harness.procs import run

CLUSTER_NAME = "hastack-e2e"
# One control plane and two workers: the tests place one pod per node on two schedulable nodes.
KIND_CONFIG = """\
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
  - role: worker
  - role: worker
"""


def missing() -> list[str]:
    """What this machine lacks for a kind cluster (empty: it can run one)."""
    problems = []
    try:
        import pytest_kind  # noqa: F401
    except ImportError:
        problems.append("pytest-kind is not installed (pip install pytest-kind)")
    if not shutil.which("kind"):
        problems.append("no kind binary on PATH (pytest-kind would download it; give it one instead)")
    docker = shutil.which("docker")
    if not docker:
        problems.append("no docker client")
    else:
        res = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                             timeout=30, check=False)  # fmt: skip
        if res.returncode != 0:
            last = (res.stderr.strip().splitlines() or ["no answer"])[-1]
            problems.append(f"no Docker engine ({last})")
    return problems


@dataclass(frozen=True)
class KindNode:
    name: str


class KindCluster:
    """The surface of `harness.lab.Lab` the cluster-agnostic e2e tests use, on a kind cluster."""

    def __init__(self, name: str = CLUSTER_NAME) -> None:
        from pytest_kind import KindCluster as PytestKind

        kind = shutil.which("kind")
        self.kind = PytestKind(name, kind_path=Path(kind) if kind else None,
                               kubectl_path=Path(binaries.find("kubectl")))  # fmt: skip
        self.nodes: list[KindNode] = []

    @property
    def kubeconfig(self) -> Path:
        return Path(self.kind.kubeconfig_path)

    def up(self) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(KIND_CONFIG)
        try:
            self.kind.create(config_file=f.name)
        finally:
            os.unlink(f.name)
        items = json.loads(self.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        self.nodes = [KindNode(n["metadata"]["name"]) for n in items
                      if "node-role.kubernetes.io/control-plane" not in n["metadata"].get("labels", {})]  # fmt: skip

    def down(self) -> None:
        self.kind.delete()

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 60.0) -> subprocess.CompletedProcess[str]:  # fmt: skip
        argv = [str(binaries.find("kubectl")), f"--kubeconfig={self.kubeconfig}", *args]
        return run(argv, timeout=timeout, check=check, input=input)

    def apply(self, docs: list[dict[str, Any]], namespace: str | None = None) -> None:
        self.kubectl(*(("-n", namespace) if namespace else ()), "apply", "--server-side", "--force-conflicts",
                     "--field-manager=hastack-lab", "-f", "-",
                     input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))  # fmt: skip

    def import_image(self, archive: Path) -> None:
        """`kind load image-archive`: the same docker-archive the lab imports with ctr."""
        run([str(self.kind.kind_path), "load", "image-archive", str(archive), "--name", self.kind.name], timeout=600)
