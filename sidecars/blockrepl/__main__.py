"""`hastack blockrepl --config FILE` runs a replica; `hastack blockrepl status|primary|...` talks to one.

Admin commands (all take ``--socket``, default /run/hastack/blockrepl.sock)::

    status [--json]          DRBD-like status, readable at 3 a.m.
    primary [--force]        promote (refused with a reason when unsafe)
    secondary [--force]      demote (refused while NBD clients are connected, unless --force)
    connect [--peer N] [--discard-my-data]
    disconnect [--peer N]
    outdate | invalidate | verify [--peer N] | attach | detach
    resize [--size BYTES]    grow the volume (on the Primary: every connected replica grows)
    deadline SECONDS         heartbeat's self-fencing deadline (0 disarms)
    events                   stream events as JSON lines
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from hastack_common import logs
from hastack_common.config_blockrepl import ConfigError, load
from hastack_common.ctlsock import ControlError, call_sync

BLOCKREPL_SOCKET = "/run/hastack/blockrepl.sock"
COMMANDS = (
    "status",
    "primary",
    "secondary",
    "connect",
    "disconnect",
    "outdate",
    "invalidate",
    "verify",
    "deadline",
    "events",
    "metrics",
    "resize",
    "attach",
    "detach",
)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n}"


def format_status(st: dict[str, Any]) -> str:
    lines = [
        f"{st['resource']} node-id:{st['node_id']} role:{st['role']} disk:{st['disk']} "
        f"size:{human_bytes(st['size'])} protocol:{st['protocol']}" + (" day0" if st.get("day0") else "")
    ]
    if st.get("suspended"):
        lines.append(f"  SUSPENDED (writes held): {'; '.join(st['suspended'])}")
    dl = st.get("deadline", {})
    if dl.get("armed"):
        state = "LAPSED" if dl.get("lapsed") else f"{dl.get('remaining')}s left"
        lines.append(f"  deadline: {state} (lapses: {dl.get('lapses')})")
    for p in st.get("peers", []):
        lines.append(f"  {p['name']} node-id:{p['node_id']} connection:{p['connection']} role:{p['peer_role']}")
        extra = f" out-of-sync:{human_bytes(p['out_of_sync_bytes'])}"
        sync = p.get("sync")
        if sync and p["replication"] in ("SyncSource", "SyncTarget"):
            eta = sync.get("eta_seconds")
            extra += f" done:{sync['percent']}%" + (f" eta:{eta}s" if eta is not None else "")
            extra += f" rate:{human_bytes(sync['rate_bytes_per_second'])}/s"
        lines.append(f"    replication:{p['replication']} peer-disk:{p['peer_disk']}{extra}")
        if p.get("split_brain"):
            lines.append("    SPLIT BRAIN: " + p.get("reason", ""))
        elif p.get("reason") and p["connection"] == "StandAlone":
            lines.append("    reason: " + p["reason"])
        if p.get("verify"):
            v = p["verify"]
            lines.append(
                f"    verify: {'running' if v.get('running') else v.get('result', '')} "
                f"checked:{human_bytes(v.get('done_bytes', 0))} "
                f"out-of-sync:{human_bytes(v.get('out_of_sync_bytes', 0))}"
            )
    return "\n".join(lines)


def run(config: str) -> int:
    logs.setup()
    try:
        cfg = load(config)
    except ConfigError as exc:
        print(f"blockrepl: {exc}", file=sys.stderr)
        return 2
    from hastack_blockrepl.daemon import Daemon
    from hastack_blockrepl.disk import AttachError

    try:
        return asyncio.run(Daemon(cfg, path=config).run())
    except (AttachError, ValueError, OSError) as exc:
        print(f"blockrepl: {exc}", file=sys.stderr)
        return 1


def admin(ns: argparse.Namespace) -> int:
    args: dict[str, Any] = {}
    if getattr(ns, "force", False):
        args["force"] = True
    if getattr(ns, "peer", None) is not None:
        args["peer"] = ns.peer
    if getattr(ns, "discard_my_data", False):
        args["discard_my_data"] = True
    if ns.cmd == "deadline":
        args["seconds"] = ns.seconds
    if ns.cmd == "resize" and ns.size is not None:
        args["size"] = ns.size
    if ns.cmd == "events":
        from hastack_common.ctl import main as ctl_main

        return ctl_main([ns.socket, "events"])
    try:
        result = call_sync(ns.socket, ns.cmd, args, timeout=30.0)
    except ControlError as exc:
        print(f"blockrepl {ns.cmd}: {exc}", file=sys.stderr)
        return 1
    if ns.cmd == "metrics":
        print(result, end="")
    elif ns.cmd in ("status", "primary", "secondary", "connect", "disconnect", "invalidate", "attach",
                    "detach") and not ns.json:  # fmt: skip
        print(format_status(result))
    else:
        print(json.dumps(result, indent=2))
    return 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="hastack blockrepl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", help="run a replica from this YAML file")
    p.add_argument("cmd", nargs="?", choices=COMMANDS)
    p.add_argument("seconds", nargs="?", type=float, help="for deadline")
    p.add_argument("--socket", default=BLOCKREPL_SOCKET)
    p.add_argument("--force", action="store_true")
    p.add_argument("--peer", type=int)
    p.add_argument("--discard-my-data", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--size", type=int, help="for resize: bytes (default: what every disk can hold)")
    ns = p.parse_args(argv)
    if ns.cmd is None:
        if not ns.config:
            p.error("give --config FILE to run a replica, or an admin command")
        return run(ns.config)
    if ns.cmd == "deadline" and ns.seconds is None:
        p.error("deadline needs SECONDS (0 disarms)")
    return admin(ns)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
