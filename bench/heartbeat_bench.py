"""heartbeat benchmark: failover time from SIGKILL of the active to the standby active.

Real processes: two heartbeat members in network namespaces, a real kube-apiserver (+ etcd, kwok
nodes) holding the Lease and the member pods, default timings. Each trial SIGKILLs the active's
heartbeat and times, on this machine's shared monotonic clock, until the standby reports
``active``; the phases come from the new active's own timeline (detected, Lease acquired,
serving). The killed member is restarted as a standby before the next trial. The anchors are
the design's target (5 s median) and deadTime (for detection).

With ``--volume`` each member also has a blockrepl replica (protocol C, 64 MiB, ext4 laid down
once): a trial kills the active's whole node (heartbeat, blockrepl, its exposure and mount), and
the phases run to the filesystem mounted and the member serving.

    .venv/bin/python bench/heartbeat_bench.py [--trials 20] [--volume]
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile
import time
from typing import Any

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from harness.controlplane import ControlPlane  # noqa: E402
from harness.heartbeat_cluster import ApiAddress, install_crd, setup_cluster  # noqa: E402
from harness.heartbeat_net import HeartbeatNet  # noqa: E402
from harness.heartbeat_volume import (  # noqa: E402
    cleanup_exposures,
    cleanup_mounts,
    format_volume,
    link_heartbeat_sockets,
    make_replicas,
    node_dies,
    volume_config,
)
from harness.procs import wait_for  # noqa: E402

TARGET_P50 = 5.0
DEAD_TIME = 3.0


def actives(net: HeartbeatNet) -> list[str]:
    out = []
    for name, mem in net.members.items():
        if mem.child is not None and mem.child.running():
            try:
                if mem.status(timeout=1.0)["role"] == "active":
                    out.append(name)
            except Exception:
                pass
    return out


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def trial(net: HeartbeatNet, replicas: Any = None, tmp: pathlib.Path | None = None) -> dict[str, Any]:
    old = wait_for(lambda: len(a := actives(net)) == 1 and a[0], 30, "one active")
    standby = next(n for n in net.members if n != old)
    mem = net.members[standby]
    wait_for(lambda: (st := mem.status())["peers"][old]["state"] == "alive" and st["role"] == "standby"
             and st["eligible"], 60, "standby ready (resynced: no Outdated record left)")
    time.sleep(1.0)  # a steady state: the Lease renewed a few times
    t0 = time.monotonic()
    if replicas is None:
        net.kill(old)
    else:
        assert tmp is not None
        node_dies(net, replicas, tmp, old)
    wait_for(lambda: mem.status(timeout=1.0)["role"] == "active", 30, "takeover", interval=0.02, max_interval=0.02)
    total = time.monotonic() - t0
    phases = {k: v["seconds"] for k, v in mem.status()["lastFailover"]["phases"].items()}
    if replicas is not None:  # the node comes back: its replica resyncs, then heartbeat starts
        replicas[list(net.members).index(old)].start()
        replicas.wait_connected(60)
    net.start(old)  # back as a standby for the next trial
    detected_after_kill = total - phases.get("serving", total)  # kill -> detection
    return {"total": total, "detect": detected_after_kill, **phases}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--volume", action="store_true", help="with blockrepl and an ext4 filesystem")
    ns = p.parse_args()
    addr = ApiAddress()
    cp = ControlPlane(nodes=2, controllers=False, bind_address=addr.ip)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="hb-bench-"))
    net = None
    replicas = None
    try:
        cp.start()
        install_crd(cp)
        per_member = None
        if ns.volume:
            replicas = make_replicas(tmp / "blockrepl", lease_fenced="bench")  # as the operator renders it
            replicas.start()
            replicas.wait_connected()
            format_volume(replicas, tmp / "fsinit")
            per_member = volume_config(replicas, tmp)
        net = HeartbeatNet(tmp, n=2, prefix="bench", namespace="hb-bench", kubeconfig=cp.kubeconfig,
                           per_member=per_member)
        setup_cluster(cp, net)
        if replicas is not None:
            link_heartbeat_sockets(replicas.root, net)
        for name in net.members:
            net.start(name)
        results = []
        for i in range(ns.trials):
            r = trial(net, replicas, tmp)
            results.append(r)
            print(f"trial {i + 1:2d}: total {r['total']:.2f}s detect {r['detect']:.2f}s "
                  f"lease {r.get('lease_acquired', 0):.2f}s mounted {r.get('mounted', 0):.2f}s "
                  f"serving {r.get('serving', 0):.2f}s", flush=True)
        totals = [r["total"] for r in results]
        detects = [r["detect"] for r in results]
        print()
        what = "node death (heartbeat + blockrepl) -> standby mounted and serving" if ns.volume else \
            "SIGKILL of heartbeat -> standby active"
        print(f"failover {what}, {len(totals)} trials, default timings")
        print(f"  p50 {pct(totals, 0.5):.2f}s  p95 {pct(totals, 0.95):.2f}s  min {min(totals):.2f}s  "
              f"max {max(totals):.2f}s")
        print(f"  ratio p50 / target {TARGET_P50:.0f}s: {pct(totals, 0.5) / TARGET_P50:.2f}")
        print(f"  detection (kill -> takeover decided): p50 {statistics.median(detects):.2f}s, "
              f"ratio to deadTime {statistics.median(detects) / DEAD_TIME:.2f}")
        for phase in ("lease_acquired", "volume_promoted", "mounted", "serving"):
            vals = [r[phase] for r in results if phase in r]
            if vals:
                print(f"  phase {phase} after detection: p50 {statistics.median(vals):.3f}s "
                      f"p95 {pct(vals, 0.95):.3f}s")
    finally:
        if net is not None:
            net.close()
        if replicas is not None:
            cleanup_mounts(tmp)
            replicas.stop()
            cleanup_exposures(tmp)
        cp.stop()
        addr.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
