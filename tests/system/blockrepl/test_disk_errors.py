"""I/O errors under the Primary's disk (nbdkit's error filter, exposed through nbdfuse + loop as
the backing device): it detaches (Diskless), keeps serving through its UpToDate peer, and fio
finds every acknowledged write when it reads the whole pass back."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from harness.blockrepl_cluster import Cluster, make_disk, wait_for
from hastack_common.expose import expose, unexpose

SIZE = 32 << 20


@pytest.mark.parametrize("policy", ["detach", "pass-on"])
def test_primary_disk_errors_detach_and_serve_through_the_peer(tmp_path: Path, policy: str) -> None:
    """Every request to the disk fails (``detach``); or only its writes, which a page-cache
    write never sees: they surface as a failed ``fdatasync``, and that detaches under
    ``pass-on`` too (which blocks were lost is unknown, so no bitmap could name them)."""
    c = Cluster(tmp_path, 2, size=SIZE)
    trigger = tmp_path / "fail-now"
    img = make_disk(tmp_path / "faulty.img", SIZE + (4 << 20))
    sock = tmp_path / "faulty.sock"
    faults = (["error-rate=100%", f"error-file={trigger}"] if policy == "detach"
              else ["error-pwrite-rate=100%", f"error-pwrite-file={trigger}"])  # fmt: skip
    nbdkit = c.sup.start("nbdkit-error", ["nbdkit", "-f", "-U", sock, "--filter=error", "file", img, *faults])
    work = tmp_path / "faulty-dev"
    try:
        wait_for(sock.exists, 30, "nbdkit socket")
        dev = asyncio.run(expose(f"nbd+unix:///?socket={sock}", str(work)))
        c[0].cfg["disk"].update(path=dev.device, onIoError=policy)
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


def _qemu_write(uri: str, pattern: int, offset: int, length: int) -> str:
    res = subprocess.run(["qemu-io", "-f", "raw", "-c", f"write -P {pattern:#x} {offset} {length}", uri],
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    return res.stdout + res.stderr


def test_pass_on_answers_eio_and_marks_what_the_peer_got(tmp_path: Path) -> None:
    """``onIoError: pass-on``: the Primary's disk refuses a write (a sparse backing file on a full
    file system: ENOSPC, at once) after the write went to the peer. The client gets the error,
    the disk stays attached, and the range is marked out of sync with the peer — which holds
    the new data — so the next connect resyncs it from the Primary and the replicas agree."""
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE + (8 << 20)}", "tmpfs", str(small)], check=True)
    c = Cluster(tmp_path, 2, size=SIZE)
    try:
        img = small / "sparse.img"
        with open(img, "wb") as f:
            f.truncate(SIZE)
        c[0].cfg["disk"] = {"path": str(img), "metadata": str(tmp_path / "meta0.img"), "onIoError": "pass-on"}
        c.start()
        c.wait_connected()
        c[0].call("primary")
        assert "wrote" in _qemu_write(c[0].nbd_uri, 0x11, 0, 64 << 10)  # the extent is active, space allocated
        st = os.statvfs(small)
        with open(small / "filler", "wb") as f:
            os.posix_fallocate(f.fileno(), 0, st.f_bavail * st.f_frsize)  # the file system is full now
        out = _qemu_write(c[0].nbd_uri, 0x22, 1 << 20, 64 << 10)
        assert "Input/output error" in out, out
        st0 = c[0].status()
        assert st0["disk"] == "UpToDate" and st0["counters"]["io_errors"] >= 1  # pass-on: still attached
        assert c[0].peer(1)["out_of_sync_bytes"] == 64 << 10
        with open(c[1].disk, "rb") as f:  # the peer wrote what it was sent
            f.seek(1 << 20)
            assert f.read(64 << 10) == b"\x22" * (64 << 10)
        (small / "filler").unlink()
        c[0].call("disconnect")
        c[0].call("connect")
        c.wait_connected(60)
        wait_for(lambda: c[0].peer(1)["out_of_sync_bytes"] == 0, 30, "the marked range resynced")
        assert c[0].data_hash(SIZE) == c[1].data_hash(SIZE), "the replicas still differ after the resync"
    finally:
        c.stop()
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_a_sync_targets_disk_failing_mid_resync_detaches_it(tmp_path: Path) -> None:
    """The SyncTarget's own disk fails under the resync (its reads: the target reads every run
    to send its checksum): it detaches (Diskless) instead of failing the same resync at every
    reconnect, stays connected as a Diskless peer, and the Primary keeps serving and marks what
    it misses. (Failed *writes* take the same path, but through nbdfuse and a loop device this
    kernel takes about a minute to fail an O_DSYNC write, so the test fails reads.)"""
    c = Cluster(tmp_path, 2, size=SIZE)
    trigger = tmp_path / "fail-now"
    img = make_disk(tmp_path / "faulty.img", SIZE + (4 << 20))
    sock = tmp_path / "faulty.sock"
    nbdkit = c.sup.start("nbdkit-error", ["nbdkit", "-f", "-U", sock, "--filter=error", "file", img,
                                          "error-pread-rate=100%", f"error-pread-file={trigger}"])  # fmt: skip
    work = tmp_path / "faulty-dev"
    try:
        wait_for(sock.exists, 30, "nbdkit socket")
        dev = asyncio.run(expose(f"nbd+unix:///?socket={sock}", str(work)))
        c[1].cfg["disk"]["path"] = dev.device
        c.start()
        c.wait_connected()
        c[0].call("primary")
        c[1].call("disconnect")
        wait_for(lambda: c[0].peer(1)["connection"] != "Connected", 20, "node 0 to lose node 1")
        assert "wrote" in _qemu_write(c[0].nbd_uri, 0x33, 8 << 20, 8 << 20)  # extents node 1 never saw
        trigger.touch()  # node 1's disk fails from now on
        c[1].call("connect")
        wait_for(lambda: c[1].status()["disk"] == "Diskless", 60, "the SyncTarget to detach")
        assert c[1].running and c[1].status()["counters"]["io_errors"] >= 1
        wait_for(lambda: c[0].peer(1)["peer_disk"] == "Diskless" and c[0].peer(1)["replication"] == "Established",
                 30, "node 0 to see node 1 connected and Diskless")  # fmt: skip
        assert "wrote" in _qemu_write(c[0].nbd_uri, 0x44, 0, 1 << 20)  # the Primary keeps serving
        assert c[0].peer(1)["out_of_sync_bytes"] >= 9 << 20
    finally:
        c.stop()
        trigger.unlink(missing_ok=True)
        asyncio.run(unexpose(str(work)))
        nbdkit.stop()
