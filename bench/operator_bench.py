"""Operator benchmark: N HAClusters (each with a volume and a monitor) created at once, time until
every one is reconciled (status.observedGeneration current, every child object present), and the
operator's peak RSS. Targets: 200 clusters in <= 60 s, <= 300 MiB.

    .venv/bin/python bench/operator_bench.py [--clusters 200]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from typing import Any

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from harness import samples  # noqa: E402
from harness.controlplane import ControlPlane  # noqa: E402
from harness.hastack_api import OperatorProcess, apply_objects, ensure_namespace, install_crds, install_rbac  # noqa: E402

NS = "bench"


def objects(n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        name = f"c{i:03d}"
        out += [
            samples.replicatedvolume(f"{name}-data", NS),
            samples.hacluster(name, NS, resources=[
                {"kind": "service", "name": f"{name}-active", "port": 80, "targetPort": 8000},
                {"kind": "volume", "name": f"{name}-data", "mountPath": "/data"},
                {"kind": "monitor", "name": f"{name}-http"}]),
            samples.servicemonitor(f"{name}-http", NS, target={"haCluster": name, "port": 8000}),
        ]
    return out


def reconciled(cp: ControlPlane, n: int) -> int:
    clusters = json.loads(cp.kubectl("get", "hac", "-n", NS, "-o", "json", timeout=120).stdout)["items"]
    sts = {s["metadata"]["name"] for s in
           json.loads(cp.kubectl("get", "sts", "-n", NS, "-o", "json", timeout=120).stdout)["items"]}
    cms = {c["metadata"]["name"] for c in
           json.loads(cp.kubectl("get", "cm", "-n", NS, "-o", "json", timeout=120).stdout)["items"]}
    done = 0
    for c in clusters:
        name, gen = c["metadata"]["name"], c["metadata"]["generation"]
        if (c.get("status") or {}).get("observedGeneration") == gen and name in sts and f"{name}-hastack" in cms:
            done += 1
    return done


def rss_mib(pid: int) -> float:
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--clusters", type=int, default=200)
    p.add_argument("--timeout", type=float, default=600)
    ns = p.parse_args()
    with ControlPlane(nodes=0) as cp:
        install_crds(cp)
        ensure_namespace(cp, NS)
        ensure_namespace(cp, "hastack-system")
        sa = install_rbac(cp, "hastack-system")
        op = OperatorProcess(cp, cp.kubeconfig_for_service_account("hastack-system", sa), "hastack-system",
                             name="bench-operator", extra_args=(f"--namespace={NS}",))
        op.start()
        op.wait_log("became leader", timeout=60)
        try:
            t0 = time.monotonic()
            apply_objects(cp, objects(ns.clusters))
            created = time.monotonic() - t0
            done = 0
            while time.monotonic() - t0 < ns.timeout:
                done = reconciled(cp, ns.clusters)
                if done == ns.clusters:
                    break
                time.sleep(1)
            elapsed = time.monotonic() - t0
            peak = rss_mib(op.child.pid) if op.child else 0.0
        finally:
            op.stop()
    print(f"operator: {done}/{ns.clusters} HAClusters reconciled in {elapsed:.1f} s "
          f"(objects created in {created:.1f} s); target 60 s -> ratio {elapsed / 60:.2f} (<= 1.00 meets it)")
    print(f"operator: peak RSS {peak:.0f} MiB; target 300 MiB -> ratio {peak / 300:.2f} (<= 1.00 meets it)")
    return 0 if done == ns.clusters else 1


if __name__ == "__main__":
    raise SystemExit(main())
