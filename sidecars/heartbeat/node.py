"""The heartbeat process shell: runs the membership core and does the I/O its actions ask for.

One event loop: a tick every keepalive/5 (at most 100 ms), UDP datagrams in and out, Lease calls
in a worker thread (one at a time, as the core asks), resource agents as tasks, the state file for
the start gate, the control socket and metrics. Nothing here decides; ``membership.step`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from hastack_common import state_file
from hastack_common.config_heartbeat import HeartbeatConfig
from hastack_common.ctlsock import ControlServer, EventBus
from hastack_common.durations import parse_duration
from hastack_common.logs import kv
from hastack_heartbeat import membership as m
from hastack_heartbeat import reload, wire
from hastack_heartbeat.agents import AgentError
from hastack_heartbeat.arbitration import LeaseRecord, Timings
from hastack_heartbeat.control import handlers
from hastack_heartbeat.events import (
    Action,
    Demote,
    DemoteDone,
    Dropped,
    Event,
    Fence,
    LeaseOp,
    LeaseReply,
    PeerChanged,
    Promote,
    PromoteDone,
    Received,
    Reconfigure,
    ResourceFailed,
    RoleChanged,
    Send,
    SetBlocked,
    Tick,
)
from hastack_heartbeat.metrics import Metrics
from hastack_heartbeat.outdated import OutdatedRecords
from hastack_heartbeat.status import Timeline, member_status, volume_summary

log = logging.getLogger(__name__)
FAR_FUTURE = 10 * 365 * 86400.0
EXITED_GATE_QUIET = 0.5  # a gate whose app exited and that wrote nothing newer for this long is gone


class LeaseBackend(Protocol):
    async def call(self, kind: str, rec: LeaseRecord | None, expected: str,
                   old: LeaseRecord | None) -> tuple[str, LeaseRecord | None]: ...
    async def annotate(self, me: str, key: str, value: str | None,
                       timeout: float) -> tuple[str, LeaseRecord | None]: ...


class Agents(Protocol):
    """The resource agents: promotion in order, demotion in reverse (``agents.py``)."""

    mounted: bool

    async def promote(self, reason: str, timeline: Timeline) -> None: ...
    async def demote(self, reason: str, stop_app: Callable[[], Any], fenced: bool = False) -> None: ...
    async def check(self) -> None: ...


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, node: Node) -> None:
        self.node = node

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.node.on_datagram(data)


class Node:
    def __init__(self, cfg: HeartbeatConfig, me: str, secret: bytes, lease: LeaseBackend, agents: Agents,
                 *, timings: Timings | None = None, clock: Callable[[], float] = time.monotonic,
                 replica: Any = None, ignore_outdated: bool = False) -> None:
        if me not in cfg.members:
            raise ValueError(f"this pod {me!r} is not one of the HACluster's members {cfg.members}; "
                             "check HASTACK_POD_NAME and the rendered heartbeat.yaml")
        self.cfg, self.me, self.secret = cfg, me, wire.check_secret(secret)
        self.lease, self.agents, self.clock, self.replica = lease, agents, clock, replica
        self.timings = timings or Timings.from_config(cfg.timing)
        params = reload.params_for(cfg, me, self.timings, ignore_outdated)
        self.epoch = _next_epoch(Path(cfg.run_dir))
        self.state = m.initial(params, self.epoch, clock())
        self.metrics = Metrics()
        self.events = EventBus()
        self.timeline = Timeline()
        self.addrs: dict[str, Any] = {}
        self.generation = int(time.time() * 1000)
        self.serving_since: int | None = None  # first state generation of the current serving period
        self._transport: asyncio.DatagramTransport | None = None
        self._family = socket.AF_INET6
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()
        self.role_listeners: list[Callable[[RoleChanged, float], None]] = []
        self.emit: Callable[[str, str, str], None] = lambda kind, reason, message: None  # Events, when in a cluster
        self.outdated = OutdatedRecords(self, lease, list(cfg.members), timeout=self.timings.renew_deadline)
        self.control = ControlServer(str(Path(cfg.run_dir) / "heartbeat.sock"), handlers(self), self.events)

    # ---- running ------------------------------------------------------------------------

    async def run(self) -> None:
        self.write_state()  # fence before the first packet: whatever ran before us stops now
        loop = asyncio.get_running_loop()
        try:  # dual stack where the node has IPv6, IPv4 only where it does not
            self._transport, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=("::", self.cfg.timing.port), family=socket.AF_INET6)
        except OSError:
            self._family = socket.AF_INET
            self._transport, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=("0.0.0.0", self.cfg.timing.port), family=socket.AF_INET)
        await self.control.start()
        period = min(self.timings.keepalive / 5, 0.1)
        self.spawn(self._resolve_forever())
        self.spawn(self._watch_resources())
        log.info("heartbeat started", extra=kv(member=self.me, epoch=self.epoch, port=self.cfg.timing.port,
                                               peers=",".join(self.state.params.peers)))
        try:
            while not self._stop.is_set():
                self.feed(Tick())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), period)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await self.control.close()
            self._transport.close()

    def stop(self) -> None:
        self._stop.set()

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            for peer in self.state.params.peers:
                host = self.cfg.address_of(peer)
                try:
                    infos = await asyncio.wait_for(
                        loop.getaddrinfo(host, self.cfg.timing.port, type=socket.SOCK_DGRAM), 2.0)
                    addr = _pick(infos, self._family)
                except (OSError, TimeoutError) as exc:
                    if peer in self.addrs:
                        log.warning("peer address lost", extra=kv(peer=peer, host=host, error=str(exc)))
                    self.addrs.pop(peer, None)
                    continue
                self.addrs[peer] = addr
            await asyncio.sleep(2.0 if len(self.addrs) == len(self.state.params.peers) else 0.5)

    # ---- the core -----------------------------------------------------------------------

    def on_datagram(self, data: bytes) -> None:
        try:
            pkt = wire.decode(data, self.cfg.cluster, self.secret)
        except wire.BadPacket as exc:
            self.metrics.bad_packets.labels(exc.reason).inc()
            log.debug("bad packet", extra=kv(reason=exc.reason))
            return
        self.feed(Received(pkt))

    def feed(self, event: Event) -> None:
        now = self.clock()
        old_role = self.state.role
        self.state, actions = m.step(self.state, event, now)
        for action in actions:
            self._do(action, now)
        if isinstance(event, Received) and not any(isinstance(a, Dropped) for a in actions):
            self.metrics.packets.labels(event.packet.kind, "in").inc()
        if self.state.role is not old_role or any(isinstance(a, Fence) for a in actions):
            self.write_state()
        self._refresh_gauges(now)

    def _do(self, a: Action, now: float) -> None:
        if isinstance(a, Send):
            addr = self.addrs.get(a.packet.dst)
            if addr is not None and self._transport is not None:
                self._transport.sendto(wire.encode(a.packet, self.cfg.cluster, self.secret), addr)
                self.metrics.packets.labels(a.packet.kind, "out").inc()
        elif isinstance(a, LeaseOp):
            self.spawn(self._lease_call(a))
        elif isinstance(a, Promote):
            self.spawn(self._promote(a.reason))
        elif isinstance(a, Demote):
            self.spawn(self._demote(a.reason, fenced=not self.state.demote_keeps_right))
        elif isinstance(a, Fence) and self.replica is not None:
            self.spawn(self._blockrepl_deadline(a.until, now))
        elif isinstance(a, Dropped):
            self.metrics.bad_packets.labels(a.reason).inc()
        elif isinstance(a, PeerChanged):
            self._peer_changed(a, now)
        elif isinstance(a, RoleChanged):
            self._role_changed(a, now)

    def _peer_changed(self, a: PeerChanged, now: float) -> None:
        self.metrics.set_peer(a.peer, a.new)
        lease = self.state.lease
        if a.new == "dead" and lease is not None and lease.holder == a.peer:
            self.timeline.detected(now, f"{a.peer} dead by heartbeat", a.peer)
        log.info("peer state", extra=kv(peer=a.peer, old=a.old, new=a.new))
        self.events.publish("peer", peer=a.peer, old=a.old, new=a.new)

    def _role_changed(self, a: RoleChanged, now: float) -> None:
        self.metrics.set_role(a.new)
        if a.new == "acquiring":
            lease = self.state.lease
            never_held = lease is not None and lease.holder == "" and lease.transitions == 0 and not lease.handover
            self.timeline.detected(now, "start-up: the Lease was never held" if never_held else a.reason,
                                   lease.holder if lease else "")
        elif a.new == "promoting":
            self.timeline.phase(now, "lease_acquired")
        elif a.new == "active":
            for phase, took in self.timeline.phase(now, "serving").items():
                self.metrics.failover_duration.labels(phase).observe(took)
            self.metrics.failovers.labels(self.timeline.kind).inc()
        elif a.new == "demoting":
            self.metrics.demotions.labels(a.reason.split(":")[0]).inc()
        log.info("role", extra=kv(old=a.old, new=a.new, reason=a.reason))
        self.events.publish("role", old=a.old, new=a.new, reason=a.reason)
        for listener in self.role_listeners:
            listener(a, now)

    async def _lease_call(self, op: LeaseOp) -> None:
        outcome, rec = await self.lease.call(op.kind, op.record, op.expected_version, self.state.lease)
        if op.kind == "update" and outcome != "ok" and self.state.role in m.HOLDING:
            self.metrics.lease_renew_failures.inc()
        self.feed(LeaseReply(op.kind, outcome, rec, op.sent_at))  # type: ignore[arg-type]

    async def _promote(self, reason: str) -> None:
        try:
            await self.agents.promote(reason, self.timeline)
        except Exception as exc:
            log.error("promotion failed", extra=kv(error=str(exc)))
            self.feed(PromoteDone(False, str(exc)))
            return
        self.feed(PromoteDone(True))

    async def _blockrepl_deadline(self, until: float | None, now: float) -> None:
        """blockrepl stops acknowledging writes at the same deadline as the gate (sbd-like)."""
        assert self.replica is not None
        seconds = 0.001 if until is None else max(0.001, min(until, now + FAR_FUTURE) - self.clock())
        try:
            await self.replica.set_deadline(seconds)
        except Exception as exc:
            log.warning("blockrepl deadline not set", extra=kv(error=str(exc)[:200]))

    async def _watch_resources(self) -> None:
        """Standby: block promotion while the local replica is not UpToDate. Active: monitor."""
        while True:
            await asyncio.sleep(self.timings.keepalive)
            role = self.state.role
            if role is m.Role.STANDBY and self.replica is not None:
                try:
                    disk = (await self.replica.status()).get("disk", "")
                    blocked = "" if disk == "UpToDate" else f"local replica is {disk or 'unknown'}"
                except Exception as exc:
                    blocked = f"blockrepl unreachable: {exc}"
                if blocked != self.state.blocked:
                    self.feed(SetBlocked(blocked))
            elif role is m.Role.ACTIVE:
                try:
                    await self.agents.check()
                    await self.check_apps()
                except Exception as exc:
                    if self.state.role is m.Role.ACTIVE:
                        log.error("monitor failed", extra=kv(error=str(exc)))
                        self.feed(ResourceFailed(str(exc)))
                    continue
                try:
                    await self.outdated.clear_resynced(self.replica)
                except Exception as exc:
                    log.warning("Outdated records not checked", extra=kv(error=str(exc)[:200]))

    async def _demote(self, reason: str, fenced: bool) -> None:
        try:
            await self.agents.demote(reason, self.stop_app, fenced)
        except Exception as exc:  # still standby: the fence already stopped writes
            log.error("demotion step failed", extra=kv(error=str(exc)))
        self.feed(DemoteDone())

    # ---- the start gate ---------------------------------------------------------------------

    def gate_state(self) -> state_file.GateState:
        st = self.state
        serve = st.role is m.Role.ACTIVE and self.agents.mounted and st.fence_until is not None
        deadline = None
        if st.role in m.HOLDING and st.fence_until is not None:
            deadline = min(st.fence_until, self.clock() + FAR_FUTURE)  # finite JSON, even with fencing off
        return state_file.GateState(
            member=self.me, role=st.role.value, serve=serve, mounted=self.agents.mounted,
            fence_deadline=deadline,
            stop_grace_seconds=parse_duration(self.cfg.gate_grace), generation=self.generation,
        )

    def reconfigure(self, cfg: HeartbeatConfig) -> None:
        """Apply a changed heartbeat.yaml (``reload.py`` says why any order of members is safe)."""
        fixed = reload.restart_needed(self.cfg, cfg)
        if fixed:
            log.warning("heartbeat.yaml changed fields a running member cannot apply; restart it",
                        extra=kv(fields=",".join(fixed)))
        timings = reload.timings_for(cfg, self.timings)
        changes = reload.describe(self.timings, timings)
        log.info("heartbeat.yaml reloaded", extra=kv(**changes))
        keep = {name: getattr(self.cfg, name) for name in reload.FIXED}
        keep["timing"] = cfg.timing.model_copy(update={"port": self.cfg.timing.port})
        self.cfg, self.timings = cfg.model_copy(update=keep), timings
        self.feed(Reconfigure(reload.params_for(self.cfg, self.me, timings, self.state.params.ignore_outdated)))
        self.events.publish("reloaded", timings=changes, restart_needed=fixed)

    def write_state(self) -> None:
        """Small write on a memory-backed volume; kept synchronous so a fence is never reordered."""
        self.generation += 1
        state = self.gate_state()
        if not state.serve:
            self.serving_since = None
        elif self.serving_since is None:
            self.serving_since = self.generation
        state_file.write_state(self.cfg.run_dir, state)

    async def check_apps(self) -> None:
        """The monitor operation's app check, through the gates' acknowledgements."""
        if self.serving_since is None:
            return
        acks = await asyncio.to_thread(state_file.read_acks, self.cfg.run_dir)
        down = state_file.apps_down(acks, self.serving_since, time.monotonic(),
                                    parse_duration(self.cfg.failover.app_down_after))
        if down:
            raise AgentError("; ".join(down))

    async def stop_app(self) -> None:
        """Wait until every gate acknowledged the current (not serving) state, or its grace is over."""
        gen = self.generation
        limit = parse_duration(self.cfg.gate_grace) + 5.0
        start = self.clock()
        deadline = start + limit
        while self.clock() < deadline:
            acks = await asyncio.to_thread(state_file.read_acks, self.cfg.run_dir)
            if state_file.all_stopped(acks, gen, exited_count=self.clock() - start >= EXITED_GATE_QUIET):
                return
            await asyncio.sleep(0.05)
        log.warning("start gate did not acknowledge the stop", extra=kv(generation=gen, waited=limit))

    def _refresh_gauges(self, now: float) -> None:
        for peer in self.state.peers.values():
            age = -1 if peer.last_seen is None else now - peer.last_seen
            self.metrics.last_seen.labels(peer.name).set(age)
        until = self.state.fence_until
        self.metrics.fence_remaining.set(max(0.0, until - now) if until is not None else 0.0)
        self.metrics.eligible.set(1 if m.eligible(self.state, now) else 0)

    def status(self) -> dict[str, Any]:
        st = member_status(self.state, self.clock(), self.timeline, self.addrs)
        device = getattr(self.agents, "device", None)  # the exposed volume: fsinit formats it
        replica = getattr(self.replica, "last_status", None)  # as last polled (every keepalive)
        return {**st, **({"device": device} if device else {}),
                **({"volume": volume_summary(replica)} if replica else {})}


def _pick(infos: list[Any], family: int) -> tuple[Any, ...]:
    for fam, _, _, _, sa in infos:
        if family == socket.AF_INET6:
            return (sa[0] if fam == socket.AF_INET6 else f"::ffff:{sa[0]}", sa[1])
        if fam == socket.AF_INET:
            return (sa[0], sa[1])
    raise OSError("no IPv4 address for this peer and no IPv6 on this node")


def _next_epoch(run_dir: Path) -> int:
    """Boot epoch: wall-clock nanoseconds, but always above the last one used on this node."""
    path = run_dir / "heartbeat.epoch"
    try:
        last = int(path.read_text())
    except (OSError, ValueError):
        last = 0
    epoch = max(time.time_ns(), last + 1)
    run_dir.mkdir(parents=True, exist_ok=True)
    state_file.write_atomic(path, str(epoch).encode())
    return epoch
