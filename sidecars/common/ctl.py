"""`hastack ctl SOCKET CMD [key=value ...]`: print a sidecar's reply, or stream its events."""

from __future__ import annotations

import argparse
import json
import socket
import sys
from typing import Any

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
            return 0
        try:
            for line in f:
                sys.stdout.write(line)
                sys.stdout.flush()
        except KeyboardInterrupt:
            pass
    return 0
