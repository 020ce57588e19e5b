"""Membership and role: ``step(state, event, now) -> (state, actions)``, pure and clock injected.

The core decides; the shell (``node.py``) does the I/O the returned actions ask for and feeds
back what happened as events. Nothing here reads a clock, a socket or a file, so every decision
can be replayed in tests with any sequence of events and times.

Peers are *init* (never heard, less than initDead since start), *alive*, *warn* (silent for
warnTime) or *dead* (silent for deadTime, or never heard for initDead). A packet is accepted only
when its boot epoch is not older than the last one seen from that peer and, within one epoch, its
sequence number is higher (replays and reordered old packets are dropped and counted).

Roles: standby -> acquiring (a Lease write in flight) -> promoting (Lease held, resource agents
running) -> active; demoting (agents stopping) -> standby. "Believes it is active" means
promoting or active: the fence deadline it hands to the gate and blockrepl is then in the future.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum

from hastack_heartbeat import arbitration as arb
from hastack_heartbeat import wire
from hastack_heartbeat.arbitration import LeaseRecord, Timings
from hastack_heartbeat.events import (
    Action,
    Demote,
    DemoteDone,
    Dropped,
    Event,
    FailoverRequest,
    Fence,
    LeaseObserved,
    LeaseOp,
    LeaseReply,
    Packet,
    PeerChanged,
    Promote,
    PromoteDone,
    Received,
    Reconfigure,
    ResourceFailed,
    RoleChanged,
    Send,
    SetBlocked,
    Switchover,
)


class PeerState(StrEnum):
    INIT = "init"
    ALIVE = "alive"
    WARN = "warn"
    DEAD = "dead"


class Role(StrEnum):
    STANDBY = "standby"
    ACQUIRING = "acquiring"
    PROMOTING = "promoting"
    ACTIVE = "active"
    DEMOTING = "demoting"


HOLDING = (Role.PROMOTING, Role.ACTIVE)
FLAG_ACTIVE = (Role.PROMOTING, Role.ACTIVE, Role.DEMOTING)


@dataclass(frozen=True)
class Params:
    me: str
    peers: tuple[str, ...]
    timings: Timings = field(default_factory=Timings)
    max_failures: int = 3
    failure_timeout: float = 600.0
    request_min_interval: float = 60.0
    auto_failback: bool = False
    preferred: str | None = None
    # Test-only switch: ignore the Lease's Outdated records, so tests can prove they catch a
    # stale replica promoted after "the primary writes alone, then dies".
    ignore_outdated: bool = False


@dataclass(frozen=True)
class Peer:
    name: str
    state: PeerState = PeerState.INIT
    epoch: int = 0
    seq: int = 0
    last_seen: float | None = None
    active: bool = False  # the peer's role flag in its latest packet
    eligible: bool = False  # the peer may become active (not held off by failures, not Outdated)
    acked_send: float | None = None  # send time of our newest heartbeat it acknowledged
    acked_dead: float = 0.0  # the deadTime it promised in that ack (0: not given: use our own)
    promised_until: float | None = None  # we promised (in our acks) not to call it dead before this


@dataclass
class State:
    params: Params
    epoch: int
    started: float
    role: Role = Role.STANDBY
    seq: int = 0
    next_hb: float = 0.0
    peers: dict[str, Peer] = field(default_factory=dict)
    sent: dict[str, dict[int, float]] = field(default_factory=dict)  # peer -> seq -> send time
    lease: LeaseRecord | None = None
    observed_at: float = 0.0  # when the current Lease record was first seen
    renewed_at: float | None = None  # send time of our newest successful Lease write as holder
    renewed_duration: float | None = None  # the leaseDuration that write recorded
    lease_lost: bool = False
    api_ok: bool = False
    lease_inflight: bool = False
    next_lease_op: float = 0.0
    fence_until: float | None = None
    pending_release: str | None = None  # handover target ("" = anyone) once demotion is done
    failures: tuple[float, ...] = ()
    acquire_not_before: float = 0.0
    last_request: float | None = None
    blocked: str = ""  # why this member may not become active (e.g. replica Outdated)
    reason: str = ""  # why the role last changed
    booted: bool = False
    demote_keeps_right: bool = False


def initial(params: Params, epoch: int, now: float) -> State:
    return State(
        params=params, epoch=epoch, started=now, next_hb=now, next_lease_op=now,
        peers={p: Peer(p) for p in params.peers}, sent={p: {} for p in params.peers},
    )


def peer_state(peer: Peer, started: float, now: float, t: Timings) -> PeerState:
    if peer.last_seen is None:
        return PeerState.DEAD if now - started >= t.init_dead else PeerState.INIT
    age = now - peer.last_seen
    if age >= t.dead and (peer.promised_until is None or now >= peer.promised_until):
        return PeerState.DEAD
    return PeerState.WARN if age >= t.warn else PeerState.ALIVE


def right_until(st: State) -> float:
    acked = {p.name: p.acked_send for p in st.peers.values()}
    promised = {p.name: p.acked_dead for p in st.peers.values()}
    return arb.right_until(st.renewed_at, st.lease_lost, acked, st.params.timings, promised, st.renewed_duration)


def eligible(st: State, now: float) -> bool:
    recent = [f for f in st.failures if now - f < st.params.failure_timeout]
    return (not block_reason(st) and len(recent) < st.params.max_failures
            and now >= st.acquire_not_before)


def block_reason(st: State) -> str:
    """Why this member may not become active: its replica (``blocked``), or the Lease's record."""
    if st.lease is not None and st.params.me in st.lease.outdated:
        return arb.outdated_reason(st.lease, st.params.me)
    return st.blocked


def holder_gone(st: State, holder: str) -> bool:
    peer = st.peers.get(holder)
    return peer is None or peer.state is PeerState.DEAD or (peer.last_seen is not None and not peer.active)


def step(state: State, event: Event, now: float) -> tuple[State, list[Action]]:
    st = dataclasses.replace(state, peers=dict(state.peers), sent={k: dict(v) for k, v in state.sent.items()})
    out: list[Action] = []
    if isinstance(event, Received):
        _receive(st, event.packet, now, out)
    elif isinstance(event, LeaseReply):
        _lease_reply(st, event, now, out)
    elif isinstance(event, PromoteDone):
        if st.role is Role.PROMOTING:
            if event.ok:
                _set_role(st, Role.ACTIVE, "resources started", out)
            else:
                _fail(st, now)
                _demote(st, f"promotion failed: {event.error}", "", out)
    elif isinstance(event, DemoteDone):
        if st.role is Role.DEMOTING:
            _set_role(st, Role.STANDBY, st.reason, out)
            if st.fence_until is not None:
                st.demote_keeps_right, st.fence_until = False, None
                out.append(Fence(None))
    elif isinstance(event, Switchover):
        _switchover(st, event.target, event.reason, now, out)
    elif isinstance(event, FailoverRequest):
        if st.role in HOLDING:
            limit = st.params.request_min_interval
            if st.last_request is None or now - st.last_request >= limit:
                st.last_request = now
                _fail(st, now)
                _demote(st, f"failover requested: {event.reason}", "", out)
    elif isinstance(event, ResourceFailed):
        if st.role in HOLDING:
            _fail(st, now)
            _demote(st, f"resource failed: {event.reason}", "", out)
    elif isinstance(event, SetBlocked):
        st.blocked = event.reason
    elif isinstance(event, Reconfigure):
        st.params = event.params
    elif isinstance(event, LeaseObserved) and event.record.holder == st.params.me and not st.lease_inflight:
        _observe(st, event.record, now)  # our own annotation write: renew on its version
    _tick(st, now, out)
    return st, out


def _set_role(st: State, role: Role, reason: str, out: list[Action]) -> None:
    if role is not st.role:
        out.append(RoleChanged(st.role.value, role.value, reason))
        st.role, st.reason = role, reason


def _fail(st: State, now: float) -> None:
    st.failures = (*(f for f in st.failures if now - f < st.params.failure_timeout), now)
    st.acquire_not_before = now + st.params.timings.lease_duration  # let another member try first


def _demote(st: State, reason: str, handover: str, out: list[Action], *, keep_right: bool = True) -> None:
    """Start demoting. A voluntary demotion keeps renewing the Lease until the agents are done, so
    blockrepl keeps acknowledging the writes of the unmount; with the right lost, writes stop now."""
    if st.role in (Role.STANDBY, Role.DEMOTING):
        return
    if st.role is Role.ACQUIRING:
        _set_role(st, Role.STANDBY, reason, out)
        return
    _set_role(st, Role.DEMOTING, reason, out)
    st.demote_keeps_right = keep_right and not st.lease_lost
    if not st.demote_keeps_right:
        st.fence_until = None
        out.append(Fence(None))
    out.append(Demote(reason))
    st.pending_release = handover


def _switchover(st: State, target: str | None, reason: str, now: float, out: list[Action]) -> None:
    if st.role not in HOLDING or target == st.params.me:
        return
    if target is None:  # graceful termination: the best alive, eligible peer, if any
        cands = [p.name for p in st.peers.values() if p.state is PeerState.ALIVE and p.eligible]
        target = cands[0] if cands else ""
    elif target not in st.peers:
        return
    _demote(st, f"switchover to {target or 'any member'}: {reason}", target, out)


def _receive(st: State, pkt: Packet, now: float, out: list[Action]) -> None:
    me = st.params.me
    peer = st.peers.get(pkt.src)
    if peer is None:
        out.append(Dropped("unknown_sender", pkt.src))
        return
    if pkt.dst != me:
        out.append(Dropped("misdirected", pkt.src))
        return
    if pkt.epoch < peer.epoch:
        out.append(Dropped("stale_epoch", pkt.src))
        return
    if pkt.epoch == peer.epoch and pkt.seq <= peer.seq:
        out.append(Dropped("replay", pkt.src))
        return
    acked, acked_dead = peer.acked_send, peer.acked_dead
    if pkt.kind == "ack" and pkt.ack_epoch == st.epoch:
        sent_at = st.sent[pkt.src].get(pkt.ack_seq)
        if sent_at is not None and (acked is None or sent_at > acked):
            acked, acked_dead = sent_at, wire.dead_seconds(pkt.dead)
    promised = peer.promised_until
    dead = st.params.timings.dead
    if pkt.kind == "hb":  # our ack promises `dead`: never call the sender dead before now + dead
        promised = max(promised if promised is not None else now, now + dead)
    was_active = peer.active
    st.peers[pkt.src] = peer = dataclasses.replace(
        peer, epoch=pkt.epoch, seq=pkt.seq, last_seen=now, active=pkt.active, eligible=pkt.eligible,
        acked_send=acked, acked_dead=acked_dead, promised_until=promised,
    )
    if pkt.kind == "hb":
        out.append(Send(_packet(st, pkt.src, "ack", now, ack_epoch=pkt.epoch, ack_seq=pkt.seq,
                                dead=wire.dead_code(dead))))
    if was_active and not pkt.active and st.lease is not None and st.lease.holder == pkt.src:
        st.next_lease_op = now  # the holder stepped down: look at the Lease now, not in a period


def _packet(st: State, dst: str, kind: str, now: float, *, ack_epoch: int = 0, ack_seq: int = 0,
            dead: int = 0) -> Packet:
    st.seq += 1
    return Packet(kind=kind, src=st.params.me, dst=dst, epoch=st.epoch, seq=st.seq,
                  active=st.role in FLAG_ACTIVE, eligible=eligible(st, now),
                  ack_epoch=ack_epoch, ack_seq=ack_seq, dead=dead)


def _tick(st: State, now: float, out: list[Action]) -> None:
    t = st.params.timings
    if not st.booted:  # a restarted member first stops whatever its previous incarnation let run,
        st.booted = True  # before any peer can hear it say "not active"
        out.append(Fence(None))
    for name, peer in st.peers.items():
        new = peer_state(peer, st.started, now, t)
        if new is not peer.state:
            out.append(PeerChanged(name, peer.state.value, new.value))
            st.peers[name] = dataclasses.replace(peer, state=new)
    if now >= st.next_hb:
        st.next_hb = max(st.next_hb + t.keepalive, now)
        for name in st.peers:
            pkt = _packet(st, name, "hb", now)
            sent = st.sent[name]
            if pkt.active:  # only an ack of "I am active" stops a peer from taking over
                sent[pkt.seq] = now
            for seq in [s for s, at in sent.items() if now - at > t.dead]:
                del sent[seq]
            out.append(Send(pkt))
    if st.role is Role.DEMOTING and st.demote_keeps_right:
        until = right_until(st)
        if now >= until:  # the agents took longer than the right lasted: writes stop now
            st.demote_keeps_right, st.fence_until = False, None
            out.append(Fence(None))
        elif until != st.fence_until:
            st.fence_until = until
            out.append(Fence(until))
    if st.role in HOLDING:
        until = right_until(st)
        if now >= until:
            why = "Lease held by another member" if st.lease_lost else "no Lease renewal and no peer acks"
            _demote(st, f"lost the right to stay active: {why}", "", out, keep_right=False)
        elif until != st.fence_until:
            st.fence_until = until
            out.append(Fence(until))
        if st.role is Role.ACTIVE:
            _auto_failback(st, out)
    _lease_tick(st, now, out)


def _auto_failback(st: State, out: list[Action]) -> None:
    pref = st.params.preferred
    if not st.params.auto_failback or pref is None or pref == st.params.me:
        return
    peer = st.peers.get(pref)
    if peer is not None and peer.state is PeerState.ALIVE and peer.eligible and not peer.active:
        _demote(st, f"auto failback to preferred member {pref}", pref, out)


def _lease_tick(st: State, now: float, out: list[Action]) -> None:
    if st.lease_inflight:
        return
    me, lease = st.params.me, st.lease
    if st.pending_release is not None and st.role is Role.STANDBY:
        if lease is not None and lease.holder == me and not st.lease_lost:
            rec = dataclasses.replace(lease, holder="", handover=st.pending_release)
            _lease_op(st, LeaseOp("update", rec, lease.resource_version, now), out)
            return
        st.pending_release = None
    renewing = st.role in HOLDING or (st.role is Role.DEMOTING and st.demote_keeps_right)
    if renewing and lease is not None:
        if now >= st.next_lease_op:
            rec = dataclasses.replace(lease, holder=me, handover="", duration=st.params.timings.lease_duration)
            _lease_op(st, LeaseOp("update", rec, lease.resource_version, now), out)
        return
    if st.role is Role.STANDBY and lease is not None and eligible(st, now):
        holder = lease.holder
        ok, _why = arb.may_acquire(me, lease, st.observed_at, holder != "" and holder_gone(st, holder), now)
        if ok:
            changed = holder != me
            rec = LeaseRecord(holder=me, resource_version=lease.resource_version,
                              duration=st.params.timings.lease_duration,
                              transitions=lease.transitions + (1 if changed else 0))
            _set_role(st, Role.ACQUIRING, _why, out)
            _lease_op(st, LeaseOp("update", rec, lease.resource_version, now), out)
            return
    if now >= st.next_lease_op and st.role is not Role.DEMOTING:
        _lease_op(st, LeaseOp("get", None, "", now), out)


def _lease_op(st: State, op: LeaseOp, out: list[Action]) -> None:
    st.lease_inflight = True
    st.next_lease_op = op.sent_at + st.params.timings.renew_period
    out.append(op)


def _stop_demote_writes(st: State, out: list[Action]) -> None:
    if st.role is Role.DEMOTING and st.demote_keeps_right:
        st.demote_keeps_right, st.fence_until = False, None
        out.append(Fence(None))


def _observe(st: State, rec: LeaseRecord, now: float) -> None:
    if st.params.ignore_outdated and rec.outdated:
        rec = dataclasses.replace(rec, outdated={})
    if st.lease is None or rec.resource_version != st.lease.resource_version:
        st.observed_at = now
    st.lease = rec


def _lease_reply(st: State, ev: LeaseReply, now: float, out: list[Action]) -> None:
    st.lease_inflight = False
    me = st.params.me
    if ev.outcome == "unreachable":
        st.api_ok = False
        if st.role is Role.ACQUIRING:
            _set_role(st, Role.STANDBY, "Lease write failed: API server unreachable", out)
        return
    st.api_ok = True
    if ev.outcome == "notfound" or ev.record is None:
        st.lease = None
        _stop_demote_writes(st, out)
        if st.role in HOLDING:
            st.lease_lost = True
        if st.role is Role.ACQUIRING:
            _set_role(st, Role.STANDBY, "no Lease object", out)
        return
    _observe(st, ev.record, now)
    if ev.outcome == "ok" and ev.kind == "update" and ev.record.holder == me:
        st.renewed_at, st.renewed_duration = ev.sent_at, ev.record.duration
        st.lease_lost = False
        if st.role is Role.ACQUIRING:
            st.peers = {k: dataclasses.replace(p, acked_send=None) for k, p in st.peers.items()}
            _set_role(st, Role.PROMOTING, st.reason, out)
            until = right_until(st)
            st.fence_until = until
            out.append(Fence(until))
            out.append(Promote(st.reason))
        return
    if ev.outcome == "ok" and ev.kind == "update" and ev.record.holder == "":
        st.pending_release = None
        st.renewed_at = None
        return
    if ev.record.holder != me:
        st.renewed_at = None
        _stop_demote_writes(st, out)
        if st.role in HOLDING:
            st.lease_lost = True
            _demote(st, f"Lease now held by {ev.record.holder or 'nobody'}", "", out, keep_right=False)
        elif st.role is Role.ACQUIRING:
            _set_role(st, Role.STANDBY, f"Lease taken by {ev.record.holder or 'nobody'}", out)
    elif st.role is Role.ACQUIRING:  # conflict, but the record names us: retry with the new version
        _set_role(st, Role.STANDBY, "Lease changed while acquiring", out)
    elif ev.outcome == "conflict" and ev.kind == "update":
        st.next_lease_op = now  # still ours (e.g. an Outdated record moved its version): renew at once
