"""Arbitration: the right to stay active and the right to take over (pure, clock injected).

DESIGN "The right to stay active": the Lease renewed within its renew deadline, **or** -- while
the API server is unreachable -- heartbeats acknowledged by the peers within deadTime minus a
safety margin. With neither, the active demotes itself. A standby takes over only by acquiring
the Lease, and only when the Lease was released, or has expired in its own observation while the
holder is dead by heartbeat (or says it is no longer active).

Every time here is the member's own monotonic clock; no clock is compared across machines:

* A renew *sent* at ``t_r`` that succeeds was written at ``W >= t_r``; a standby first sees that
  record at ``>= W`` and calls it expired ``leaseDuration`` later. The holder's lease right ends
  at ``t_r + renewDeadline``; ``renewDeadline + safetyMargin <= leaseDuration`` leaves the margin.
* A heartbeat *sent* at ``t_s`` and acknowledged by peer P reached P at ``>= t_s``; P's ack
  promises a deadTime ``d`` (wire.py) and P never calls the sender dead before ``receive time +
  d`` for any ack it sent, so the ack right ends at ``t_s + d - margin`` -- whatever either
  member's configured deadTime becomes later (timings reload online).
  A restarted P has forgotten it: it waits ``initDead >= deadTime`` from its own start, which
  came after its last ack.

Because a standby decides "dead" from its own observation only, every peer that could take over
must have acknowledged: with two or three members that is exactly "a majority of the peers"
(1 of 1, 2 of 2). With four or five members hastack asks for every peer (docs/decisions.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

NEVER = -math.inf


@dataclass(frozen=True)
class Timings:
    """Seconds; built from ``hastack_common.config_heartbeat.Timing``."""

    keepalive: float = 0.5
    warn: float = 1.5
    dead: float = 3.0
    init_dead: float = 10.0
    lease_duration: float = 4.0
    renew_period: float = 1.0
    renew_deadline: float = 3.0
    margin: float = 0.5
    # Test-only switch: with fencing off the active ignores its deadlines and stays active until
    # the API server tells it otherwise. It exists so tests can prove they catch two actives.
    fencing: bool = True

    @classmethod
    def from_config(cls, timing: object) -> Timings:
        s = timing.seconds  # type: ignore[attr-defined]
        return cls(
            keepalive=s("keepalive"), warn=s("warn_time"), dead=s("dead_time"), init_dead=s("init_dead"),
            lease_duration=s("lease_duration"), renew_period=s("renew_period"),
            renew_deadline=s("renew_deadline"), margin=s("safety_margin"),
        )


@dataclass(frozen=True)
class LeaseRecord:
    """What this member last read or wrote of the Lease (``coordination.k8s.io/v1``)."""

    holder: str  # "" when released
    resource_version: str
    duration: float
    transitions: int = 0
    handover: str = ""  # switchover target named by a releasing holder
    # members recorded Outdated on the Lease (``hastack_common.outdate_peer``) -> who recorded them
    outdated: Mapping[str, str] = field(default_factory=dict)


def required_acks(n_peers: int) -> int:
    """How many peers must have acknowledged for the ack right (0 peers: no ack right at all)."""
    return n_peers


def lease_until(renewed_at: float | None, t: Timings, written_duration: float | None = None) -> float:
    """``written_duration``: the leaseDuration that renewal wrote (what the standbys wait); after an
    online change the right never outlasts it, whatever this member's renewDeadline says now."""
    if renewed_at is None:
        return NEVER
    deadline = t.renew_deadline if written_duration is None else min(t.renew_deadline, written_duration - t.margin)
    return renewed_at + deadline


def ack_until(acked_sends: Mapping[str, float | None], t: Timings,
              promised: Mapping[str, float] | None = None) -> float:
    """End of the ack right: the ``required``-th latest of (acknowledged send time + the deadTime
    that peer promised in that ack, else this member's own) - margin."""
    need = required_acks(len(acked_sends))
    if need == 0:
        return NEVER
    ends = sorted((v + ((promised or {}).get(k) or t.dead) - t.margin
                   for k, v in acked_sends.items() if v is not None), reverse=True)
    if len(ends) < need:
        return NEVER
    return ends[need - 1]


def right_until(
    renewed_at: float | None, lease_lost: bool, acked_sends: Mapping[str, float | None], t: Timings,
    promised: Mapping[str, float] | None = None, written_duration: float | None = None,
) -> float:
    """Until when (own monotonic clock) this holder may stay active; ``NEVER`` if it may not."""
    if lease_lost:  # the API server says another member holds the Lease
        return NEVER
    if not t.fencing:
        return math.inf
    return max(lease_until(renewed_at, t, written_duration), ack_until(acked_sends, t, promised))


def lease_expired(lease: LeaseRecord, observed_at: float, now: float) -> bool:
    """Expired in this member's own observation: unchanged for a whole leaseDuration."""
    return now >= observed_at + lease.duration


def may_acquire(
    me: str,
    lease: LeaseRecord | None,
    observed_at: float,
    holder_gone: bool,
    now: float,
) -> tuple[bool, str]:
    """Whether a standby may try to acquire the Lease now, and why (or why not).

    ``holder_gone``: the holder is dead by heartbeat, or its latest heartbeat says it is not
    active, or it is not a member at all. A released Lease naming a handover target is for that
    target only, until it has been released for a whole leaseDuration. A member recorded
    Outdated on the Lease never acquires it: its data may miss writes the holder acknowledged.
    """
    if lease is None:
        return False, "no Lease read yet"
    if me in lease.outdated:
        return False, outdated_reason(lease, me)
    if lease.holder == "":
        if lease.handover and lease.handover != me and not lease_expired(lease, observed_at, now):
            return False, f"released for switchover to {lease.handover}"
        return True, "Lease released"
    if lease.holder == me:
        return True, "Lease names this member"
    if not lease_expired(lease, observed_at, now):
        return False, f"Lease held by {lease.holder}"
    if not holder_gone:
        return False, f"Lease expired but {lease.holder} is alive and active by heartbeat"
    return True, f"Lease of {lease.holder} expired and {lease.holder} is dead by heartbeat"


def outdated_reason(lease: LeaseRecord, me: str) -> str:
    return (f"recorded Outdated on the Lease by {lease.outdated.get(me) or 'unknown'}: "
            "it may be promoted only after a resync")
