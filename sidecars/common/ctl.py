"""`hastack ctl SOCKET CMD [key=value ...]`: print a sidecar's reply, or stream its events.

``hastack ctl heartbeat outdate-peer`` is blockrepl's fence-peer handler in a cluster
(``hastack_common.outdate_peer``): without arguments it takes the peer from the handler's
environment, and it exits 4 ("peer Outdated") once heartbeat has recorded it, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from typing import Any

from hastack_common import outdate_peer

DEFAULT_DIR = "/run/hastack"


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="hastack ctl", description=__doc__)
    p.add_argument("socket", help="socket path, or a sidecar name (blockrepl, heartbeat, mon)")
    p.add_argument("cmd")
    p.add_argument("args", nargs="*", help="key=value (values parsed as JSON when they parse)")
    p.add_argument("--timeout", type=float, default=10.0)
    ns = p.parse_args(argv)
    path = ns.socket if "/" in ns.socket else f"{DEFAULT_DIR}/{ns.socket}.sock"
    args = {}
    for item in ns.args:
        key, sep, value = item.partition("=")
        if not sep:
            p.error(f"argument {item!r} is not key=value")
        args[key] = parse_value(value)
    if ns.cmd == outdate_peer.OUTDATE_PEER_CMD and not args:
        try:
            args = outdate_peer.request_from_env(os.environ).model_dump(by_alias=True)
        except ValueError as exc:
            print(f"hastack ctl: {exc}", file=sys.stderr)
            return outdate_peer.EXIT_REFUSED
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(None if ns.cmd == "events" else ns.timeout)
        try:
            s.connect(path)
        except OSError as exc:
            print(f"hastack ctl: cannot reach {path}: {exc}", file=sys.stderr)
            return 1
        s.sendall(json.dumps({"cmd": ns.cmd, "args": args}).encode() + b"\n")
        f = s.makefile("r")
        first = json.loads(f.readline() or "{}")
        if not first.get("ok"):
            print(f"error: {first.get('error')}", file=sys.stderr)
            return 1
        if ns.cmd != "events":
            print(json.dumps(first.get("result"), indent=2))
            return outdate_peer.EXIT_PEER_OUTDATED if ns.cmd == outdate_peer.OUTDATE_PEER_CMD else 0
        try:
            for line in f:
                sys.stdout.write(line)
                sys.stdout.flush()
        except KeyboardInterrupt:
            pass
    return 0
