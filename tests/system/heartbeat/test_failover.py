"""Failover against a real API server: member pods on kwok nodes, heartbeats between namespaces.

An independent observer samples every member's state file (what the start gates obey) every
10 ms on this machine's shared monotonic clock, and records any instant with two members allowed
to serve. Timings are the defaults (keepalive 500ms, deadTime 3s, Lease 4s / renew 1s / deadline 3s).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.controlplane import ControlPlane
from harness.heartbeat_cluster import ApiAddress, Observer, cluster_view
from harness.heartbeat_gate import build_gate
from harness.heartbeat_net import HeartbeatNet
from harness.procs import wait_for
from hastack_common import ctlsock

# Correctness bound (not the performance target): the Lease expires in the standby's observation
# up to one renewPeriod after the holder's last renewal, plus a poll, plus agents and 3 s of margin
# for two noisy cores.
FAILOVER_BOUND = 4.0 + 2 * 1.0 + 3.0


def roles(net: HeartbeatNet) -> dict[str, str]:
    out = {}
    for name, mem in net.members.items():
        if mem.child is not None and mem.child.running():
            out[name] = mem.status()["role"]
    return out


def actives(net: HeartbeatNet) -> list[str]:
    return sorted(n for n, r in roles(net).items() if r == "active")


def start_all(net: HeartbeatNet, *args: str) -> str:
    for name in net.members:
        net.start(name, *args)
    active = wait_for(lambda: len(a := actives(net)) == 1 and a[0], 30, "one active member")
    # a steady state: every member has heard every other (one never heard stays "init" for initDead)
    wait_for(lambda: all(st == "alive" for n in net.members
                         for st in (p["state"] for p in net.members[n].status()["peers"].values())),
             15, "every member alive to every other")
    return active


def agree(cp: object, net: HeartbeatNet, active: str) -> None:
    def check() -> bool:
        v = cluster_view(cp, net)  # type: ignore[arg-type]
        return v.holder == active and v.labelled == [active] and v.statuses.get(active) == "active"

    wait_for(check, 15, f"Lease, pod label and member status agreeing on {active}")


def test_sigkill_of_the_active_two_and_three_members(hbcluster: Callable[..., HeartbeatNet],
                                                     hb_api: tuple[object, object]) -> None:
    _, cp = hb_api
    for n in (2, 3):
        net = hbcluster(n=n, prefix=f"kill{n}")
        with Observer(net) as obs:
            old = start_all(net)
            agree(cp, net, old)
            net.kill(old)
            t0 = time.monotonic()
            new = wait_for(lambda net=net: len(a := actives(net)) == 1 and a[0], FAILOVER_BOUND + 5,
                           "a new active")
            took = time.monotonic() - t0
            assert new != old
            assert took <= FAILOVER_BOUND, f"failover took {took:.1f}s"
            agree(cp, net, new)
            time.sleep(1.0)
            assert actives(net) == [new]
        assert not obs.overlaps, f"two members serving: {obs.overlaps[:3]}"
        assert obs.samples > 100
        net.close()


def test_partition_from_peers_but_not_api_keeps_one_active(hbcluster: Callable[..., HeartbeatNet]) -> None:
    net = hbcluster(n=3, prefix="peers")
    with Observer(net) as obs:
        old = start_all(net)
        others = [n for n in net.members if n != old]
        # every peer has heard the active (a never-heard member stays "init" until initDead)
        wait_for(lambda: all(net.members[o].peer_state(old) == "alive" for o in others), 10, "peers hear it")
        net.isolate_from_peers(old)
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            assert actives(net) == [old]
            time.sleep(0.25)
        seen = {o: net.members[o].peer_state(old) for o in others}
        assert set(seen.values()) == {"dead"}, seen
    assert not obs.overlaps


def test_partition_from_api_only_is_no_failover(hbcluster: Callable[..., HeartbeatNet],
                                               hb_api: tuple[object, object]) -> None:
    addr, _ = hb_api
    net = hbcluster(n=2, prefix="apionly")
    with Observer(net) as obs:
        old = start_all(net)
        net.drop(old, [f"ip daddr {addr.ip}"])  # type: ignore[attr-defined]
        deadline = time.monotonic() + 8  # > leaseDuration + renewDeadline
        while time.monotonic() < deadline:
            assert actives(net) == [old], "peer acknowledgements must keep the active in place"
            time.sleep(0.25)
        assert net.members[old].status()["lease"]["apiReachable"] is False
        net.drop(old, [])
        wait_for(lambda: net.members[old].status()["lease"]["apiReachable"], 10, "API reachable again")
        assert actives(net) == [old]
    assert not obs.overlaps


def test_api_down_for_everyone_is_no_failover_and_no_flapping(hbcluster: Callable[..., HeartbeatNet],
                                                             hb_api: tuple[object, object]) -> None:
    addr, _ = hb_api
    net = hbcluster(n=2, prefix="apiall")
    old = start_all(net)
    before = net.members[old].metrics()
    for name in net.members:
        net.drop(name, [f"ip daddr {addr.ip}"])  # type: ignore[attr-defined]
    time.sleep(8)
    for name in net.members:
        net.drop(name, [])
    time.sleep(3)
    assert actives(net) == [old]
    after = net.members[old].metrics()
    assert after['hastack_heartbeat_role{role="demoting"}'] == 0
    key = 'hastack_heartbeat_lease_renew_failures_total'
    assert after[key] > before[key], "the test must really have cut the API server off"


def test_partition_from_both_demotes_before_the_lease_can_expire(hbcluster: Callable[..., HeartbeatNet],
                                                                 hb_api: tuple[object, object]) -> None:
    addr, _ = hb_api
    net = hbcluster(n=2, prefix="both")
    with Observer(net) as obs:
        old = start_all(net)
        net.drop(old, [f"ip daddr {addr.ip}"] + [f"ip daddr {m.ip}" for m in net.members.values()  # type: ignore[attr-defined]
                                                  if m.name != old])
        new = wait_for(lambda: [a for a in actives(net) if a != old], FAILOVER_BOUND + 5, "takeover")[0]
        wait_for(lambda: net.members[old].status()["role"] == "standby", 10, "old active demoted")
    assert not obs.overlaps
    old_end = max(t1 for who, _, t1 in obs.intervals if who == old)
    new_start = min(t0 for who, t0, _ in obs.intervals if who == new)
    margin = new_start - old_end
    assert margin > 0, f"the new active started {-margin:.3f}s before the old one stopped"


def test_observer_catches_two_actives_when_fencing_is_switched_off(
        hbcluster: Callable[..., HeartbeatNet], hb_api: tuple[object, object]) -> None:
    addr, _ = hb_api
    net = hbcluster(n=2, prefix="nofence")
    with Observer(net) as obs:
        old = start_all(net, "--test-disable-fencing")
        net.drop(old, [f"ip daddr {addr.ip}"] + [f"ip daddr {m.ip}" for m in net.members.values()  # type: ignore[attr-defined]
                                                  if m.name != old])
        wait_for(lambda: len(actives(net)) == 2, FAILOVER_BOUND + 5, "a second active (fencing off)")
        wait_for(lambda: obs.overlaps, 5, "the observer to see both serving")
    assert obs.overlaps


def test_switchover_has_no_moment_of_two_actives(hbcluster: Callable[..., HeartbeatNet],
                                                 hb_api: tuple[object, object]) -> None:
    _, cp = hb_api
    net = hbcluster(n=2, prefix="switch")
    with Observer(net) as obs:
        old = start_all(net)
        target = next(n for n in net.members if n != old)
        wait_for(lambda: net.members[old].status()["peers"][target]["state"] == "alive", 10, "target alive")
        t0 = time.monotonic()
        net.members[old].call("switchover", {"target": target})
        wait_for(lambda: actives(net) == [target], 10, "target active")
        took = time.monotonic() - t0
        agree(cp, net, target)
        # graceful termination of the (new) active hands back
        net.members[target].child.proc.terminate()  # type: ignore[union-attr]
        wait_for(lambda: actives(net) == [old], 10, "handed back on SIGTERM")
    assert took < 3.0, f"switchover took {took:.1f}s: it must not wait for deadTime"
    assert not obs.overlaps
    gaps = sorted(obs.intervals, key=lambda i: i[1])
    for (a, _, end), (b, start, _) in itertools.pairwise(gaps):
        assert start >= end, f"{b} started before {a} stopped"


def test_sigkill_of_heartbeat_stops_the_app_at_the_fence_deadline(
        hbcluster: Callable[..., HeartbeatNet], tmp_path: Path) -> None:
    gate = build_gate()
    net = hbcluster(n=2, prefix="sbd")
    old = start_all(net)
    apps = {}
    for name, mem in net.members.items():  # the gated app of each member, as in the member pod
        marker = tmp_path / f"{name}.running"
        apps[name] = net.sup.start(f"gate-{name}", [gate, "--state-dir", mem.run_dir, "--", "sh", "-c",
                                                    f"touch {marker}; trap 'rm -f {marker}; exit 0' TERM; "
                                                    "while :; do sleep 0.05; done"])
    wait_for((tmp_path / f"{old}.running").exists, 10, "the active's app started by its gate")
    assert not any((tmp_path / f"{n}.running").exists() for n in net.members if n != old)
    deadline = net.members[old].state_file()["fenceDeadline"]
    net.kill(old)  # heartbeat dies; its gate and app do not
    t_kill = time.monotonic()
    wait_for(lambda: not (tmp_path / f"{old}.running").exists(), 10, "the old app stopped")
    stopped = time.monotonic()
    assert stopped - t_kill <= 3.0 + 1.0, "the app must stop within the renew deadline"
    # it is the deadline that stops it: not before (the gate does not guess), and promptly after
    assert deadline - 0.05 <= stopped <= deadline + 1.0, (deadline, stopped)
    new = wait_for(lambda: [a for a in actives(net) if a != old], FAILOVER_BOUND + 5, "takeover")[0]
    wait_for((tmp_path / f"{new}.running").exists, 10, "the new active's app started")
    assert not (tmp_path / f"{old}.running").exists()


def test_switchover_by_annotation_is_cleared_and_recorded(hbcluster: Callable[..., HeartbeatNet],
                                                          hb_api: tuple[object, Any]) -> None:
    _, cp = hb_api
    net = hbcluster(n=2, prefix="annot")
    with Observer(net) as obs:
        old = start_all(net)
        target = next(n for n in net.members if n != old)
        wait_for(lambda: net.members[old].status()["peers"][target]["state"] == "alive", 10, "target alive")
        cp.kubectl("-n", net.namespace, "annotate", "hac", "annot", f"hastack.io/switchover={target}")
        wait_for(lambda: actives(net) == [target], 15, "target active")

    def cleared() -> bool:
        out = cp.kubectl("-n", net.namespace, "get", "hac", "annot", "-o",
                         "jsonpath={.metadata.annotations}").stdout
        return "hastack.io/switchover" not in out

    wait_for(cleared, 10, "the annotation cleared")
    events = cp.kubectl("-n", net.namespace, "get", "events", "-o",
                        "jsonpath={range .items[*]}{.reason} {.message}{'\\n'}{end}").stdout
    assert f"Switchover switchover from {old} to {target} done" in events
    assert not obs.overlaps


def test_failover_request_from_mon_moves_the_group(hbcluster: Callable[..., HeartbeatNet]) -> None:
    net = hbcluster(n=2, prefix="monreq")
    old = start_all(net)
    other = next(n for n in net.members if n != old)
    wait_for(lambda: net.members[old].status()["peers"][other]["state"] == "alive", 10, "standby alive")
    req = {"haCluster": "monreq", "reason": "alert: 3 consecutive failures (after=3)", "monitor": "ns/web",
           "probe": "http", "detail": "HTTP 503", "requestedAt": "2026-11-24T22:00:00Z"}
    with pytest.raises(ctlsock.ControlError, match="serves HACluster monreq, not another"):
        net.members[old].call("failover", {**req, "haCluster": "another"})
    with pytest.raises(ctlsock.ControlError, match="not active"):
        net.members[other].call("failover", req)
    reply = net.members[old].call("failover", req)
    assert reply["accepted"] is True
    wait_for(lambda: actives(net) == [other], 15, "the standby active after mon's request")
    st = net.members[old].status()
    assert st["failures"] == 1 and "failover requested" in st["reason"]
    samples = net.members[other].metrics()
    assert samples['hastack_heartbeat_failover_duration_seconds_count{phase="serving"}'] >= 1


def test_an_app_that_keeps_exiting_fails_the_group_over(hbcluster: Callable[..., HeartbeatNet],
                                                        tmp_path: Path) -> None:
    """The monitor operation checks the app through its gate: the active's app exits and does not
    run again for appDownAfter (here no kubelet restarts it) -> demote, count a failure, hand over."""
    gate = build_gate()
    net = hbcluster(n=2, prefix="appdn", extra={"failover": {"appDownAfter": "2s"}})
    old = start_all(net)
    (tmp_path / f"{old}.fail").touch()
    for name, mem in net.members.items():
        marker, fail = tmp_path / f"{name}.running", tmp_path / f"{name}.fail"
        net.sup.start(f"gate-{name}", [gate, "--state-dir", mem.run_dir, "--name", "app", "--", "sh", "-c",
                                       f"[ -e {fail} ] && exit 3; touch {marker}; "
                                       "while :; do sleep 0.05; done"])
    other = next(n for n in net.members if n != old)
    wait_for(lambda: actives(net) == [other], 2.0 + FAILOVER_BOUND, "the standby active after the app failed")
    st = net.members[old].status()
    assert st["failures"] == 1
    assert st["reason"].startswith("resource failed: app app exited 3"), st["reason"]
    wait_for((tmp_path / f"{other}.running").exists, 10, "the new active's app started by its gate")


# ---- timings reloaded online (DESIGN: changing timings never rolls pods): each member's file is
# rewritten in place, one after the other, as the kubelet updates a ConfigMap.

SLOW = {"warnTime": "3s", "deadTime": "6s", "leaseDuration": "7s", "renewDeadline": "5s"}


def rewrite(path: Path, **timing: str) -> None:
    cfg: dict[str, Any] = yaml.safe_load(path.read_text())
    cfg["timing"] = {**cfg.get("timing", {}), **timing}
    tmp = path.with_suffix(".new")
    tmp.write_text(yaml.safe_dump(cfg))
    os.replace(tmp, path)  # atomic, as the kubelet's ConfigMap update


def lease_duration(cp: ControlPlane, net: HeartbeatNet) -> int:
    out = cp.kubectl("-n", net.namespace, "get", "lease", net.prefix, "-o",
                     "jsonpath={.spec.leaseDurationSeconds}").stdout
    return int(out or 0)


def test_new_timings_apply_without_a_restart_and_govern_the_next_failover(
        hbcluster: Callable[..., HeartbeatNet], hb_api: tuple[ApiAddress, ControlPlane]) -> None:
    _, cp = hb_api
    net = hbcluster(n=2, prefix="reld")
    old = start_all(net)
    other = next(n for n in net.members if n != old)
    for name in (old, other):  # the active first: the order must not matter
        rewrite(net.members[name].config, **SLOW)
        wait_for(lambda name=name: net.members[name].status()["timings"]["deadTime"] == 6.0, 15,
                 f"{name} on the new timings")
    wait_for(lambda: lease_duration(cp, net) == 7, 15, "the holder writing the new leaseDuration")
    assert actives(net) == [old], "a reload is not a failover"
    time.sleep(1.0)  # let the standby acknowledge a few heartbeats under the new deadTime
    net.kill(old)
    t_kill = time.monotonic()
    wait_for(lambda: actives(net) == [other], 7.0 + FAILOVER_BOUND, "takeover on the new timings")
    took = time.monotonic() - t_kill
    # the last heartbeat the standby acknowledged left at most one keepalive before the kill, and
    # the standby promised 6 s from its arrival: not dead (so no takeover) before 5.5 s
    assert took >= 6.0 - 0.5, f"took {took:.2f}s: the old 3 s deadTime still applied"


def test_a_refused_change_is_reported_and_the_member_keeps_its_timings(
        hbcluster: Callable[..., HeartbeatNet], hb_api: tuple[ApiAddress, ControlPlane]) -> None:
    _, cp = hb_api
    net = hbcluster(n=2, prefix="relbad")
    old = start_all(net)
    mem = net.members[old]
    rewrite(mem.config, warnTime="4s", deadTime="3s")  # warnTime must be below deadTime

    def reported() -> bool:
        out = cp.kubectl("-n", net.namespace, "get", "events", "-o",
                         "jsonpath={range .items[*]}{.reason} {.message}{'\\n'}{end}").stdout
        return "ConfigRejected" in out and "warnTime" in out

    wait_for(reported, 20, "a ConfigRejected Event naming the field")
    st = mem.status()
    assert st["role"] == "active" and st["timings"]["deadTime"] == 3.0
