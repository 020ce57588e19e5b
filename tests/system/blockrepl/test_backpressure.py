"""Back-pressure under protocol A: with the Secondary frozen (SIGSTOP), acknowledged writes
queue for it only up to about `net.maxBuffer`; then the Primary stops reading client requests
and fio stalls. With a limit far above what fio writes, the queue grows past that bound —
the check can fail."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness.blockrepl_cluster import cluster, wait_for

SIZE = 256 << 20
BOUND = 16 << 20  # maxBuffer (4 MiB) plus what one socket read and fio's 8 MiB in flight can add


@pytest.mark.parametrize("max_buffer,bounded", [("4MiB", True), ("1GiB", False)])
def test_queue_for_a_frozen_peer_stays_bounded(tmp_path: Path, max_buffer: str, bounded: bool) -> None:
    net = {"pingTimeout": "60s", "pingInterval": "1s", "maxBuffer": max_buffer}
    with cluster(tmp_path, 2, size=SIZE, protocol="A", net=net) as c:
        c.wait_connected()
        c[0].call("primary")
        assert c[1].child is not None
        os.kill(c[1].child.pid, signal.SIGSTOP)
        fio = subprocess.Popen(
            ["fio", "--name=w", "--ioengine=nbd", f"--uri={c[0].nbd_uri}", "--rw=write", "--bs=1M",
             "--iodepth=8", f"--size={SIZE}", "--time_based", "--runtime=30"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
        )  # fmt: skip
        try:
            if bounded:  # fio stalls: no write completes for a while, and the queue is bounded
                wait_for(lambda: c[0].peer(1)["send_buffer_bytes"] >= 4 << 20, 60, "the queue to fill")
                last = {"n": -1, "since": time.monotonic()}

                def stalled() -> bool:  # no write completed for a whole second
                    n = c[0].status()["counters"]["writes"]
                    if n != last["n"]:
                        last["n"], last["since"] = n, time.monotonic()
                    return time.monotonic() - last["since"] >= 1.0

                wait_for(stalled, 60, "fio to stall behind the full queue")
                assert c[0].peer(1)["send_buffer_bytes"] <= BOUND
            else:  # nothing holds the client back below 1 GiB: the same bound is exceeded
                wait_for(lambda: c[0].peer(1)["send_buffer_bytes"] > BOUND, 60, "the queue to grow")
        finally:
            os.kill(c[1].child.pid, signal.SIGCONT)
            fio.kill()
            fio.wait(30)
