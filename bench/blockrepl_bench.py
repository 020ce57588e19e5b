"""blockrepl benchmark: fio's nbd engine against nbdkit's file plugin (the anchor, unreplicated)
and against blockrepl with 2 replicas (protocol C; also A and B), on the same file system,
preallocated backing files, the two sides' runs alternating, each run starting with no dirty
pages (``sync`` before it, untimed), each workload on fresh files and processes. Prints
medians and ratios, p99 write latency, resync throughput against ``sync.rate``, CPU seconds
and peak RSS per replica.

    .venv/bin/python bench/blockrepl_bench.py [--seconds 8] [--rounds 3] [--size-mib 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from harness.blockrepl_cluster import Cluster, make_disk, wait_for  # noqa: E402

WORKLOADS = {  # name: (fio rw, bs, iodepth, target ratio or None)
    "seq write 1M qd8 (MB/s)": ("write", "1M", 8, 0.50),
    "rand write 4k qd16 (IOPS)": ("randwrite", "4k", 16, 0.50),
    "rand read 4k qd16 (IOPS)": ("randread", "4k", 16, 0.80),
    "fsync write 4k qd1 (IOPS)": ("randwrite+fsync", "4k", 1, None),  # a FLUSH after every write
}
SHORT = {
    "seq": "seq write 1M qd8 (MB/s)",
    "randwrite": "rand write 4k qd16 (IOPS)",
    "randread": "rand read 4k qd16 (IOPS)",
    "fsync": "fsync write 4k qd1 (IOPS)",
}


def fio(uri: str, rw: str, bs: str, depth: int, seconds: float, size: int, cwd: pathlib.Path) -> dict[str, float]:
    rw, _, sync = rw.partition("+")
    out = subprocess.run(
        ["fio", "--name=b", "--ioengine=nbd", f"--uri={uri}", f"--rw={rw}", f"--bs={bs}", f"--iodepth={depth}",
         *(["--fsync=1"] if sync else []),
         f"--size={size}", "--time_based", f"--runtime={seconds}", "--ramp_time=1", "--output-format=json"],
        capture_output=True, text=True, check=True, cwd=cwd, timeout=seconds * 4 + 60,
    ).stdout  # fmt: skip
    job = json.loads(out[out.index("{") :])["jobs"][0]
    side = job["write"] if "write" in rw else job["read"]
    pct = side.get("clat_ns", {}).get("percentile", {})
    return {
        "iops": side["iops"],
        "mbps": side["bw_bytes"] / 1e6,
        "p99_us": pct.get("99.000000", 0) / 1000,
    }


def proc_usage(pid: int) -> tuple[float, int]:
    """(CPU seconds, peak RSS bytes) of a running process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / tick
    with open(f"/proc/{pid}/status") as f:
        hwm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))
    return cpu, hwm


class Nbdkit:
    def __init__(self, root: pathlib.Path, size: int) -> None:
        self.img = make_disk(root / "anchor.img", size)
        self.sock = root / "anchor.sock"
        self.proc = subprocess.Popen(["nbdkit", "-f", "-U", str(self.sock), "file", str(self.img)])
        wait_for(self.sock.exists, 30, "nbdkit socket")
        self.uri = f"nbd+unix:///?socket={self.sock}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def start_pair(root: pathlib.Path, size: int, protocol: str) -> Cluster:
    root.mkdir(parents=True, exist_ok=True)
    c = Cluster(root, 2, size=size, protocol=protocol, sync={"rate": "400MiB"})
    c.start()
    c.wait_connected(60)
    c[0].call("primary")
    return c


def run_workload(
    wdir: pathlib.Path, rw: str, bs: str, depth: int, protocols: list[str], seconds: float, rounds: int, size: int
) -> tuple[dict[str, list[dict[str, float]]], dict[str, tuple[float, int]]]:
    """One workload on fresh files: the anchor and a pair per protocol (reads: the first protocol
    only, on data written untimed first), sides alternating within every round."""
    wdir.mkdir(parents=True)
    anchor = Nbdkit(wdir, size)
    if rw == "randread":
        protocols = protocols[:1]
    pairs = {proto: start_pair(wdir / f"proto{proto}", size, proto) for proto in protocols}
    results: dict[str, list[dict[str, float]]] = {}
    usage: dict[str, tuple[float, int]] = {}
    try:
        sides = {"nbdkit": anchor.uri, **{f"blockrepl {k}": v[0].nbd_uri for k, v in pairs.items()}}
        pids = {"nbdkit": [anchor.proc.pid], **{f"blockrepl {k}": v.pids() for k, v in pairs.items()}}
        if rw == "randread":  # read written data (a fresh file's unwritten extents read as zeroes for free)
            for uri in sides.values():
                fill(uri, size, wdir)
        for _ in range(rounds):
            for side, uri in sides.items():  # alternate sides within every round
                os.sync()  # no run pays for writing back the previous run's dirty pages
                cpu0 = sum(proc_usage(pid)[0] for pid in pids[side])
                res = fio(uri, rw, bs, depth, seconds, size, wdir)
                cpu = sum(proc_usage(pid)[0] for pid in pids[side]) - cpu0  # ramp included
                res["cpu_us"] = cpu * 1e6 / max(res["iops"] * (seconds + 1), 1)
                results.setdefault(side, []).append(res)
        for proto, c in pairs.items():
            for r in c.replicas:
                assert r.child is not None
                usage[f"{proto} node{r.node_id}"] = proc_usage(r.child.pid)
    finally:
        anchor.stop()
        for c in pairs.values():
            c.stop()
    return results, usage


def fill(uri: str, size: int, cwd: pathlib.Path) -> None:
    subprocess.run(["fio", "--name=fill", "--ioengine=nbd", f"--uri={uri}", "--rw=write", "--bs=1M", "--iodepth=8",
                    f"--size={size}", "--output-format=terse"], capture_output=True, check=True, cwd=cwd,
                   timeout=600)  # fmt: skip


def resync_rate(root: pathlib.Path, rate_mib: int) -> tuple[float, float]:
    """Dirty 64 MiB while the peer is away, reconnect, time the resync: (MiB/s, configured MiB/s)."""
    root.mkdir(parents=True, exist_ok=True)
    c = Cluster(root, 2, size=256 << 20, sync={"rate": f"{rate_mib}MiB"})
    c.start()
    try:
        c.wait_connected(60)
        c[0].call("primary")
        for script in ("write -P 0x31 0 1M", None, "write -P 0x33 0 64M"):  # leave day 0, cut, dirty
            if script is None:
                c[1].call("disconnect")
                continue
            subprocess.run(["qemu-io", "-f", "raw", "-c", script, c[0].nbd_uri], check=True,
                           capture_output=True, timeout=120)  # fmt: skip
        t0 = time.monotonic()
        c[1].call("connect")
        c.wait_connected(600)
        took = time.monotonic() - t0
        total = c[1].peer(0)["sync"]["total_bytes"] / 2**20
        return total / took, rate_mib
    finally:
        c.stop()


def report(
    results: dict[str, dict[str, list[dict[str, float]]]],
    usage: dict[str, tuple[float, int]],
    ns: argparse.Namespace,
    load0: tuple[float, float, float],
) -> None:
    print(f"blockrepl benchmark: {ns.rounds} rounds x {ns.seconds:.0f} s, {ns.size_mib} MiB preallocated files")
    print("ratio: of the medians; paired: median (min-max) of each round's ratio to the nbdkit run beside it;")
    print("cpu us: server CPU time per request (nbdkit; both blockrepl replicas together), median")
    head = ("workload", "side", "median", "ratio", "target", "p99 us", "cpu us")
    print("{:<28} {:<13} {:>10} {:>7} {:>7} {:>9} {:>7}  paired".format(*head))
    for wl, sides in results.items():
        rw, _, _, target = WORKLOADS[wl]
        key = "mbps" if rw == "write" else "iops"
        base = statistics.median(r[key] for r in sides["nbdkit"])
        for side, runs in sides.items():
            med = statistics.median(r[key] for r in runs)
            p99 = statistics.median(r["p99_us"] for r in runs)
            ratio = med / base if base else 0.0
            tgt = f"{target:.2f}" if side == "blockrepl C" and target else ""
            pairs_ = [r[key] / b[key] for r, b in zip(runs, sides["nbdkit"], strict=True) if b[key]]
            paired = f"{statistics.median(pairs_):.2f} ({min(pairs_):.2f}-{max(pairs_):.2f})" if pairs_ else ""
            cpu = statistics.median(r["cpu_us"] for r in runs)
            print(f"{wl:<28} {side:<13} {med:>10.0f} {ratio:>7.2f} {tgt:>7} {p99:>9.0f} {cpu:>7.0f}  {paired}")
    print("\nper replica over the whole run: CPU seconds, peak RSS")
    for name, (cpu, rss) in usage.items():
        print(f"  {name:<10} {cpu:8.1f} s {rss / 2**20:8.1f} MiB")
    load1 = os.getloadavg()
    print(f"load average (1/5/15 min) at start {load0[0]:.1f}/{load0[1]:.1f}/{load0[2]:.1f}, "
          f"at end {load1[0]:.1f}/{load1[1]:.1f}/{load1[2]:.1f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument("--dir", default=os.environ.get("BENCH_DIR", "/var/tmp"))
    p.add_argument("--workloads", default="seq,randwrite,randread,fsync", help="comma list of: " + ",".join(SHORT))
    p.add_argument("--protocols", default="C,B,A", help="comma list of blockrepl protocols to run")
    p.add_argument("--no-resync", action="store_true", help="skip the resync measurement")
    ns = p.parse_args(argv)
    workloads = {SHORT[w]: WORKLOADS[SHORT[w]] for w in ns.workloads.split(",")}
    protocols = ns.protocols.split(",")
    size = ns.size_mib << 20
    load0 = os.getloadavg()
    root = pathlib.Path(tempfile.mkdtemp(prefix="blockrepl-bench-", dir=ns.dir))
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    usage: dict[str, tuple[float, int]] = {}
    try:
        for wl, (rw, bs, depth, _) in workloads.items():
            # Every workload starts on fresh preallocated files and fresh processes: what an earlier
            # workload left in the page cache changes the anchor's speed several-fold (measured:
            # nbdkit's 4 KiB random writes at 20 k IOPS after the sequential runs, 110 k on fresh files).
            wdir = root / "_".join(wl.split()[:2])
            res, use = run_workload(wdir, rw, bs, depth, protocols, ns.seconds, ns.rounds, size)
            results[wl] = res
            for name, (cpu, rss) in use.items():
                cpu0, rss0 = usage.get(name, (0.0, 0))
                usage[name] = (cpu0 + cpu, max(rss0, rss))
            shutil.rmtree(wdir, ignore_errors=True)
        report(results, usage, ns, load0)
        for rate in () if ns.no_resync else (20, 50):
            got, want = resync_rate(root / f"resync{rate}", rate)
            print(f"resync of 64 MiB dirty with sync.rate {want} MiB/s: {got:.1f} MiB/s "
                  f"({got / want:.2f} of the limit)")  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
