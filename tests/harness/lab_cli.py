"""`hastack lab up|down|status|kill-node|restart-node|cut-link|heal-link` (docs/lab.md)."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from harness.lab import Lab, LabConfig


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hastack lab", description="a real multi-node Kubernetes on this machine"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log every step")
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="bring the lab up (idempotent)")
    up.add_argument("--nodes", type=int, default=2, help="number of nodes, 1 to 3 (default 2)")
    sub.add_parser("down", help="remove everything the lab made, even if half-built")
    sub.add_parser("status", help="what runs where")
    for name, helptext in (
        ("kill-node", "SIGKILL everything on a node (power loss)"),
        ("restart-node", "kill a node, then start it again"),
        ("cut-link", "take the node's network link down"),
        ("heal-link", "bring the node's network link back up"),
    ):
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("node", help="node index (0, 1, 2) or name (lab-node-0)")
    return p


def _node_arg(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s"
    )
    nodes = args.nodes if args.cmd == "up" else int(Lab().state().get("nodes", 3))
    lab = Lab(LabConfig(nodes=nodes))
    t0 = time.monotonic()
    try:
        if args.cmd == "up":
            print(
                f"bringing up a {nodes}-node lab in {lab.dir} (binaries and images come from the cache) ..."
            )
            timings = lab.up()
            for step, secs in timings.items():
                print(f"  {step:<16} {secs:6.1f} s")
            print(lab.status())
            print(f"\nexport KUBECONFIG={lab.kubeconfig}\nhastack lab down   # removes everything")
        elif args.cmd == "down":
            lab.down()
            left = lab.leftovers()
            print(f"lab down in {time.monotonic() - t0:.1f} s" + (f"; LEFT BEHIND: {left}" if left else ""))
            return 1 if left else 0
        elif args.cmd == "status":
            print(lab.status())
        elif args.cmd == "kill-node":
            lab.kill_node(_node_arg(args.node))
        elif args.cmd == "restart-node":
            lab.restart_node(_node_arg(args.node))
        elif args.cmd in ("cut-link", "heal-link"):
            lab.set_link(_node_arg(args.node), up=args.cmd == "heal-link")
    except (RuntimeError, OSError, AssertionError, KeyError, ValueError) as exc:
        print(f"hastack lab {args.cmd}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
