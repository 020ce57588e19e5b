"""`make demo`: the lab, the operator installed by its chart, the examples applied, and what runs
where — each step timed. Needs root and `tests/` on PYTHONPATH (`python -m harness.demo`)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from harness import binaries, image
from harness import lab_hastack as ha
from harness.lab import LAB_BINARIES, Lab, LabConfig
from harness.procs import wait_for

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "hastack"
EXAMPLES = REPO / "examples"
RELEASE, RELEASE_NS, DEMO_NS = "hastack", "hastack-system", "demo"
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "helm")

WHAT_WORKS = """\
What this demo showed (every step above ran for real on this machine):
  - a 2-node Kubernetes (real kubelets, containerd, CNI, kube-proxy, CoreDNS, local Block PVs); the
    hastack image built without a registry; the chart's operator on lab nodes with its own RBAC;
  - the operator turning examples/ha-web.yaml into member pods (blockrepl, heartbeat, mon, fsinit,
    the start gate around the app): one Lease holder labelled active, both replicas UpToDate over
    the replication link, ext4 laid down once by fsinit and mounted on the active's hostPath;
  - a page written through the active member and served by the Service from the other node;
  - a power loss of the active's node: the standby took the Lease, promoted its replica, mounted
    and served the same page; the restarted node's member rejoined as the standby and resynced.
Not shown here: growing a volume (the lab's local PVs cannot expand), the alerts (no Prometheus in
the lab; `make test` checks the rules with promtool).
"""

LOOK_AROUND = f"""\
Look around:
  export KUBECONFIG={{kubeconfig}}
  kubectl get hac,rvol,servicemonitors.hastack.io -n {DEMO_NS} -o wide
  kubectl get pods -n {DEMO_NS} -L hastack.io/role -o wide
  kubectl exec -n {DEMO_NS} web-0 -c heartbeat -- hastack ctl heartbeat status
  kubectl exec -n {DEMO_NS} web-0 -c blockrepl -- hastack ctl blockrepl status
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


def show_steady(lab: Lab, s: ha.Steady) -> None:
    rvol = ha.get(lab, "replicatedvolumes.hastack.io", ha.VOLUME, DEMO_NS)["status"]
    disks = ", ".join(f"{r['member']} {r['role']} {r['diskState']} {r['connection']}" for r in rvol["replicas"])
    mount = ha.host_dir(DEMO_NS, s.active)
    print(f"    active {s.active} on {s.node} (Lease holder, label hastack.io/role=active); standby {s.standby}")
    print(f"    replicas: {disks}")
    print(f"    {s.device} (nbdfuse + loop) mounted at {mount} on {s.node}: "
          f"device {ha.mounted_device(mount)}")  # fmt: skip
    formatted = [m for m in (s.active, s.standby) if "formatted" in ha.container_log(lab, DEMO_NS, m, "fsinit")]
    print(f"    fsinit formatted on: {', '.join(formatted) or 'nobody this time (the volume had a filesystem)'}")


def serve_page(lab: Lab, s: ha.Steady, page: str) -> None:
    lab.kubectl("exec", "-n", DEMO_NS, s.active, "-c", "web", "--", "sh", "-c",
                f"echo '{page}' > /data/index.html && sync -d /data/index.html")  # fmt: skip
    got = ha.through_service(lab, DEMO_NS, s.standby, "index.html").strip()
    print(f"    GET http://web.{DEMO_NS}.svc/ from {s.standby}'s node: {got!r}")
    if got != page:
        raise RuntimeError(f"the Service served {got!r}, not the page just written")


def power_loss(lab: Lab, s: ha.Steady, page: str) -> float:
    t0 = time.monotonic()
    lab.kill_node(s.node)

    def took_over() -> bool:
        hb = ha.heartbeat_status(lab, DEMO_NS, s.standby)
        return hb.get("role") == "active" and ha.lease_holder(lab, DEMO_NS) == s.standby

    wait_for(took_over, 90, f"{s.standby} to take over", max_interval=0.5)
    took = time.monotonic() - t0
    got = ha.through_service(lab, DEMO_NS, s.standby, "index.html", timeout=60).strip()
    served = time.monotonic() - t0
    print(f"    {s.standby} active {took:.1f} s after the power loss, the page served again after {served:.1f} s:")
    print(f"    GET http://web.{DEMO_NS}.svc/: {got!r}")
    if got != page:
        raise RuntimeError(f"after the failover the Service served {got!r}, not {page!r}")
    return served


def rejoin(lab: Lab, s: ha.Steady, _: object) -> None:
    lab.restart_node(s.node)
    new = ha.wait_steady(lab, DEMO_NS, timeout=300)
    show_steady(lab, new)


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
        "--set", f"image.repository={repository}", "--set-string", f"image.tag={tag}",
        "--set", "image.pullPolicy=Never", "--wait", "--timeout=5m"))  # fmt: skip

    def apply_examples() -> None:
        if lab.kubectl("get", "namespace", DEMO_NS, check=False).returncode != 0:
            lab.kubectl("create", "namespace", DEMO_NS)
        for f in sorted(EXAMPLES.glob("*.yaml")):
            lab.kubectl("apply", "-n", DEMO_NS, "-f", str(f))

    steps.run("examples applied", apply_examples)
    steps.run("every example Accepted by the operator", lambda: wait_accepted(lab))
    steady = steps.run("HA web service up: members, replication, fsinit, mount, active",
                       lambda: ha.wait_steady(lab, DEMO_NS, timeout=300))  # fmt: skip
    assert isinstance(steady, ha.Steady)
    show_steady(lab, steady)
    page = f"hello from the demo at {time.strftime('%H:%M:%S')}"
    steps.run("a page written through the active member, served by the Service", lambda: serve_page(lab, steady, page))
    after = steps.run(f"SIGKILL every process of {steady.node} (power loss); the standby takes over",
                      lambda: power_loss(lab, steady, page))  # fmt: skip
    steps.run(f"{steady.node} restarted: {steady.active} rejoins as the standby, resynced",
              lambda: rejoin(lab, steady, after))  # fmt: skip
    print()
    print(lab.kubectl("get", "hac,rvol,servicemonitors.hastack.io", "-n", DEMO_NS, "-o", "wide").stdout)
    print(lab.kubectl("get", "pods", "-A", "-o", "wide", "--sort-by=.spec.nodeName").stdout)
    print("Timings:\n" + steps.table() + "\n")
    print(WHAT_WORKS)
    print(LOOK_AROUND.format(kubeconfig=lab.kubeconfig))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
