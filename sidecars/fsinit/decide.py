"""When fsinit formats (pure): DESIGN's "Who formats", as one decision table.

mkfs runs only when **all** hold: this member holds the Lease, blockrepl reports a
never-written volume (day-0 generation identifiers on every replica), and no signature of
any kind is found on the exposed device. Anything else is a reason not to format, and
fsinit exits 0 after saying which one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


class Action(Enum):
    FORMAT = "format"
    SKIP = "skip"
    REFUSE = "refuse"  # a configuration that can never work: exit non-zero with the reason


@dataclass(frozen=True)
class Facts:
    fs_type: str
    kernel_filesystems: frozenset[str]
    missing_tools: tuple[str, ...] = ()
    holds_lease: bool | None = None  # None: not asked (standalone use without heartbeat)
    never_written: bool | None = None  # None: not asked (no blockrepl)
    signatures: tuple[str, ...] | None = None  # None: device not exposed here
    device: str = ""


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


def decide(f: Facts) -> Decision:
    if f.fs_type not in f.kernel_filesystems:
        return Decision(Action.REFUSE, f"filesystem {f.fs_type!r} is not supported by this node's kernel "
                                       f"(not in /proc/filesystems); choose ext4, xfs or btrfs")
    if f.missing_tools:
        return Decision(Action.REFUSE, f"missing tools in the image: {', '.join(f.missing_tools)}")
    if f.holds_lease is False:
        return Decision(Action.SKIP, "standby: this member does not hold the Lease, the active formats")
    if f.never_written is False:
        return Decision(Action.SKIP, "the volume has been written before: never formatting it")
    if f.signatures is None:
        return Decision(Action.SKIP, "no exposed device to check on this member")
    if f.signatures:
        return Decision(Action.SKIP, f"{f.device} carries a signature ({', '.join(f.signatures)}): "
                                     "never formatting over it")
    if f.holds_lease is None or f.never_written is None:
        return Decision(Action.SKIP, "cannot prove this member holds the Lease on a never-written volume")
    return Decision(Action.FORMAT, f"{f.device} is blank, never written, and this member holds the Lease")


def lease_holder(heartbeat_status: dict[str, Any]) -> str:
    """The Lease holder heartbeat last observed ("" while nobody has taken it: day 0)."""
    return str((heartbeat_status.get("lease") or {}).get("holder") or "")


def holds_lease(heartbeat_status: dict[str, Any]) -> bool:
    """From heartbeat's ``status`` reply: this member is the Lease holder."""
    lease = heartbeat_status.get("lease") or {}
    me = heartbeat_status.get("member")
    return bool(me) and lease.get("holder") == me


def exposed_device(heartbeat_status: dict[str, Any]) -> str:
    """The block device heartbeat exposed for the volume (empty until it has)."""
    volume = heartbeat_status.get("volume") or {}
    return str(heartbeat_status.get("device") or volume.get("device") or "")


def day0_known(blockrepl_status: dict[str, Any]) -> bool:
    """blockrepl can answer "never written anywhere" (it has heard every peer's identifiers)."""
    return blockrepl_status.get("day0_everywhere", False) is not None


def never_written(blockrepl_status: dict[str, Any]) -> bool:
    """Day-0 generation identifiers on every replica, as blockrepl's ``status`` proves it: the local
    replica is day-0 and connected, in sync, to every peer. (A peer that had data would have made
    this replica a SyncTarget on connect and replaced its day-0 identifier.)"""
    if "day0_everywhere" in blockrepl_status:  # blockrepl compares every peer's identifiers itself
        return blockrepl_status["day0_everywhere"] is True
    if not blockrepl_status.get("day0"):
        return False
    peers = blockrepl_status.get("peers") or []
    return all(p.get("connection") == "Connected" and p.get("replication") == "Established" for p in peers)


def mkfs_argv(fs_type: str, device: str, options: tuple[str, ...] = (), label: str = "") -> list[str]:
    """The mkfs command: never a force flag, so mkfs itself refuses a device that has data."""
    forbidden = {"-F", "-f", "--force"}
    bad = forbidden.intersection(options)
    if bad:
        raise ValueError(f"mkfsOptions may not contain {', '.join(sorted(bad))}: hastack never forces mkfs")
    argv = [f"mkfs.{fs_type}"]
    if label:
        argv += ["-L", label[:12] if fs_type == "xfs" else label[:16]]
    if fs_type in {"ext4", "xfs", "btrfs"}:
        argv += ["-q"]
    return [*argv, *options, device]
