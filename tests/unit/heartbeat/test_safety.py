"""At most one member believes it is active, over scripted and random faults (the core in a model).

The model (tests/harness/heartbeat_sim.py) runs the real membership core; the network, the
API server's Lease and the resource agents are modelled because no real one runs in a unit test.
"""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.heartbeat_sim import Sim
from hastack_heartbeat.arbitration import Timings
from hastack_heartbeat.events import Reconfigure, Switchover

T = Timings()
# valid timing sets a member may reload to (the CRD and check_timings allow each)
RETIMES = [Timings(dead=2.0), Timings(dead=6.0, warn=3.0),
           Timings(lease_duration=6.0, renew_deadline=5.0, dead=6.0, warn=3.0)]
# A correctness bound, not the performance target: deadTime or the Lease's expiry as a standby
# observes it (up to one renewPeriod late) + one renewPeriod + API latency and agents.
FAILOVER_BOUND = T.lease_duration + 2 * T.renew_period + 1.0


def settled(n: int, seed: int = 1) -> tuple[Sim, str]:
    sim = Sim(n=n, seed=seed)
    assert sim.run_until(lambda s: len(s.active()) == 1, 10) is not None
    return sim, sim.active()[0]


def test_sigkill_of_the_active_fails_over_within_bounds_2_and_3_members() -> None:
    for n in (2, 3):
        sim, old = settled(n)
        sim.crash(old)
        t0 = sim.now
        took = sim.run_until(lambda s: len(s.active()) == 1, 15)
        assert took is not None, f"no takeover with {n} members"
        assert took - t0 <= FAILOVER_BOUND
        assert sim.active()[0] != old and sim.lease.record.holder == sim.active()[0]
        assert not sim.violations
        assert min(sim.handover_gaps()) > 0


def _retime(sim: Sim, name: str, t: Timings) -> None:
    st = sim.states[name]
    assert st is not None
    sim.feed(name, Reconfigure(dataclasses.replace(st.params, timings=t)))


def test_timings_reloaded_online_in_any_order_never_give_two_actives() -> None:
    """The active reloads a longer deadTime, a standby a shorter one, then the active is cut off
    from everything. Its acknowledgement right must follow what the standby promised in its acks
    (2 s), not its own 6 s: otherwise it still serves when the standby takes over."""
    for first_active in (True, False):
        sim, old = settled(2)
        other = next(n for n in sim.names if n != old)
        order = [(old, Timings(dead=6.0, warn=3.0)), (other, Timings(dead=2.0))]
        for name, t in order if first_active else order[::-1]:
            _retime(sim, name, t)
            sim.run(sim.now + 1.0)
        sim.isolate(old)
        assert sim.run_until(lambda s, other=other: s.active() == [other], 20) is not None
        sim.run(sim.now + 5)
        assert not sim.violations, f"two members active: {sim.violations[:3]}"


def test_partition_from_peers_only_keeps_the_active_and_no_second_one() -> None:
    sim, old = settled(3)
    sim.isolate(old, peers=True, api=False)
    sim.run(sim.now + 20)
    assert sim.active() == [old]
    assert not sim.violations


def test_partition_from_api_server_only_is_no_failover() -> None:
    for n in (2, 3):
        sim, old = settled(n)
        sim.isolate(old, peers=False, api=True)
        writes = sim.lease.writes
        sim.run(sim.now + 20)
        assert sim.active() == [old], "peer acknowledgements must keep the active in place"
        assert sim.lease.writes == writes
        sim.heal()
        sim.run(sim.now + 5)
        assert sim.active() == [old] and not sim.violations


def test_api_server_down_for_everyone_is_no_failover_and_no_flapping() -> None:
    sim, old = settled(2)
    for name in sim.names:
        sim.api_up[name] = False
    roles_before = len(sim.history)
    sim.run(sim.now + 15)
    sim.heal()
    sim.run(sim.now + 5)
    assert sim.active() == [old] and len(sim.history) == roles_before


def test_partition_from_both_demotes_before_the_lease_can_expire() -> None:
    for n in (2, 3):
        sim, old = settled(n)
        sim.isolate(old)
        t0 = sim.now
        assert sim.run_until(lambda s, old=old: [x for x in s.active() if x != old], 15) is not None
        assert sim.role(old) == "standby"
        assert not sim.violations
        gap = sim.handover_gaps()[-1]
        assert gap >= T.margin, f"the old active stopped only {gap:.3f}s before the new one started"
        assert sim.now - t0 <= FAILOVER_BOUND + 1


def test_switchover_hands_over_without_waiting_for_dead_time() -> None:
    sim, old = settled(2)
    target = next(x for x in sim.names if x != old)
    sim.feed(old, Switchover(target, "test"))
    t0 = sim.now
    took = sim.run_until(lambda s: s.active() == [target], 10)
    assert took is not None and took - t0 < T.dead
    assert not sim.violations


def test_the_checker_catches_two_actives_when_fencing_is_switched_off() -> None:
    sim = Sim(n=2, seed=1, timings=Timings(fencing=False))
    assert sim.run_until(lambda s: len(s.active()) == 1, 10) is not None
    sim.isolate(sim.active()[0])
    sim.run(sim.now + 15)
    assert sim.violations, "with fencing off the old active keeps going: the check must see two"


FAULTS = st.lists(
    st.tuples(
        st.floats(0, 25),
        st.sampled_from(["crash", "restart", "link_down", "link_up", "api_down", "api_up", "isolate", "heal",
                         "switchover", "retime"]),
        st.integers(0, 2),
        st.integers(0, 2),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.sampled_from([2, 3]), faults=FAULTS, seed=st.integers(0, 2**16), loss=st.sampled_from([0.0, 0.2]))
def test_property_at_most_one_active_at_any_instant(n: int, faults: list[tuple[float, str, int, int]],
                                                    seed: int, loss: float) -> None:
    sim = Sim(n=n, seed=seed, loss=loss)
    for at, kind, i, j in sorted(faults):
        sim.run(at)
        a, b = sim.names[i % n], sim.names[j % n]
        if kind == "crash":
            sim.crash(a)
        elif kind == "restart" and sim.states[a] is None:
            sim.start(a)
        elif kind in ("link_down", "link_up") and a != b:
            sim.set_link(a, b, kind == "link_up")
        elif kind in ("api_down", "api_up"):
            sim.api_up[a] = kind == "api_up"
        elif kind == "isolate":
            sim.isolate(a)
        elif kind == "heal":
            sim.heal()
        elif kind == "switchover":
            sim.feed(a, Switchover(b, "test"))
        elif kind == "retime" and sim.states[a] is not None:  # timings reloaded online, one member at a time
            sim.feed(a, Reconfigure(dataclasses.replace(sim.states[a].params, timings=RETIMES[j % len(RETIMES)])))
    sim.run(30)
    assert not sim.violations, f"two members active: {sim.violations[:3]}"
    # Liveness, so that safety is not had by never promoting anyone: heal everything, restart the
    # dead, and exactly one member is active again in bounded time.
    sim.heal()
    for name in sim.names:
        if sim.states[name] is None:
            sim.start(name)
    assert sim.run_until(lambda s: len(s.active()) == 1, T.init_dead + FAILOVER_BOUND + 5) is not None
    sim.run(sim.now + 3)
    assert len(sim.active()) == 1 and not sim.violations
