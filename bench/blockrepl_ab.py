"""blockrepl A/B: two replica pairs that differ only in their environment, and nbdkit's file
plugin as the anchor, in one run; the three sides' fio runs alternate within every round (the
pairs' order flips each round). Prints each pair's median, the median (min-max) of its ratio to
the nbdkit run of the same round, and server CPU µs per request — the figures a change to the
write path is judged by (docs/performance.md).

    .venv/bin/python bench/blockrepl_ab.py --a HASTACK_BLOCKREPL_WIRE_MAX=5 --b '' \\
        [--a-net congestionControl=cubic] [--b-net ...] \\
        [--protocol C] [--rw randwrite] [--bs 4k] [--depth 16] [--rounds 6] [--seconds 4]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import sys
import tempfile

from blockrepl_bench import Nbdkit, fio, proc_usage

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from harness.blockrepl_cluster import Cluster  # noqa: E402


def _env(spec: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in spec.split(",") if kv)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", default="", help="environment of pair A: NAME=value[,NAME=value]")
    ap.add_argument("--b", default="", help="environment of pair B")
    ap.add_argument("--a-net", default="", help="net options of pair A's configuration: name=value[,name=value]")
    ap.add_argument("--b-net", default="", help="net options of pair B's configuration")
    ap.add_argument("--protocol", default="C", choices=["A", "B", "C"])
    ap.add_argument("--rw", default="randwrite")
    ap.add_argument("--bs", default="4k")
    ap.add_argument("--depth", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--size-mib", type=int, default=1024)
    args = ap.parse_args(argv)
    size = args.size_mib << 20
    root = pathlib.Path(tempfile.mkdtemp(prefix="blockrepl-ab-", dir="/var/tmp"))
    anchor = Nbdkit(root, size)
    pairs: dict[str, Cluster] = {}
    try:
        for name, spec, net in (("A", args.a, args.a_net), ("B", args.b, args.b_net)):
            (root / name).mkdir()
            c = pairs[name] = Cluster(root / name, 2, size=size, protocol=args.protocol, net=_env(net))
            for r in c.replicas:
                r.env.update(_env(spec))
            c.start()
            c.wait_connected(60)
            c[0].call("primary")
            fio(c[0].nbd_uri, args.rw, args.bs, args.depth, 3, size, root)  # warm: the activity log grows
        pids = {"nbdkit": [anchor.proc.pid], **{k: c.pids() for k, c in pairs.items()}}
        got: dict[str, list[float]] = {k: [] for k in pids}
        cpu: dict[str, list[float]] = {k: [] for k in pids}
        for rnd in range(args.rounds):
            for side in ["nbdkit", "A", "B"] if rnd % 2 == 0 else ["nbdkit", "B", "A"]:
                uri = anchor.uri if side == "nbdkit" else pairs[side][0].nbd_uri
                os.sync()
                c0 = sum(proc_usage(p)[0] for p in pids[side])
                r = fio(uri, args.rw, args.bs, args.depth, args.seconds, size, root)
                used = sum(proc_usage(p)[0] for p in pids[side]) - c0
                cpu[side].append(used * 1e6 / max(r["iops"] * (args.seconds + 1), 1))  # +1: the ramp
                got[side].append(r["iops"] if "rand" in args.rw else r["mbps"])
            print(rnd, {k: round(v[-1]) for k, v in got.items()}, f"load {os.getloadavg()[0]:.1f}", flush=True)
        unit = "IOPS" if "rand" in args.rw else "MB/s"
        print(f"nbdkit: median {statistics.median(got['nbdkit']):.0f} {unit}, "
              f"cpu µs/request {statistics.median(cpu['nbdkit']):.0f}")  # fmt: skip
        names = {"A": " ".join(filter(None, (args.a, args.a_net))), "B": " ".join(filter(None, (args.b, args.b_net)))}
        for k, spec in names.items():
            ratios = [x / n for x, n in zip(got[k], got["nbdkit"], strict=True)]
            print(f"{k} ({spec or 'default'}): median {statistics.median(got[k]):.0f} {unit}, paired ratio "
                  f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}), "
                  f"cpu µs/request {statistics.median(cpu[k]):.0f}")  # fmt: skip
    finally:
        anchor.stop()
        for c in pairs.values():
            c.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
