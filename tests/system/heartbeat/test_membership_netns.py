"""Real heartbeat processes in network namespaces: membership, authentication, replay defence.

These run with ``--no-lease`` (membership only, nobody becomes active); arbitration with a real
API server is in test_failover_*.py.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from harness.heartbeat_net import HeartbeatNet
from harness.procs import wait_for
from hastack_heartbeat import wire
from hastack_heartbeat.events import Packet

FAST = {"keepalive": "200ms", "warnTime": "600ms", "deadTime": "1200ms", "initDead": "3s",
        "renewDeadline": "3s", "leaseDuration": "4s"}


def all_alive(net: HeartbeatNet, names: list[str]) -> bool:
    for a in names:
        st = net.members[a].status()
        if any(st["peers"][b]["state"] != "alive" for b in names if b != a):
            return False
    return True


def test_members_join_link_down_warn_dead_and_back(hbnet: Callable[..., HeartbeatNet]) -> None:
    net = hbnet(n=3, timing=FAST)
    for name in net.members:
        net.start(name, "--no-lease")
    names = list(net.members)
    wait_for(lambda: all_alive(net, names), 20, "three members alive to each other")
    m0 = net.members["web-0"]
    net.link("web-1", up=False)
    t0 = time.monotonic()
    wait_for(lambda: m0.peer_state("web-1") == "warn", 10, "web-1 warn on web-0")
    t_warn = time.monotonic() - t0
    wait_for(lambda: m0.peer_state("web-1") == "dead", 10, "web-1 dead on web-0")
    t_dead = time.monotonic() - t0
    assert 0.6 - 0.25 <= t_warn < t_dead  # warnTime, less the keepalive in flight
    assert t_dead >= 1.2 - 0.25
    assert m0.peer_state("web-2") == "alive"
    samples = m0.metrics()
    assert samples['hastack_heartbeat_peer_state{peer="web-1",state="dead"}'] == 1
    net.link("web-1", up=True)
    wait_for(lambda: all_alive(net, names), 20, "web-1 back")


def test_a_peer_with_the_wrong_secret_never_joins(hbnet: Callable[..., HeartbeatNet]) -> None:
    net = hbnet(n=3, timing=FAST)
    net.members["web-2"].secret.write_bytes(b"not the cluster secret, but long enough")
    for name in net.members:
        net.start(name, "--no-lease")
    wait_for(lambda: all_alive(net, ["web-0", "web-1"]), 20, "web-0 and web-1 alive")
    m0 = net.members["web-0"]
    deadline = time.monotonic() + 4.0  # beyond initDead: web-2 is dead, never alive
    while time.monotonic() < deadline:
        assert m0.peer_state("web-2") in ("init", "dead")
        assert net.members["web-2"].peer_state("web-0") in ("init", "dead")
        time.sleep(0.2)
    assert m0.peer_state("web-2") == "dead"
    assert m0.metrics()['hastack_heartbeat_bad_packets_total{reason="bad_mac"}'] > 5


def test_forged_replayed_truncated_and_stale_packets_are_dropped_and_counted(
        hbnet: Callable[..., HeartbeatNet]) -> None:
    net = hbnet(n=2, timing=FAST)
    m0, _ = (net.start(name, "--no-lease") for name in net.members)
    wait_for(lambda: all_alive(net, ["web-0", "web-1"]), 20, "both alive")
    epoch = int(m0.status()["peers"]["web-1"]["epoch"])
    secret = net.cluster_secret

    def pkt(**kw: int) -> bytes:
        fields = {"epoch": epoch, "seq": 1, **kw}
        return wire.encode(Packet(kind="hb", src="web-1", dst="web-0", **fields), "web", secret)

    forged = bytearray(pkt(seq=10**12))
    forged[-1] ^= 0xFF
    sends = {
        "bad_mac": bytes(forged),
        "replay": pkt(seq=1),  # an old sequence number of web-1's current boot
        "stale_epoch": pkt(epoch=epoch - 1, seq=10**12),
        "truncated": pkt(seq=10**12)[:30],
        "wrong_cluster": wire.encode(Packet(kind="hb", src="web-1", dst="web-0", epoch=epoch, seq=10**12),
                                     "db", secret),
    }
    before = m0.metrics()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # from the host, over the bridge
        for data in sends.values():
            for _ in range(3):
                s.sendto(data, (m0.ip, 694))

    def counted() -> bool:
        after = m0.metrics()
        key = 'hastack_heartbeat_bad_packets_total{{reason="{}"}}'
        return all(after[key.format(r)] - before[key.format(r)] >= 3 for r in sends)

    wait_for(counted, 10, "every bad packet counted by reason")
    # the forged packet with a huge sequence number did not poison web-1's sequence: still alive
    time.sleep(1.5)
    assert m0.peer_state("web-1") == "alive"
