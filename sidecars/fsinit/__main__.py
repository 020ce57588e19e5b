"""`hastack fsinit`: the init container that lays down the filesystem, once, safely.

It asks heartbeat whether this member holds the Lease and which device it exposed, asks
blockrepl whether the volume was never written, probes the device for any signature,
and formats only when all three say so (see decide.py). Otherwise it checks the
prerequisites and exits 0. fsck, mount and growth belong to heartbeat's promotion chain.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import time
from typing import Any

from hastack_common import consts, logs
from hastack_common.ctlsock import ControlError, call_sync
from hastack_common.logs import kv
from hastack_fsinit import device
from hastack_fsinit.decide import Action, Facts, decide, exposed_device, holds_lease, mkfs_argv, never_written

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


def gather(ns: argparse.Namespace) -> Facts:
    kernel = device.kernel_filesystems()
    missing = device.missing_tools(ns.fs_type)
    if ns.standalone:
        dev = ns.device
        return Facts(ns.fs_type, kernel, missing, True, True,
                     device.signatures(dev) if dev else None, dev or "")
    deadline = time.monotonic() + ns.wait
    hb = ask(ns.heartbeat_socket, "status", deadline)
    if not holds_lease(hb):
        return Facts(ns.fs_type, kernel, missing, holds_lease=False)
    blank = never_written(ask(ns.blockrepl_socket, "status", deadline))
    dev = ns.device or exposed_device(hb)
    while not dev and time.monotonic() < deadline:  # heartbeat exposes the device on promotion
        time.sleep(0.5)
        dev = exposed_device(ask(ns.heartbeat_socket, "status", deadline))
    return Facts(ns.fs_type, kernel, missing, True, blank, device.signatures(dev) if dev else None, dev)


def main(argv: list[str]) -> int:
    ns = parse_args(argv)
    logs.setup()
    facts = gather(ns)
    decision = decide(facts)
    log.info("decision", extra=kv(action=decision.action.value, reason=decision.reason))
    if decision.action is Action.REFUSE:
        return 1
    if decision.action is Action.SKIP:
        return 0
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
