"""`hastack fsinit`: the init container that lays down the filesystem, once, safely.

It asks heartbeat whether this member holds the Lease and which device it exposed, asks
blockrepl whether the volume was never written, probes the device for any signature,
and formats only when all three say so (see decide.py). Otherwise it checks the
prerequisites and exits 0. fsck, mount and growth belong to heartbeat's promotion chain.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import time
from collections.abc import Callable
from typing import Any

from hastack_common import consts, logs, state_file
from hastack_common.ctlsock import ControlError, call_sync
from hastack_common.logs import kv
from hastack_fsinit import device
from hastack_fsinit.decide import (
    Action,
    Decision,
    Facts,
    day0_known,
    decide,
    exposed_device,
    holds_lease,
    lease_holder,
    mkfs_argv,
    never_written,
)

log = logging.getLogger("hastack_fsinit")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hastack fsinit", description=__doc__)
    p.add_argument("--fs-type", required=True, choices=["ext4", "xfs", "btrfs", "reiserfs"])
    p.add_argument("--mkfs-option", action="append", default=[], dest="mkfs_options")
    p.add_argument("--label", default="")
    p.add_argument("--device", help="the exposed device (default: as reported by heartbeat)")
    p.add_argument("--heartbeat-socket", default=consts.HEARTBEAT_SOCKET)
    p.add_argument("--blockrepl-socket", default=consts.BLOCKREPL_SOCKET)
    p.add_argument("--standalone", action="store_true",
                   help="no heartbeat/blockrepl: the caller vouches for the Lease and a never-written "
                        "volume (a host without hastack's sidecars); signatures are still checked")
    p.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the sidecars")
    p.add_argument("--result-file", default=None,
                   help="where the outcome is written on exit; heartbeat waits for it before mounting a "
                        f"blank device (default: {consts.FSINIT_RESULT}, none with --standalone)")
    return p.parse_args(argv)


def ask(path: str, cmd: str, deadline: float) -> dict[str, Any]:
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = call_sync(path, cmd, timeout=5)
            return dict(result or {})
        except ControlError as exc:
            last = exc
            time.sleep(0.5)
    raise SystemExit(f"hastack fsinit: {path} did not answer {cmd!r}: {last}")


def ask_until(path: str, cmd: str, settled: Callable[[dict[str, Any]], bool], deadline: float) -> dict[str, Any]:
    """Ask until ``settled(reply)`` or the deadline; returns the last reply either way."""
    reply = ask(path, cmd, deadline)
    while not settled(reply) and time.monotonic() < deadline:
        time.sleep(0.5)
        reply = ask(path, cmd, deadline)
    return reply


def gather(ns: argparse.Namespace) -> Facts:
    kernel = device.kernel_filesystems()
    missing = device.missing_tools(ns.fs_type)
    if ns.standalone:
        dev = ns.device
        return Facts(ns.fs_type, kernel, missing, True, True,
                     device.signatures(dev) if dev else None, dev or "")
    deadline = time.monotonic() + ns.wait
    # Members start side by side: until one of them has taken the Lease (day 0), "not the holder"
    # says nothing, and the member that takes it may be this one.
    hb = ask_until(ns.heartbeat_socket, "status", lambda r: bool(lease_holder(r)), deadline)
    if not holds_lease(hb):
        return Facts(ns.fs_type, kernel, missing, holds_lease=False)
    blank = never_written(ask_until(ns.blockrepl_socket, "status", day0_known, deadline))
    dev = ns.device or exposed_device(hb)
    while not dev and time.monotonic() < deadline:  # heartbeat exposes the device on promotion
        time.sleep(0.5)
        dev = exposed_device(ask(ns.heartbeat_socket, "status", deadline))
    return Facts(ns.fs_type, kernel, missing, True, blank, device.signatures(dev) if dev else None, dev)


def write_result(ns: argparse.Namespace, decision: Decision, device: str, formatted: bool) -> None:
    path = ns.result_file or ("" if ns.standalone else consts.FSINIT_RESULT)
    if not path or not os.path.isdir(os.path.dirname(path) or "."):
        return
    doc = {"action": decision.action.value, "reason": decision.reason, "device": device, "formatted": formatted}
    state_file.write_atomic(path, json.dumps(doc).encode())


def main(argv: list[str]) -> int:
    ns = parse_args(argv)
    logs.setup()
    facts = gather(ns)
    decision = decide(facts)
    log.info("decision", extra=kv(action=decision.action.value, reason=decision.reason))
    if decision.action is not Action.FORMAT:
        write_result(ns, decision, facts.device, False)
        return 1 if decision.action is Action.REFUSE else 0
    code = format_device(ns, facts)
    write_result(ns, decision if code == 0 else Decision(Action.REFUSE, "mkfs failed"),
                 facts.device, code == 0)
    return code


def format_device(ns: argparse.Namespace, facts: Facts) -> int:
    argv_mkfs = mkfs_argv(ns.fs_type, facts.device, tuple(ns.mkfs_options), ns.label)
    res = subprocess.run(argv_mkfs, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600,
                         check=False)
    if res.returncode != 0:
        log.error("mkfs failed", extra=kv(argv=" ".join(argv_mkfs), stderr=res.stderr.strip()))
        return 1
    device.flush(facts.device)
    after = device.signatures(facts.device)
    log.info("formatted", extra=kv(device=facts.device, fs=ns.fs_type, signatures=",".join(after)))
    return 0
