"""Faults one after another on two or three replicas in their own network namespaces, protocol
C or B, with resource-level fencing, each round's writes judged by fio's verify state (exact at
iodepth 1, see harness/blockrepl_fio.py): the Primary killed mid-write and a Secondary promoted,
a Secondary killed, a link cut and healed, a node restarted (a new boot id), every node
restarted at once (a power cut), the Primary killed just after its link to one of two
Secondaries was cut (its last writes on the other only). Each round writes its own 1 MiB; after every fault every
earlier round is verified again on the Primary of the moment, and at the end every disk must
be identical.

The schedule comes from a seed: CI runs the fixed cases below; ``HASTACK_NEMESIS_SEEDS``
(comma-separated, or ``random:N``; each as C with 2 replicas, B with 2, C with 3) and
``HASTACK_NEMESIS_ROUNDS`` run others, for soaking.
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest

from harness import blockrepl_fio as fio
from harness.blockrepl_cluster import Cluster, Replica, cluster, fence_script, try_call, wait_for
from harness.blockrepl_netns import Mesh, netns_mesh

SIZE = 64 << 20
PER_JOB = 256 << 10  # four jobs: 1 MiB a round
ROUND = fio.JOBS * PER_JOB
FAULTS = ("kill-primary", "kill-secondary", "cut-link", "restart-primary-node", "restart-secondary-node", "power-cut",
          "kill-primary-cut-one")


def _cases() -> list[tuple[int, str, int]]:
    spec = os.environ.get("HASTACK_NEMESIS_SEEDS", "")
    if spec.startswith("random:"):
        seeds = [random.SystemRandom().randrange(1 << 30) for _ in range(int(spec.split(":")[1]))]
    else:
        seeds = [int(s) for s in spec.split(",") if s]
    return [(s, p, n) for s in seeds for p, n in (("C", 2), ("B", 2), ("C", 3))] or [
        (11, "C", 2), (23, "C", 2), (5, "B", 2), (17, "C", 3)
    ]  # fmt: skip


class Nemesis:
    def __init__(self, c: Cluster, mesh: Mesh, root: Path, rng: random.Random) -> None:
        self.c, self.mesh, self.root, self.rng = c, mesh, root, rng
        self.primary = 0
        self.rounds = 0
        self.boots = 0

    @property
    def p(self) -> Replica:
        return self.c[self.primary]

    def secondary(self) -> Replica:
        return self.rng.choice([r for r in self.c.replicas if r.node_id != self.primary])

    def verify_all(self, on: Replica, why: str) -> None:
        for r in range(self.rounds):
            res = fio.verify(self.root / f"round{r}", on.nbd_uri, PER_JOB, offset=r * ROUND)
            assert res.returncode == 0, f"round {r} after {why}, on node {on.node_id}:\n{res.stdout[-1500:]}"

    def start_round(self) -> subprocess.Popen[str]:
        before = self.p.status()["counters"]["writes"]
        writer = fio.start_write(self.root / f"round{self.rounds}", self.p.nbd_uri, PER_JOB, offset=self.rounds * ROUND)
        self.rounds += 1
        wait_for(lambda: self.p.status()["counters"]["writes"] - before >= 40 or writer.poll() is not None, 60,
                 "the round's writes under way")  # fmt: skip
        return writer

    def finish(self, writer: subprocess.Popen[str], must_succeed: bool) -> None:
        out, _ = writer.communicate(timeout=120)
        if must_succeed:
            assert writer.returncode == 0, out[-1500:]

    def restart(self, r: Replica, reboot: bool) -> None:
        if reboot:
            self.boots += 1
            r.env["HASTACK_BLOCKREPL_BOOT_ID"] = f"boot-{self.boots}"
        r.start()

    def wait_lost(self, by: Replica, peer: Replica) -> None:
        wait_for(lambda: by.peer(peer.node_id)["connection"] != "Connected", 20,
                 f"node {by.node_id} to see node {peer.node_id} gone")  # fmt: skip

    def failover(self, reboot: bool, cut_one: bool = False) -> None:
        """The Primary dies mid-write; its Established peer is promoted and holds every
        acknowledged write; the old Primary returns as Secondary. ``cut_one`` (three replicas):
        the Primary's link to one Secondary is cut just before, so its last writes reach the
        other only (the survivors must agree on them: the final hash comparison)."""
        writer = self.start_round()
        old, new = self.p, self.secondary()
        cut = None
        if cut_one and len(self.c.replicas) > 2:
            cut = self.rng.choice([r for r in self.c.replicas if r is not old])
            self.mesh.set_link(old.node_id, cut.node_id, up=False)
        old.kill()
        self.finish(writer, must_succeed=False)
        for r in self.c.replicas:
            if r is not old:
                self.wait_lost(r, old)
        # with three replicas the survivors first resync what the dead Primary had in flight:
        # a SyncTarget refuses promotion until that is done (heartbeat tries another member)
        wait_for(lambda: try_call(new, "primary")[0], 60, f"node {new.node_id} promotable")
        self.primary = new.node_id
        if cut is not None:
            self.mesh.set_link(old.node_id, cut.node_id, up=True)
        self.verify_all(new, "a failover")
        self.restart(old, reboot)

    def kill_secondary(self, reboot: bool) -> None:
        writer = self.start_round()
        s = self.secondary()
        s.kill()
        self.restart(s, reboot)  # the fence waits for it: writes resume once it is back
        self.finish(writer, must_succeed=True)

    def cut_link(self) -> None:
        """Cut just before the round: its first writes are in flight when the peer is declared
        lost, the Primary fences the peer (Outdated through its socket), then writes on (a third
        replica still reaches both)."""
        s = self.secondary()
        self.mesh.set_link(self.primary, s.node_id, up=False)
        writer = self.start_round()
        self.finish(writer, must_succeed=True)
        assert s.status()["disk"] == "Outdated"
        self.mesh.set_link(self.primary, s.node_id, up=True)

    def power_cut(self) -> None:
        writer = self.start_round()
        for r in self.c.replicas:
            r.kill()
        self.finish(writer, must_succeed=False)
        self.boots += 1
        for r in self.c.replicas:
            r.env["HASTACK_BLOCKREPL_BOOT_ID"] = f"boot-{self.boots}"
            r.start()
        wait_for(lambda: try_call(self.p, "primary")[0], 90, "the crashed Primary promotable again")

    def run(self, fault: str) -> None:
        if fault in ("kill-primary", "restart-primary-node", "kill-primary-cut-one"):
            self.failover(reboot=fault == "restart-primary-node", cut_one=fault == "kill-primary-cut-one")
        elif fault in ("kill-secondary", "restart-secondary-node"):
            self.kill_secondary(reboot=fault == "restart-secondary-node")
        elif fault == "cut-link":
            self.cut_link()
        else:
            self.power_cut()
        self.c.wait_connected(90)
        self.verify_all(self.p, fault)


@pytest.mark.parametrize("seed,protocol,replicas", _cases())
def test_every_acknowledged_write_survives_a_sequence_of_faults(
    tmp_path: Path, seed: int, protocol: str, replicas: int
) -> None:
    with netns_mesh(replicas) as mesh:
        faults(tmp_path, mesh, seed, protocol, replicas)


def faults(tmp_path: Path, mesh: Mesh, seed: int, protocol: str, replicas: int) -> None:
    rng = random.Random(seed)
    rounds = int(os.environ.get("HASTACK_NEMESIS_ROUNDS", "6"))
    schedule = [rng.choice(FAULTS) for _ in range(rounds)]
    net = {"pingInterval": "200ms", "pingTimeout": "1s"}
    address = lambda of, frm: f"{mesh.address(of, frm)}:7788"  # noqa: E731
    with cluster(tmp_path, replicas, size=SIZE, protocol=protocol, netns=mesh.names, net=net,
                 fence_cmd=fence_script(tmp_path), peer_address=address) as c:  # fmt: skip
        c.wait_connected()
        c[0].call("primary")
        n = Nemesis(c, mesh, tmp_path, rng)
        for i, fault in enumerate(schedule):
            try:
                n.run(fault)
            except BaseException as exc:
                where = f"seed {seed}, protocol {protocol}, step {i} ({fault}) of {schedule}"
                raise AssertionError(f"{where}: {exc}") from exc
        wait_for(lambda: n.p.status()["in_flight"] == 0, 10, "no write in flight")
        for r in c.replicas:
            assert r.data_hash(SIZE) == n.p.data_hash(SIZE), f"seed {seed}: node {r.node_id} differs after {schedule}"
