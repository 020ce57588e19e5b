"""What flows in and out of the membership core: events in, actions out (plain values)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from hastack_heartbeat.arbitration import LeaseRecord


@dataclass(frozen=True)
class Packet:
    """A heartbeat or an acknowledgement, as the wire codec decodes it (MAC already checked)."""

    kind: str  # "hb" | "ack"
    src: str
    dst: str
    epoch: int
    seq: int
    active: bool = False
    eligible: bool = True
    ack_epoch: int = 0
    ack_seq: int = 0
    dead: int = 0  # ack: the deadTime promised for the sender (wire.dead_code units); 0 not given


# ---- events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tick:
    pass


@dataclass(frozen=True)
class Received:
    packet: Packet


@dataclass(frozen=True)
class LeaseReply:
    kind: str  # "get" | "update"
    outcome: Literal["ok", "conflict", "unreachable", "notfound"]
    record: LeaseRecord | None
    sent_at: float  # when the request was sent (own monotonic clock)


@dataclass(frozen=True)
class Reconfigure:
    """New parameters from a changed heartbeat.yaml (same members; validated by the shell)."""

    params: Any


@dataclass(frozen=True)
class LeaseObserved:
    """The Lease as this member's own annotation write left it (an Outdated record)."""

    record: LeaseRecord


@dataclass(frozen=True)
class PromoteDone:
    ok: bool
    error: str = ""


@dataclass(frozen=True)
class DemoteDone:
    pass


@dataclass(frozen=True)
class Switchover:
    target: str | None  # None: graceful termination, any alive eligible peer
    reason: str = ""


@dataclass(frozen=True)
class FailoverRequest:
    reason: str


@dataclass(frozen=True)
class ResourceFailed:
    reason: str


@dataclass(frozen=True)
class SetBlocked:
    reason: str  # "" unblocks


Event = (Tick | Received | LeaseReply | PromoteDone | DemoteDone | Switchover | FailoverRequest
         | ResourceFailed | SetBlocked | LeaseObserved | Reconfigure)


# ---- actions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    packet: Packet


@dataclass(frozen=True)
class LeaseOp:
    kind: str  # "get" | "update"
    record: LeaseRecord | None  # desired record for "update"
    expected_version: str
    sent_at: float


@dataclass(frozen=True)
class Fence:
    until: float | None  # own monotonic clock; None: stop now


@dataclass(frozen=True)
class Promote:
    reason: str


@dataclass(frozen=True)
class Demote:
    reason: str


@dataclass(frozen=True)
class PeerChanged:
    peer: str
    old: str
    new: str


@dataclass(frozen=True)
class Dropped:
    reason: str
    src: str


@dataclass(frozen=True)
class RoleChanged:
    old: str
    new: str
    reason: str


Action = Send | LeaseOp | Fence | Promote | Demote | PeerChanged | Dropped | RoleChanged
