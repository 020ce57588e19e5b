"""mon benchmark: probes/s from one process beside Debian's prometheus-blackbox-exporter (the anchor).

Both probe the same local targets (an HTTP server and a TCP echo server, the mon_targets process)
in the same run, alternating rounds. mon runs its own schedules (N probes on short intervals, so
it is saturated); blackbox_exporter is driven by a closed-loop client with C requests in flight on
``/probe`` (the way Prometheus drives it), whose own CPU is not counted. Reported per side:
probes/s, CPU seconds per 1000 probes, peak RSS. Then mon's alert latency: from the target
failing to the webhook delivery, against ``interval x after``.

    .venv/bin/python bench/mon_bench.py [--seconds 8] [--rounds 2] [--probes 400] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time
from typing import Any

import aiohttp

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from harness.mon_env import MonProcess, Targets, free_port, make_certs, need, wait_for  # noqa: E402
from harness.procs import Child, Supervisor  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK  # utime + stime


def rss_mib(pid: int, key: str = "VmHWM") -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def probes_done(mon: MonProcess) -> float:
    total = 0.0
    for line in mon.metrics().splitlines():
        if line.startswith("hastack_probe_duration_seconds_count{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def mon_config(t: Targets, n: int, interval: str) -> dict[str, Any]:
    probes: list[dict[str, Any]] = []
    for i in range(n):
        if i % 2:
            probes.append({"name": f"tcp-{i}", "type": "tcp", "interval": interval, "timeout": "2s"})
        else:
            probes.append(
                {
                    "name": f"http-{i}",
                    "type": "http",
                    "interval": interval,
                    "timeout": "2s",
                    "http": {"port": t.ports["http"], "path": "/health"},
                }
            )
    target = {"host": "127.0.0.1", "port": t.ports["tcp"]}
    return {
        "maxConcurrency": 256,
        "monitors": [{"name": "bench", "spec": {"target": target, "probes": probes}}],
    }


def run_mon(mon: MonProcess, seconds: float) -> dict[str, float]:
    wait_for(lambda: probes_done(mon) > 0, 20, "mon probing")
    time.sleep(1.0)  # warm-up: schedules spread over their jitter
    c0, p0, t0 = cpu_seconds(mon.proc.pid), probes_done(mon), time.monotonic()
    time.sleep(seconds)
    c1, p1, t1 = cpu_seconds(mon.proc.pid), probes_done(mon), time.monotonic()
    n = p1 - p0
    return {"probes_s": n / (t1 - t0), "cpu_per_1k": (c1 - c0) / n * 1000, "rss": rss_mib(mon.proc.pid)}


async def drive_blackbox(base: str, t: Targets, seconds: float, concurrency: int) -> tuple[int, int]:
    urls = [
        f"{base}/probe?module=http_2xx&target=http://127.0.0.1:{t.ports['http']}/health",
        f"{base}/probe?module=tcp_connect&target=127.0.0.1:{t.ports['tcp']}",
    ]
    ok = fail = 0
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:

        async def worker(i: int) -> None:
            nonlocal ok, fail
            while time.monotonic() < deadline:
                async with s.get(urls[i % 2]) as r:
                    body = await r.text()
                if "probe_success 1" in body:
                    ok += 1
                else:
                    fail += 1
                i += 1

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return ok, fail


def run_blackbox(bb: Child, base: str, t: Targets, seconds: float, concurrency: int) -> dict[str, float]:
    asyncio.run(drive_blackbox(base, t, 1.0, concurrency))  # warm-up
    c0, t0 = cpu_seconds(bb.pid), time.monotonic()
    ok, fail = asyncio.run(drive_blackbox(base, t, seconds, concurrency))
    c1, t1 = cpu_seconds(bb.pid), time.monotonic()
    n = ok + fail
    if fail:
        print(f"  blackbox: {fail} of {n} probes failed", file=sys.stderr)
    return {"probes_s": n / (t1 - t0), "cpu_per_1k": (c1 - c0) / n * 1000, "rss": rss_mib(bb.pid)}


def alert_latency(sup: Supervisor, tmp: pathlib.Path, t: Targets, runs: int) -> list[float]:
    hook = t.url("/hook")
    spec = {
        "target": {"host": "127.0.0.1", "port": t.ports["http"]},
        "probes": [
            {
                "name": "health",
                "type": "http",
                "interval": "500ms",
                "timeout": "1s",
                "http": {"path": "/health"},
            }
        ],
        "alert": {"after": 3, "every": "0s", "upAlert": False},
        "receivers": [{"name": "hook", "type": "webhook", "url": hook}],
    }
    (tmp / "lat").mkdir()
    mon = MonProcess(sup, tmp / "lat", {"monitors": [{"name": "lat", "spec": spec}]})
    out = []
    try:
        for _ in range(runs):
            wait_for(
                lambda: mon.probe("lat", "health")["alert"] == "ok" and mon.probe("lat", "health")["ok"],
                20,
                "target up",
            )
            before = len(t.admin("/admin/hooks")["hooks"])
            t.set_health(503)
            start = time.monotonic()
            wait_for(
                lambda b=before: len(t.admin("/admin/hooks")["hooks"]) > b,
                20,
                "alert delivered",
                interval=0.01,
            )
            out.append(time.monotonic() - start)
            t.set_health(200)
    finally:
        mon.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--probes", type=int, default=400)
    p.add_argument("--interval", default="200ms")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--latency-runs", type=int, default=5)
    ns = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mon-bench-") as d:
        tmp = pathlib.Path(d)
        sup = Supervisor(tmp / "logs")
        try:
            t = Targets(sup, tmp, make_certs(tmp)).start()
            port = free_port()
            cfg = tmp / "blackbox.yml"
            cfg.write_text(
                json.dumps(
                    {
                        "modules": {
                            "http_2xx": {"prober": "http", "timeout": "2s"},
                            "tcp_connect": {"prober": "tcp", "timeout": "2s"},
                        }
                    }
                )
            )
            results: dict[str, list[dict[str, float]]] = {"mon": [], "blackbox": []}
            for r in range(ns.rounds):
                (tmp / f"mon{r}").mkdir()
                mon = MonProcess(sup, tmp / f"mon{r}", mon_config(t, ns.probes, ns.interval))
                results["mon"].append(run_mon(mon, ns.seconds))
                mon.stop()
                bb = sup.start(
                    f"blackbox{r}",
                    [
                        need("prometheus-blackbox-exporter"),
                        f"--config.file={cfg}",
                        f"--web.listen-address=127.0.0.1:{port}",
                    ],
                )
                base = f"http://127.0.0.1:{port}"
                wait_for(lambda u=f"{base}/metrics": url_ok(u), 20, "blackbox_exporter up")
                results["blackbox"].append(run_blackbox(bb, base, t, ns.seconds, ns.concurrency))
                bb.stop()
            lat = alert_latency(sup, tmp, t, ns.latency_runs)
        finally:
            sup.stop_all()
    report(results, lat, ns)
    return 0


def url_ok(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=2) as r:
        return bool(r.status == 200)


def report(results: dict[str, list[dict[str, float]]], lat: list[float], ns: argparse.Namespace) -> None:
    med = {side: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for side, rs in results.items()}
    print(
        f"mon benchmark ({ns.rounds} rounds x {ns.seconds:g}s, median; mon: {ns.probes} probes every "
        f"{ns.interval}; blackbox_exporter: {ns.concurrency} requests in flight)"
    )
    print(f"{'':<22}{'probes/s':>10}{'CPU s/1000':>12}{'peak RSS MiB':>14}")
    for side in ("mon", "blackbox"):
        m = med[side]
        print(f"{side:<22}{m['probes_s']:>10.0f}{m['cpu_per_1k']:>12.3f}{m['rss']:>14.1f}")
    mo, bb = med["mon"], med["blackbox"]
    print(
        f"ratio mon/blackbox: probes/s {mo['probes_s'] / bb['probes_s']:.2f}, "
        f"CPU per probe {mo['cpu_per_1k'] / bb['cpu_per_1k']:.2f}, RSS {mo['rss'] / bb['rss']:.2f}"
    )
    print(
        f"target >= 500 probes/s: {'met' if mo['probes_s'] >= 500 else 'NOT met'}; "
        f"<= 100 MiB RSS: {'met' if mo['rss'] <= 100 else 'NOT met'}"
    )
    if lat:
        print(
            f"alert latency (interval 500ms x after 3 = 1.5s): median {statistics.median(lat):.2f}s, "
            f"min {min(lat):.2f}s, max {max(lat):.2f}s over {len(lat)} runs"
        )


if __name__ == "__main__":
    raise SystemExit(main())
