"""SIGKILL of the Primary mid-write, promotion of the Secondary, fio's verify state as the judge.

Protocols B and C promise that every write fio saw acknowledged is on the Secondary; the
judge must pass. Protocol A acknowledges after the local write only: with the Secondary
stalled (SIGSTOP) so that acknowledged writes pile up unsent, the same judge must FAIL —
proof that it can see a lost acknowledged write.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from harness import blockrepl_fio as fio
from harness.blockrepl_cluster import Cluster, cluster, wait_for

SIZE = 64 << 20
PER_JOB = 16 << 20  # 16 K writes per pass: still writing when the kill comes, even on an idle machine
STALL_PER_JOB = 32 << 20  # long enough that fio is still writing when the buffers fill


def _kill_and_promote(c: Cluster, writer: subprocess.Popen[str]) -> None:
    c[0].kill()
    out = writer.communicate(timeout=60)[0]
    assert writer.returncode != 0, "fio finished its pass before the kill: the test proves nothing\n" + out[-800:]
    wait_for(lambda: c[1].peer(0)["connection"] == "Connecting", 15, "node 1 to see node 0 gone")
    assert c[1].call("primary")["role"] == "Primary"


@pytest.mark.parametrize("protocol", ["C", "B"])
def test_sigkill_primary_mid_write_loses_no_acknowledged_write(tmp_path: Path, protocol: str) -> None:
    with cluster(tmp_path, 2, size=SIZE, protocol=protocol) as c:
        c.wait_connected()
        c[0].call("primary")
        writer = fio.start_write(tmp_path / "fio", c[0].nbd_uri, PER_JOB)
        wait_for(lambda: c[0].status()["counters"]["writes"] > 1500, 60, "fio to be well into its pass")
        assert c[0].status()["counters"]["write_batches"] > 0, "the judge must cover the write-batch path"
        _kill_and_promote(c, writer)
        assert len(fio.state_files(tmp_path / "fio")) == fio.JOBS
        for attempt in ("first", "second"):  # the verdict must not depend on an earlier verify
            res = fio.verify(tmp_path / "fio", c[1].nbd_uri, PER_JOB)
            assert res.returncode == 0, f"{attempt} verify:\n{res.stdout[-3000:]}"


@pytest.mark.parametrize("protocol,loses", [("A", True), ("B", False), ("C", False)])
def test_stalled_secondary_then_primary_killed(tmp_path: Path, protocol: str, loses: bool) -> None:
    """The Secondary freezes (SIGSTOP) while fio writes; then the Primary dies.

    A: writes were acknowledged from the local disk and sat unsent -> the judge catches the loss.
    B/C: nothing was acknowledged while the Secondary could not confirm -> the judge passes.
    """
    net = {"pingTimeout": "60s", "pingInterval": "1s"}
    with cluster(tmp_path, 2, size=fio.JOBS * STALL_PER_JOB, protocol=protocol, net=net) as c:
        c.wait_connected()
        c[0].call("primary")
        writer = fio.start_write(tmp_path / "fio", c[0].nbd_uri, STALL_PER_JOB, bs="64k")
        wait_for(lambda: c[0].status()["counters"]["writes"] > 100, 60, "fio writing")
        assert c[1].child is not None
        os.kill(c[1].child.pid, signal.SIGSTOP)
        try:
            if loses:
                wait_for(lambda: c[0].peer(1)["send_buffer_bytes"] > 1 << 20, 60,
                         "acknowledged writes queued unsent for the stalled peer")  # fmt: skip
            else:
                before = c[0].status()["counters"]["writes"]
                wait_for(lambda: c[0].peer(1)["unacked_bytes"] >= 64 << 10, 30, "writes waiting on the peer")
                assert c[0].status()["counters"]["writes"] - before <= fio.JOBS * 2
            c[0].kill()
        finally:
            os.kill(c[1].child.pid, signal.SIGCONT)
        writer.communicate(timeout=60)
        wait_for(lambda: c[1].peer(0)["connection"] == "Connecting", 15, "node 1 to see node 0 gone")
        c[1].call("primary")
        res = fio.verify(tmp_path / "fio", c[1].nbd_uri, STALL_PER_JOB, bs="64k")
        if loses:
            assert res.returncode != 0, "protocol A lost acknowledged writes, yet the judge passed"
        else:
            assert res.returncode == 0, res.stdout[-3000:]
