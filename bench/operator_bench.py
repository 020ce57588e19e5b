"""Operator benchmark: N HAClusters (each with a volume and a monitor) created at once, time until
every one is reconciled (status.observedGeneration current, every child object present), and the
operator's peak RSS. Targets: 200 clusters in <= 60 s, <= 300 MiB.

    .venv/bin/python bench/operator_bench.py [--clusters 200] [--profile DIR] [--without-operator]

Beside the result it prints the load average, the CPU seconds each process spent during the run
(operator, kube-apiserver, etcd, controllers) and the API requests by verb and resource (from the
API server's apiserver_request_total), so a slow run says where its time went. --profile DIR
also runs the operator under py-spy (collapsed stacks of the thread holding the GIL, i.e. where
the operator spends its CPU, in DIR/operator.txt) when py-spy is installed. --without-operator
only creates the objects: the floor, what the API server and etcd spend on the input alone.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from harness import samples  # noqa: E402
from harness.controlplane import ControlPlane  # noqa: E402
from harness.hastack_api import OperatorProcess, ensure_namespace, install_crds, install_rbac  # noqa: E402

NS = "bench"
TARGET_SECONDS = 60.0
TARGET_MIB = 300.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


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


def reconciled(cp: ControlPlane) -> int:
    def items(kind: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = json.loads(cp.kubectl("get", kind, "-n", NS, "-o", "json",
                                                          timeout=120).stdout)["items"]
        return out

    clusters = items("hac")
    sts = {s["metadata"]["name"] for s in items("sts")}
    cms = {c["metadata"]["name"] for c in items("cm")}
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


def cpu_seconds(pid: int) -> tuple[str, float]:
    """(process name, user + system CPU seconds so far) of one process."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "", 0.0
    name = stat[stat.index("(") + 1:stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2:].split()
    return name, (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_by_process(pids: dict[str, int]) -> dict[str, float]:
    out: dict[str, float] = {}
    for label, pid in pids.items():
        _, secs = cpu_seconds(pid)
        out[label] = secs
    return out


def request_counts(cp: ControlPlane) -> dict[tuple[str, str], tuple[float, float]]:
    """(count, seconds spent serving) by (verb, resource[/subresource]), from the API server's
    apiserver_request_total and apiserver_request_duration_seconds_sum."""
    text = cp.kubectl("get", "--raw", "/metrics", timeout=60).stdout
    out: dict[tuple[str, str], tuple[float, float]] = {}
    for m in re.finditer(r"^apiserver_request_(total|duration_seconds_sum)\{([^}]*)\} (\S+)$", text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        if labels.get("verb") == "WATCH":
            continue  # a watch's duration is how long it stayed open
        res = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
        k = (labels.get("verb", ""), res)
        n, secs = out.get(k, (0.0, 0.0))
        out[k] = (n + float(m.group(3)), secs) if m.group(1) == "total" else (n, secs + float(m.group(3)))
    return out


def loadavg() -> str:
    return " ".join(pathlib.Path("/proc/loadavg").read_text().split()[:3])


def py_spy() -> str | None:
    spy = shutil.which("py-spy") or str(pathlib.Path(sys.executable).parent / "py-spy")
    return spy if pathlib.Path(spy).exists() else None


def profiled(op: OperatorProcess, out: pathlib.Path) -> None:
    """Start the operator under py-spy (attaching to a running process does not work here)."""
    spy = py_spy()
    if spy is None:
        print("operator: py-spy not installed, no profile", file=sys.stderr)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    sup = op._sup  # the harness starts the process; the bench only puts py-spy in front of it
    start = sup.start

    def wrapped(name: str, argv: Any, **kw: Any) -> Any:
        return start(name, [spy, "record", "--format", "raw", "--rate", "50", "--gil", "--nonblocking",
                            "-o", str(out), "--", *argv], **kw)

    sup.start = wrapped  # type: ignore[method-assign]


def python_pid(pid: int) -> int:
    """The operator's own pid (py-spy's child when profiled)."""
    if cpu_seconds(pid)[0].startswith("py-spy"):
        children = pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return int(children[0]) if children else pid
    return pid


def events_by_source(cp: ControlPlane) -> list[tuple[int, str]]:
    items = json.loads(cp.kubectl("get", "events", "-n", NS, "-o", "json", timeout=120).stdout)["items"]
    counts: dict[str, int] = {}
    for e in items:
        src = e.get("reportingComponent") or (e.get("source") or {}).get("component") or "?"
        k = f"{src} {e.get('reason')}"
        counts[k] = counts.get(k, 0) + int(e.get("count") or 1)
    return sorted(((n, k) for k, n in counts.items()), reverse=True)


def report(cpu0: dict[str, float], cpu1: dict[str, float], calls0: dict[tuple[str, str], tuple[float, float]],
           calls1: dict[tuple[str, str], tuple[float, float]]) -> None:
    cpu = {k: cpu1[k] - cpu0.get(k, 0.0) for k in cpu1}
    print("operator: CPU seconds during the run: "
          + ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])))
    delta = {k: (n - calls0.get(k, (0.0, 0.0))[0], secs - calls0.get(k, (0.0, 0.0))[1])
             for k, (n, secs) in calls1.items()}
    delta = {k: v for k, v in delta.items() if v[0] > 0}
    print(f"operator: {sum(n for n, _ in delta.values()):.0f} API requests during the run "
          f"({sum(s for _, s in delta.values()):.0f} s of API server time); most time spent on:")
    for (verb, res), (n, secs) in sorted(delta.items(), key=lambda kv: -kv[1][1])[:20]:
        print(f"  {n:7.0f} {verb} {res} ({secs:.1f} s)")


def create_only(cp: ControlPlane, text: str, timeout: float) -> None:
    """The floor: the same objects created with no operator running (what creating them costs)."""
    pids = {cpu_seconds(p)[0] or str(p): p for p in cp.pids()}
    calls0, cpu0 = request_counts(cp), cpu_by_process(pids)
    t0 = time.monotonic()
    cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=text, timeout=timeout)
    print(f"operator: without an operator, the objects are created in {time.monotonic() - t0:.1f} s")
    report(cpu0, cpu_by_process(pids), calls0, request_counts(cp))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clusters", type=int, default=200)
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--profile", type=pathlib.Path, help="write a py-spy profile of the operator here")
    p.add_argument("--without-operator", action="store_true", help="only create the objects (the floor)")
    ns = p.parse_args()
    load_before = loadavg()
    text = "".join(f"---\n{json.dumps(o)}\n" for o in objects(ns.clusters))
    with ControlPlane(nodes=0) as cp:
        install_crds(cp)
        ensure_namespace(cp, NS)
        if ns.without_operator:
            create_only(cp, text, ns.timeout)
            print(f"operator: load average {load_before} before, {loadavg()} after (2 cores)")
            return 0
        ensure_namespace(cp, "hastack-system")
        sa = install_rbac(cp, "hastack-system")
        op = OperatorProcess(cp, cp.kubeconfig_for_service_account("hastack-system", sa), "hastack-system",
                             name="bench-operator", extra_args=(f"--namespace={NS}",))
        if ns.profile:
            profiled(op, ns.profile / "operator.txt")
        op.start()
        op.wait_log("became leader", timeout=60)
        assert op.child is not None
        pid = python_pid(op.child.pid)
        pids = {cpu_seconds(p)[0] or str(p): p for p in cp.pids()}
        pids["operator"] = pid
        try:
            calls0, cpu0 = request_counts(cp), cpu_by_process(pids)
            t0 = time.monotonic()
            cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=text, timeout=ns.timeout)
            created = time.monotonic() - t0
            done = 0
            while time.monotonic() - t0 < ns.timeout:
                done = reconciled(cp)
                if done == ns.clusters:
                    break
                time.sleep(1)
            elapsed = time.monotonic() - t0
            cpu1, calls1 = cpu_by_process(pids), request_counts(cp)
            peak = rss_mib(pid)
            alive = op.running()
            events = events_by_source(cp)
        finally:
            if ns.profile and pid != op.child.pid:
                op.child.proc.send_signal(signal.SIGINT)  # py-spy writes its profile
                try:
                    op.child.proc.wait(30)
                except subprocess.TimeoutExpired:
                    pass
            tail = op.tail(30)
            op.stop()
    print(f"operator: load average {load_before} before, {loadavg()} after (2 cores)")
    print(f"operator: {done}/{ns.clusters} HAClusters reconciled in {elapsed:.1f} s "
          f"(objects created in {created:.1f} s); target {TARGET_SECONDS:.0f} s -> ratio "
          f"{elapsed / TARGET_SECONDS:.2f} (<= 1.00 meets it)")
    print(f"operator: peak RSS {peak:.0f} MiB; target {TARGET_MIB:.0f} MiB -> ratio {peak / TARGET_MIB:.2f} "
          "(<= 1.00 meets it)")
    report(cpu0, cpu1, calls0, calls1)
    print("operator: Events in the namespace by source and reason: "
          + ", ".join(f"{k} {n}" for n, k in events[:8]))
    if done != ns.clusters or not alive:
        print(f"operator: {'running' if alive else 'EXITED'}; last lines of its log:\n{tail}")
    return 0 if done == ns.clusters else 1


if __name__ == "__main__":
    raise SystemExit(main())
