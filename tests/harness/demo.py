"""`make demo`: the lab, the operator installed by its chart, the examples applied, and what runs
where — each step timed. Needs root and `tests/` on PYTHONPATH (`python -m harness.demo`)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from harness import binaries, image
from harness.lab import LAB_BINARIES, Lab, LabConfig

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "hastack"
EXAMPLES = REPO / "examples"
RELEASE, RELEASE_NS, DEMO_NS = "hastack", "hastack-system", "demo"
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "helm")

WHAT_WORKS = """\
What this demo shows today (honestly labelled):
  works end to end  a 2-node Kubernetes on this machine (real kubelets, containerd, CNI, kube-proxy,
                    CoreDNS, local Block PVs); the hastack image built without a registry; the chart's
                    operator running on lab nodes with its own RBAC; every example object accepted
                    (status.conditions Accepted, observedGeneration current).
  not yet           failover of the example web service end to end (members, replication, promotion)
                    is exercised by the system tier; it joins this demo in its own issue.
"""

LOOK_AROUND = f"""\
Look around:
  export KUBECONFIG={{kubeconfig}}
  kubectl get hac,rvol,servicemonitors.hastack.io -n {DEMO_NS} -o wide
  kubectl explain hacluster.spec.heartbeat
  kubectl logs -n {RELEASE_NS} deploy/{RELEASE}-hastack
  PYTHONPATH=tests hastack lab status            # processes, links and pods per node
  PYTHONPATH=tests hastack lab kill-node 1       # a power loss; restart-node 1 brings it back
Tear down (removes every process, mount, loop device, cgroup, netns and route):
  PYTHONPATH=tests hastack lab down
"""


class Steps:
    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.rows: list[tuple[str, float]] = []

    def run(self, title: str, fn: object) -> object:
        print(f"==> {title} ...", flush=True)
        t = time.monotonic()
        result = fn()  # type: ignore[operator]
        self.rows.append((title, time.monotonic() - t))
        print(f"    done in {self.rows[-1][1]:.1f} s", flush=True)
        return result

    def table(self) -> str:
        lines = [f"  {title:<48} {secs:7.1f} s" for title, secs in self.rows]
        lines.append(f"  {'total':<48} {time.monotonic() - self.t0:7.1f} s")
        return "\n".join(lines)


def ensure_binaries() -> None:
    """Build what is missing, showing the build's own progress (it says `cache hit` otherwise)."""
    for target, names in (("control-plane", CONTROL_PLANE), ("lab", LAB_BINARIES)):
        if any(not binaries.cached_path(n).exists() for n in names):
            subprocess.run(["bash", str(binaries.BUILD_SCRIPT), target], check=True)
        else:
            print(f"    cache hit: {target} binaries in {binaries.cache_root() / 'bin'}")


def helm(lab: Lab, *args: str) -> None:
    subprocess.run([str(binaries.find("helm")), f"--kubeconfig={lab.kubeconfig}", *args], check=True)


def wait_accepted(lab: Lab, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        out = lab.kubectl("get", "hac,rvol,servicemonitors.hastack.io", "-n", DEMO_NS, "-o", "json").stdout
        items = json.loads(out)["items"]
        pending = [
            f"{i['kind']}/{i['metadata']['name']}" for i in items
            if not any(c.get("type") == "Accepted" and c.get("status") == "True"
                       for c in (i.get("status") or {}).get("conditions") or [])
        ]  # fmt: skip
        if items and not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"not accepted after {timeout:.0f}s: {pending}")
        time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    steps = Steps()
    lab = Lab(LabConfig(nodes=2))
    steps.run("binaries (built once, cached by version)", ensure_binaries)
    steps.run("lab up: control plane, 2 nodes, CoreDNS, Block PVs", lab.up)
    img = steps.run("hastack image (rootfs, deps, project layers)", image.build)
    assert isinstance(img, image.Image)
    steps.run("image imported into every node", lambda: lab.import_image(img.archive))
    repository, tag = img.tag.rsplit(":", 1)
    steps.run("helm install charts/hastack (operator Ready)", lambda: helm(
        lab, "upgrade", "--install", RELEASE, str(CHART), "--namespace", RELEASE_NS, "--create-namespace",
        "--set", f"image.repository={repository}", "--set", f"image.tag={tag}", "--set", "image.pullPolicy=Never",
        "--wait", "--timeout=5m"))  # fmt: skip

    def apply_examples() -> None:
        if lab.kubectl("get", "namespace", DEMO_NS, check=False).returncode != 0:
            lab.kubectl("create", "namespace", DEMO_NS)
        for f in sorted(EXAMPLES.glob("*.yaml")):
            lab.kubectl("apply", "-n", DEMO_NS, "-f", str(f))

    steps.run("examples applied", apply_examples)
    steps.run("every example Accepted by the operator", lambda: wait_accepted(lab))
    print()
    print(lab.kubectl("get", "hac,rvol,servicemonitors.hastack.io", "-n", DEMO_NS, "-o", "wide").stdout)
    print(lab.kubectl("get", "pods", "-A", "-o", "wide", "--sort-by=.spec.nodeName").stdout)
    print("Timings:\n" + steps.table() + "\n")
    print(WHAT_WORKS)
    print(LOOK_AROUND.format(kubeconfig=lab.kubeconfig))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
