"""Membership core: peer states by warnTime/deadTime/initDead, replay defence, acknowledgements."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hastack_heartbeat import membership as m
from hastack_heartbeat.arbitration import Timings
from hastack_heartbeat.events import (
    Demote,
    Dropped,
    FailoverRequest,
    Fence,
    Packet,
    PeerChanged,
    Received,
    Reconfigure,
    Send,
    Tick,
)

T = Timings()
PARAMS = m.Params(me="a", peers=("b", "c"), timings=T)


def fresh(now: float = 100.0) -> m.State:
    st, _ = m.step(m.initial(PARAMS, epoch=7, now=now), Tick(), now)
    return st


def hb(src: str = "b", epoch: int = 1, seq: int = 1, **kw: object) -> Packet:
    return Packet(kind="hb", src=src, dst="a", epoch=epoch, seq=seq, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("last_seen", "now", "expected"),
    [
        (None, 100.0, m.PeerState.INIT),
        (None, 109.9, m.PeerState.INIT),  # initDead 10s from start at 100
        (None, 110.0, m.PeerState.DEAD),
        (105.0, 106.4, m.PeerState.ALIVE),
        (105.0, 106.5, m.PeerState.WARN),  # warnTime 1.5s
        (105.0, 107.9, m.PeerState.WARN),
        (105.0, 108.0, m.PeerState.DEAD),  # deadTime 3s
    ],
)
def test_peer_state_table(last_seen: float | None, now: float, expected: m.PeerState) -> None:
    assert m.peer_state(m.Peer("b", last_seen=last_seen), started=100.0, now=now, t=T) is expected


def test_first_step_fences_before_anything_is_sent() -> None:
    _, actions = m.step(m.initial(PARAMS, epoch=1, now=0.0), Tick(), 0.0)
    assert isinstance(actions[0], Fence) and actions[0].until is None
    assert [a.packet.dst for a in actions if isinstance(a, Send)] == ["b", "c"]


def test_heartbeats_every_keepalive_to_every_peer_with_rising_sequence() -> None:
    st = fresh(0.0)
    seqs = []
    for i in range(1, 40):
        st, actions = m.step(st, Tick(), i * 0.1)
        seqs += [a.packet.seq for a in actions if isinstance(a, Send)]
    assert len(seqs) == 2 * 7  # at 0.5, 1.0 ... 3.5 s (the one at 0 went out in fresh()), two peers
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


@pytest.mark.parametrize(
    ("first", "second", "reason"),
    [
        (hb(seq=5), hb(seq=5), "replay"),
        (hb(seq=5), hb(seq=4), "replay"),
        (hb(epoch=2, seq=1), hb(epoch=1, seq=99), "stale_epoch"),
        (hb(seq=1), hb(src="z", seq=2), "unknown_sender"),
        (hb(seq=1), dataclasses.replace(hb(seq=2), dst="c"), "misdirected"),
    ],
)
def test_replayed_old_and_foreign_packets_are_dropped_with_a_reason(first: Packet, second: Packet,
                                                                   reason: str) -> None:
    st, _ = m.step(fresh(), Received(first), 100.1)
    before = st.peers["b"]
    st, actions = m.step(st, Received(second), 100.2)
    assert Dropped(reason, second.src) in actions
    assert st.peers["b"] == before  # a dropped packet changes nothing
    assert not any(isinstance(a, Send) and a.packet.kind == "ack" for a in actions)


def test_new_boot_epoch_resets_the_sequence() -> None:
    st, _ = m.step(fresh(), Received(hb(epoch=1, seq=50)), 100.1)
    st, actions = m.step(st, Received(hb(epoch=2, seq=1)), 100.2)
    assert not any(isinstance(a, Dropped) for a in actions)
    assert (st.peers["b"].epoch, st.peers["b"].seq) == (2, 1)


def test_heartbeat_is_acknowledged_and_peer_goes_alive_warn_dead() -> None:
    st, actions = m.step(fresh(), Received(hb(seq=3)), 100.1)
    acks = [a.packet for a in actions if isinstance(a, Send) and a.packet.kind == "ack"]
    assert [(p.dst, p.ack_epoch, p.ack_seq) for p in acks] == [("b", 1, 3)]
    assert PeerChanged("b", "init", "alive") in actions
    st, actions = m.step(st, Tick(), 101.7)
    assert PeerChanged("b", "alive", "warn") in actions
    st, actions = m.step(st, Tick(), 103.2)
    assert PeerChanged("b", "warn", "dead") in actions


def _holding(st: m.State) -> m.State:
    return dataclasses.replace(st, role=m.Role.ACTIVE)


def test_only_acks_of_active_heartbeats_count_towards_the_right_to_stay_active() -> None:
    st = fresh(0.0)  # standby: its heartbeats at t=0 say "not active"
    sent = {a.packet.dst: a.packet for a in m.step(st, Tick(), 0.0)[1] if isinstance(a, Send)}
    assert not sent  # nothing due yet
    standby_seq = st.seq
    ack = Packet(kind="ack", src="b", dst="a", epoch=1, seq=1, ack_epoch=7, ack_seq=standby_seq)
    st2, _ = m.step(st, Received(ack), 0.1)
    assert st2.peers["b"].acked_send is None
    st = _holding(st)
    st, actions = m.step(st, Tick(), 0.5)  # keepalive: heartbeats now say "active"
    hbs = {a.packet.dst: a.packet for a in actions if isinstance(a, Send)}
    assert hbs["b"].active
    ack = Packet(kind="ack", src="b", dst="a", epoch=1, seq=2, ack_epoch=7, ack_seq=hbs["b"].seq)
    st, _ = m.step(st, Received(ack), 0.6)
    assert st.peers["b"].acked_send == 0.5  # the *send* time, not the receive time
    wrong_epoch = dataclasses.replace(ack, seq=3, ack_epoch=6)
    st, _ = m.step(st, Received(wrong_epoch), 0.7)
    assert st.peers["b"].acked_send == 0.5


@given(st.lists(st.tuples(st.integers(1, 3), st.integers(0, 30)), max_size=60))
def test_accepted_packets_strictly_increase_in_epoch_then_sequence(pkts: list[tuple[int, int]]) -> None:
    state = fresh()
    accepted: list[tuple[int, int]] = []
    for i, (epoch, seq) in enumerate(pkts):
        state, actions = m.step(state, Received(hb(epoch=epoch, seq=seq)), 100.0 + i * 0.01)
        if not any(isinstance(a, Dropped) for a in actions):
            accepted.append((epoch, seq))
    assert accepted == sorted(set(accepted))


def test_auto_failback_hands_over_to_the_preferred_member_when_it_is_back() -> None:
    params = m.Params(me="a", peers=("b",), timings=T, auto_failback=True, preferred="b")
    st, _ = m.step(m.initial(params, epoch=7, now=0.0), Tick(), 0.0)
    st = dataclasses.replace(st, role=m.Role.ACTIVE, renewed_at=0.0, fence_until=3.0)
    st, actions = m.step(st, Received(hb(seq=1, active=True, eligible=True)), 0.1)
    assert st.role is m.Role.ACTIVE, "a preferred member that says it is active is not a target"
    st, actions = m.step(st, Received(hb(seq=2, active=False, eligible=False)), 0.2)
    assert st.role is m.Role.ACTIVE, "nor one that is not eligible"
    st, actions = m.step(st, Received(hb(seq=3, active=False, eligible=True)), 0.3)
    assert st.role is m.Role.DEMOTING and st.pending_release == "b"
    assert any(isinstance(a, Demote) and "auto failback" in a.reason for a in actions)


def test_failover_requests_are_rate_limited_and_count_as_failures() -> None:
    params = m.Params(me="a", peers=("b",), timings=T, request_min_interval=60.0, max_failures=2)
    st, _ = m.step(m.initial(params, epoch=7, now=0.0), Tick(), 0.0)
    active = dataclasses.replace(st, role=m.Role.ACTIVE, renewed_at=0.0, fence_until=3.0)
    st, _ = m.step(active, FailoverRequest("probe http down"), 1.0)
    assert st.role is m.Role.DEMOTING and len(st.failures) == 1
    assert not m.eligible(st, 1.0 + T.lease_duration - 0.1)  # steps back for one Lease duration
    st2, _ = m.step(dataclasses.replace(st, role=m.Role.ACTIVE, renewed_at=29.5), FailoverRequest("again"), 30.0)
    assert st2.role is m.Role.ACTIVE, "a second request within requestMinInterval is ignored"
    st3, _ = m.step(dataclasses.replace(st, role=m.Role.ACTIVE, renewed_at=69.5), FailoverRequest("later"), 70.0)
    assert st3.role is m.Role.DEMOTING and not m.eligible(st3, 200.0), "maxFailures reached"


def test_a_member_never_calls_a_peer_dead_before_the_deadtime_its_acks_promised() -> None:
    st = fresh(100.0)
    st, acts = m.step(st, Received(hb(src="b", seq=1)), 101.0)
    ack = next(a.packet for a in acts if isinstance(a, Send) and a.packet.kind == "ack")
    assert ack.dead == 12  # 3 s promised
    shorter = dataclasses.replace(st.params, timings=dataclasses.replace(T, dead=2.0))
    st, _ = m.step(st, Reconfigure(shorter), 101.5)
    st, _ = m.step(st, Tick(), 103.5)  # 2.5 s of silence: past the new deadTime, within the promise
    assert st.peers["b"].state is not m.PeerState.DEAD
    st, _ = m.step(st, Tick(), 104.0)
    assert st.peers["b"].state is m.PeerState.DEAD
