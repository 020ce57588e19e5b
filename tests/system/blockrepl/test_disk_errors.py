"""I/O errors under the Primary's disk (nbdkit's error filter, exposed through nbdfuse + loop as
the backing device): it detaches (Diskless), keeps serving through its UpToDate peer, and fio
finds every acknowledged write when it reads the whole pass back."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from harness.blockrepl_cluster import Cluster, make_disk, wait_for
from hastack_common.expose import expose, unexpose

SIZE = 32 << 20


def test_primary_disk_errors_detach_and_serve_through_the_peer(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 2, size=SIZE)
    trigger = tmp_path / "fail-now"
    img = make_disk(tmp_path / "faulty.img", SIZE + (4 << 20))
    sock = tmp_path / "faulty.sock"
    nbdkit = c.sup.start("nbdkit-error", ["nbdkit", "-f", "-U", sock, "--filter=error", "file", img,
                                          "error-rate=100%", f"error-file={trigger}"])  # fmt: skip
    work = tmp_path / "faulty-dev"
    try:
        wait_for(sock.exists, 30, "nbdkit socket")
        dev = asyncio.run(expose(f"nbd+unix:///?socket={sock}", str(work)))
        c[0].cfg["disk"]["path"] = dev.device
        c.start()
        c.wait_connected()
        c[0].call("primary")
        writer = subprocess.Popen(
            ["fio", "--name=j", "--ioengine=nbd", f"--uri={c[0].nbd_uri}", "--rw=randwrite", "--bs=4k",
             "--iodepth=1", "--numjobs=4", "--size=4M", "--offset_increment=4M", "--fsync=16",
             "--verify=crc32c", "--do_verify=1", "--group_reporting"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        wait_for(lambda: c[0].status()["counters"]["writes"] > 300, 60, "writes before the fault")
        trigger.touch()  # every request to the Primary's disk fails from now on
        wait_for(lambda: c[0].status()["disk"] == "Diskless", 60, "the Primary to detach")
        out = writer.communicate(timeout=180)[0]
        assert writer.returncode == 0, out[-3000:]  # every write acknowledged, all read back (via node 1)
        st = c[0].status()
        assert st["role"] == "Primary" and st["counters"]["io_errors"] >= 1
        assert c[1].status()["disk"] == "UpToDate"
        assert c[0].peer(1)["replication"] == "Established"
    finally:
        c.stop()
        trigger.unlink(missing_ok=True)
        asyncio.run(unexpose(str(work)))
        nbdkit.stop()


def test_admin_detach_and_attach_of_a_secondary(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 2, size=SIZE)
    try:
        c.start()
        c.wait_connected()
        c[0].call("primary")
        c[1].call("detach")
        wait_for(lambda: c[0].peer(1)["peer_disk"] == "Diskless", 20, "node 0 to see node 1 Diskless")
        res = subprocess.run(["qemu-io", "-f", "raw", "-c", "write -P 0x44 0 2M", c[0].nbd_uri],
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert res.returncode == 0
        assert c[0].peer(1)["out_of_sync_bytes"] == 2 << 20  # not replicated to a Diskless peer
        c[1].call("attach")
        c.wait_connected(60)
        assert c[1].status()["disk"] == "UpToDate"
        assert c[0].data_hash(SIZE) == c[1].data_hash(SIZE)
    finally:
        c.stop()
