"""lab benchmark: `up` from caches to two Ready nodes and to DNS ready, and the hastack image
rebuilt after a Python-only change, beside the integration control plane's start-up (anchor).

Each round: the anchor (etcd + apiserver + controllers + 2 kwok nodes), then `lab up` from a
clean machine (binaries and images cached), an image rebuild with a fresh project layer (what
a code change costs) and its import into both nodes, then `lab down`. Medians over the rounds.
Targets (docs/performance.md): 2 nodes Ready ≤ 10 s, image rebuild ≤ 30 s.

    .venv/bin/python bench/lab_bench.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time
import uuid

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from harness import image  # noqa: E402
from harness.controlplane import ControlPlane  # noqa: E402
from harness.lab import Lab, LabConfig  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    lab = Lab(LabConfig(nodes=2))
    if lab.api_healthy():
        print("a lab is up: take it down first (hastack lab down)", file=sys.stderr)
        return 2
    lab.down()
    image.build()  # warm every layer cache once
    rows: dict[str, list[float]] = {k: [] for k in ("anchor_cp", "cp", "nodes", "dns", "rebuild", "import", "down")}
    for _ in range(args.rounds):
        with ControlPlane(nodes=2) as cp:
            rows["anchor_cp"].append(cp.timings["total"])
        t = Lab(LabConfig(nodes=2)).up()
        rows["cp"].append(t["control_plane"])
        rows["nodes"].append(t["nodes_ready"])
        rows["dns"].append(t["dns_ready"])
        img = image.build(salt=uuid.uuid4().hex)
        rows["rebuild"].append(img.seconds)
        t0 = time.monotonic()
        lab.import_image(img.archive)
        rows["import"].append(time.monotonic() - t0)
        t0 = time.monotonic()
        lab.down()
        rows["down"].append(time.monotonic() - t0)
        assert lab.leftovers() == [], lab.leftovers()
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"rounds={args.rounds} (medians, seconds; min..max)")
    for key, label in (
        ("anchor_cp", "anchor: kwok control plane ready"),
        ("cp", "lab: control plane ready"),
        ("nodes", "lab: 2 nodes Ready (from start)"),
        ("dns", "lab: CoreDNS ready (from start)"),
        ("rebuild", "image rebuild, Python-only change"),
        ("import", "image import, 2 nodes"),
        ("down", "lab down"),
    ):
        print(f"  {label:<36} {med[key]:6.1f}  ({min(rows[key]):.1f}..{max(rows[key]):.1f})")
    print(f"  ratio nodes Ready / anchor            {med['nodes'] / med['anchor_cp']:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
