"""The Primary's compiled serve loop answers a write only once every peer acknowledged it
(protocols B and C) — judged by fio's verify state after the link to the Secondary is cut
mid-write and the Primary is killed before anyone notices the cut.

With the loop switched (test-only, ``HASTACK_BLOCKREPL_TEST_ANSWER_EARLY``) to answer as soon
as a write is written locally and handed to the socket, the writes acknowledged after the cut
sit in a kernel buffer that never reaches the Secondary, and the judge must FAIL: proof that the
test sees the mechanism it guards.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import blockrepl_fio as fio
from harness.blockrepl_cluster import Cluster, cluster, wait_for
from harness.blockrepl_netns import Mesh, netns_mesh

PER_JOB = 16 << 20


@pytest.fixture
def mesh2() -> Iterator[Mesh]:
    with netns_mesh(2) as m:
        yield m


@pytest.mark.parametrize("early", [False, True], ids=["as-built", "answering-early"])
def test_a_cut_link_then_a_dead_primary_loses_no_acknowledged_write(tmp_path: Path, mesh2: Mesh, early: bool) -> None:
    net = {"pingInterval": "500ms", "pingTimeout": "4s"}  # nobody notices the cut before the kill
    c = Cluster(tmp_path, 2, size=fio.JOBS * PER_JOB, protocol="C", net=net, netns=mesh2.names,
                peer_address=lambda of, frm: f"{mesh2.address(of, frm)}:7788")  # fmt: skip
    if early:
        c[0].env["HASTACK_BLOCKREPL_TEST_ANSWER_EARLY"] = "1"
    try:
        c.start()
        c.wait_connected()
        c[0].call("primary")
        writer = fio.start_write(tmp_path / "fio", c[0].nbd_uri, PER_JOB)
        wait_for(lambda: c[0].status()["counters"]["served_batches"] > 500, 60, "the serve loop writing")
        mesh2.set_link(0, 1, up=False)
        cut = c[0].status()["counters"]["writes"]
        if early:  # writes go on: acknowledged, never delivered
            wait_for(lambda: c[0].status()["counters"]["writes"] - cut > 200, 30, "writes after the cut")
        else:  # every job waits for a write the peer never acknowledges
            wait_for(lambda: c[0].peer(1)["unacked_bytes"] >= fio.JOBS * 4096, 30, "every job waiting on the peer")
        after = c[0].status()["counters"]["writes"] - cut
        c[0].kill()
        out = writer.communicate(timeout=60)[0]
        assert writer.returncode != 0, "fio finished its pass before the kill: the test proves nothing\n" + out[-800:]
        wait_for(lambda: c[1].peer(0)["connection"] == "Connecting", 30, "node 1 to see node 0 gone")
        assert c[1].call("primary")["role"] == "Primary"
        res = fio.verify(tmp_path / "fio", c[1].nbd_uri, PER_JOB)
        if early:
            assert res.returncode != 0, "writes were acknowledged before the peer had them, yet the judge passed"
        else:
            assert after <= fio.JOBS * 2, f"{after} writes started after the cut"  # (in flight then, unanswered)
            assert res.returncode == 0, res.stdout[-3000:]
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.stop()



def test_demotion_after_the_serve_loop_finds_nothing_in_flight(tmp_path: Path) -> None:
    """The loop answers writes the engine does not see: it must leave the engine idle (a demotion
    waits for in-flight writes, up to its drain timeout, and counts a timeout)."""
    with cluster(tmp_path, 2, size=64 << 20, protocol="C") as c:
        c.wait_connected()
        c[0].call("primary")
        subprocess.run(
            ["fio", "--name=w", "--ioengine=nbd", f"--uri={c[0].nbd_uri}", "--rw=randwrite", "--bs=4k",
             "--iodepth=16", "--size=16M", "--io_size=16M"], check=True, capture_output=True, cwd=tmp_path,
        )  # fmt: skip
        st = c[0].status()
        assert st["counters"]["served_batches"] > 0 and st["in_flight"] == 0
        c[0].call("secondary", timeout=30)
        assert c[0].status()["counters"]["drain_timeouts"] == 0
