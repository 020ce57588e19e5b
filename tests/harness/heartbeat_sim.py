"""A discrete-event model of N heartbeat members, their network, the Lease and the API server.

It drives the real pure core (``hastack_heartbeat.membership.step``) and models only what cannot
run inside a unit test: UDP delivery (delay, loss, partitions), the API server's Lease with
optimistic concurrency on resourceVersion (a write is applied at some instant after it is sent;
its reply may be lost, as with a real timeout), and resource agents that take a while.

A member's *fence* is the deadline its last ``Fence`` action gave the gate and blockrepl: the
member may write while the clock is below it. A crash kills the heartbeat process only; the
fence it handed out stays in force until it lapses (the sbd-like deadline). ``check()`` runs
at every instant the model visits and records every time two members could write at once.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from dataclasses import dataclass, field, replace
from typing import Any

from hastack_heartbeat import membership as m
from hastack_heartbeat.arbitration import LeaseRecord, Timings
from hastack_heartbeat.events import (
    Demote,
    DemoteDone,
    Event,
    Fence,
    LeaseOp,
    LeaseReply,
    Promote,
    PromoteDone,
    Received,
    Send,
    Tick,
)

TICK = 0.05


@dataclass
class LeaseServer:
    record: LeaseRecord = field(default_factory=lambda: LeaseRecord("", "1", 4.0))
    version: int = 1
    writes: int = 0

    def apply(self, op: LeaseOp) -> tuple[str, LeaseRecord]:
        if op.kind == "get":
            return "ok", self.record
        if op.expected_version != self.record.resource_version:
            return "conflict", self.record
        assert op.record is not None
        self.version += 1
        self.writes += 1
        self.record = replace(op.record, resource_version=str(self.version))
        return "ok", self.record


@dataclass
class Sim:
    n: int = 2
    seed: int = 0
    timings: Timings = field(default_factory=Timings)
    max_delay: float = 0.05  # one-way packet delay bound
    api_latency: float = 0.1
    api_timeout: float = 1.0
    loss: float = 0.0
    agent_time: float = 0.2
    names: list[str] = field(init=False)
    now: float = 0.0
    states: dict[str, m.State | None] = field(init=False)
    fences: dict[str, float] = field(init=False)
    epochs: dict[str, int] = field(init=False)
    link_up: dict[frozenset[str], bool] = field(init=False)
    api_up: dict[str, bool] = field(init=False)
    lease: LeaseServer = field(default_factory=LeaseServer)
    violations: list[tuple[float, list[str]]] = field(default_factory=list)
    history: list[tuple[float, str, str]] = field(default_factory=list)  # (time, member, new role)
    fence_log: list[tuple[float, str, float]] = field(default_factory=list)  # (time, member, deadline)
    _queue: list[tuple[float, int, str, Any]] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.names = [f"m{i}" for i in range(self.n)]
        self.lease.record = LeaseRecord("", "1", self.timings.lease_duration)
        self.states = {}
        self.fences = {x: -math.inf for x in self.names}
        self.epochs = dict.fromkeys(self.names, 0)
        self.link_up = {frozenset((a, b)): True for a, b in itertools.combinations(self.names, 2)}
        self.api_up = dict.fromkeys(self.names, True)
        for name in self.names:
            self.start(name)
        self._push(self.now + TICK, "tick", None)

    # ---- faults -------------------------------------------------------------------------

    def start(self, name: str) -> None:
        self.epochs[name] += 1
        params = m.Params(me=name, peers=tuple(x for x in self.names if x != name), timings=self.timings)
        self.states[name] = m.initial(params, self.epochs[name], self.now)

    def crash(self, name: str) -> None:
        self.states[name] = None

    def set_link(self, a: str, b: str, up: bool) -> None:
        self.link_up[frozenset((a, b))] = up

    def isolate(self, name: str, peers: bool = True, api: bool = True) -> None:
        for other in self.names:
            if other != name and peers:
                self.set_link(name, other, False)
        if api:
            self.api_up[name] = False

    def heal(self) -> None:
        for link in self.link_up:
            self.link_up[link] = True
        for name in self.api_up:
            self.api_up[name] = True

    def feed(self, name: str, event: Event) -> None:
        st = self.states.get(name)
        if st is not None:
            self._apply(name, event, st)

    # ---- queries ------------------------------------------------------------------------

    def writers(self) -> list[str]:
        return [x for x in self.names if self.fences[x] > self.now]

    def believers(self) -> list[str]:
        out = []
        for x, st in self.states.items():
            if st is not None and st.role in m.HOLDING and m.right_until(st) > self.now:
                out.append(x)
        return out

    def handover_gaps(self) -> list[float]:
        """For each member whose fence began: its start minus the end of the previous writer's fence."""
        gaps, last_end, last_who, current = [], -math.inf, "", dict.fromkeys(self.names, -math.inf)
        for at, who, until in self.fence_log:
            was_fenced = current[who] <= at
            current[who] = until
            if until > at and was_fenced:  # a member starts writing
                if last_who and last_who != who:
                    gaps.append(at - last_end)
                last_who = who
            if who == last_who:
                last_end = at if until <= at else until
        return gaps

    def role(self, name: str) -> str | None:
        st = self.states.get(name)
        return None if st is None else st.role.value

    def active(self) -> list[str]:
        return [x for x in self.names if self.role(x) == "active"]

    # ---- the model ----------------------------------------------------------------------

    def run(self, until: float) -> None:
        while self._queue and self._queue[0][0] <= until:
            at, _, kind, payload = heapq.heappop(self._queue)
            self.now = at
            self._dispatch(kind, payload)
            self.check()
        self.now = until

    def run_until(self, cond: Any, limit: float) -> float | None:
        """Run until ``cond(self)`` holds (checked every tick); the model time, or None at ``limit``."""
        end = self.now + limit
        while self.now < end:
            self.run(min(end, self.now + TICK))
            if cond(self):
                return self.now
        return None

    def check(self) -> None:
        w = self.writers()
        b = self.believers()
        if len(w) > 1 or len(b) > 1:
            self.violations.append((self.now, sorted(set(w) | set(b))))

    def _push(self, at: float, kind: str, payload: Any) -> None:
        heapq.heappush(self._queue, (at, next(self._order), kind, payload))

    def _dispatch(self, kind: str, payload: Any) -> None:
        if kind == "tick":
            for name in self.names:
                self.feed(name, Tick())
            self._push(self.now + TICK, "tick", None)
        elif kind == "deliver":
            pkt, epoch = payload
            if self.link_up[frozenset((pkt.src, pkt.dst))]:
                self.feed(pkt.dst, Received(pkt))
        elif kind == "lease_apply":
            name, epoch, op = payload
            if self.api_up[name]:  # a write sent before its sender died still reaches the server
                outcome, rec = self.lease.apply(op)
                reply_at = self.now + self.rng.uniform(0, self.api_latency)
                self._push(reply_at, "lease_reply", (name, epoch, op, outcome, rec))
                return
            self._push(op.sent_at + self.api_timeout, "lease_reply", (name, epoch, op, "unreachable", None))
        elif kind == "lease_reply":
            name, epoch, op, outcome, rec = payload
            if outcome != "unreachable" and not self.api_up[name]:
                outcome, rec = "unreachable", None
                self._push(max(self.now, op.sent_at + self.api_timeout), "lease_reply",
                           (name, epoch, op, outcome, rec))
                return
            if self._alive(name, epoch):
                self.feed(name, LeaseReply(op.kind, outcome, rec, op.sent_at))
        elif kind == "agent_done":
            name, epoch, event = payload
            if self._alive(name, epoch):
                self.feed(name, event)

    def _alive(self, name: str, epoch: int) -> bool:
        return self.states.get(name) is not None and self.epochs[name] == epoch

    def _apply(self, name: str, event: Event, st: m.State) -> None:
        new, actions = m.step(st, event, self.now)
        self.states[name] = new
        epoch = self.epochs[name]
        for a in actions:
            if isinstance(a, Send):
                if self.link_up[frozenset((a.packet.src, a.packet.dst))] and self.rng.random() >= self.loss:
                    delay = self.rng.uniform(0.0005, self.max_delay)
                    self._push(self.now + delay, "deliver", (a.packet, epoch))
            elif isinstance(a, LeaseOp):
                self._push(self.now + self.rng.uniform(0, self.api_latency), "lease_apply", (name, epoch, a))
            elif isinstance(a, Fence):
                self.fences[name] = -math.inf if a.until is None else a.until
                self.fence_log.append((self.now, name, self.fences[name]))
            elif isinstance(a, Promote):
                self._push(self.now + self.rng.uniform(0.01, self.agent_time), "agent_done",
                           (name, epoch, PromoteDone(True)))
            elif isinstance(a, Demote):
                self._push(self.now + self.rng.uniform(0.01, self.agent_time), "agent_done",
                           (name, epoch, DemoteDone()))
        if new.role is not st.role:
            self.history.append((self.now, name, new.role.value))
