"""Real NBD clients against a 2-replica volume: capabilities, data identical on both replicas,
refusals that explain, the heartbeat deadline, and malformed input."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.blockrepl_cluster import Cluster, cluster, try_call, wait_for
from hastack_blockrepl import nbdproto as P

SIZE = 32 << 20


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster(tmp_path_factory.mktemp("pair"), 2, size=SIZE, metrics=True) as c:
        c.wait_connected()
        c[0].call("primary")
        yield c


def run(*argv: str, timeout: float = 60, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd)
    assert res.returncode == 0, f"{argv}: {res.stdout}\n{res.stderr}"
    return res


def same_on_both(c: Cluster) -> None:
    wait_for(lambda: c[0].status()["in_flight"] == 0, 10, "no write in flight")
    assert c[0].data_hash(SIZE) == c[1].data_hash(SIZE)


def test_nbdinfo_reports_capabilities(pair: Cluster) -> None:
    info = json.loads(run("nbdinfo", "--json", pair[0].nbd_uri).stdout)
    exp = info["exports"][0]
    for cap in ("can_flush", "can_fua", "can_trim", "can_zero"):
        assert exp[cap] is True, cap
    assert exp["export-size"] == SIZE and info["protocol"] == "newstyle-fixed"


def test_qemu_io_nbdcopy_fio_data_identical_on_both_replicas(pair: Cluster, tmp_path: Path) -> None:
    c = pair
    run("qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 3M", "-c", "write -z 1M 512k", "-c", "discard 2M 64k",
        "-c", "write -P 0x11 -f 5M 8k", "-c", "flush", "-c", "read -P 0x5a 0 1M", c[0].nbd_uri)  # fmt: skip
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(4 << 20))
    run("nbdcopy", "--flush", str(src), c[0].nbd_uri)
    run("fio", "--name=w", "--ioengine=nbd", f"--uri={c[0].nbd_uri}", "--rw=randwrite", "--bs=4k",
        "--iodepth=16", "--size=8M", "--offset=16M", "--verify=crc32c", "--do_verify=1", cwd=tmp_path)  # fmt: skip
    same_on_both(c)
    back = tmp_path / "back.bin"
    run("nbdcopy", c[0].nbd_uri, str(back))
    assert back.read_bytes()[: 4 << 20] == src.read_bytes()
    assert c[0].status()["counters"]["flushes"] >= 2


def test_secondary_refuses_nbd_with_reason(pair: Cluster) -> None:
    """GO is refused with NBD_REP_ERR_POLICY and a message (libnbd shows it in its debug log)."""
    env = dict(os.environ, LIBNBD_DEBUG="1")
    res = subprocess.run(["nbdinfo", pair[1].nbd_uri], capture_output=True, text=True, timeout=30, env=env)
    assert res.returncode != 0
    assert "replica 1 of r0 is Secondary: only the Primary serves NBD" in res.stderr


def test_unsafe_role_changes_refused_with_reasons(pair: Cluster) -> None:
    c = pair
    ok, msg = try_call(c[1], "primary")
    assert not ok and "node 0" in msg and "Primary" in msg
    s = _raw_client(c[0].nbd)  # an open NBD client
    try:
        wait_for(lambda: c[0].status()["nbd_clients"] >= 1, 10, "client counted")
        ok, msg = try_call(c[0], "secondary")
        assert not ok and "NBD client" in msg and "--force" in msg
    finally:
        s.close()
    ok, msg = try_call(c[1], "outdate")
    assert not ok and "connected to Primary" in msg


def test_deadline_lapse_holds_writes_until_refreshed(pair: Cluster) -> None:
    c = pair
    st = c[0].call("deadline", seconds=0.3)
    assert st["armed"] and not st["lapsed"]
    assert c[0].call("deadline", seconds=0)["armed"] is False  # 0 disarms
    c[0].call("deadline", seconds=0.3)
    wait_for(lambda: c[0].status()["deadline"]["lapsed"], 10, "deadline to lapse")
    writer = subprocess.Popen(["qemu-io", "-f", "raw", "-c", "write -P 0x77 0 4k", c[0].nbd_uri],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        wait_for(lambda: c[0].status()["held_requests"] >= 1, 20, "the write to be held")
        assert writer.poll() is None, "a write was acknowledged after the deadline lapsed"
        assert any("deadline" in s for s in c[0].status()["suspended"])
        c[0].call("deadline", seconds=30)
        assert writer.wait(30) == 0
    finally:
        writer.kill()
        c[0].call("deadline", seconds=0)
    assert not c[0].status()["deadline"]["armed"]


def _raw_client(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(path)
    s.recv(18)
    s.sendall(struct.pack(">I", 3))
    name = b"r0"
    s.sendall(struct.pack(">QII", P.IHAVEOPT, P.OPT_GO, 6 + len(name)) + struct.pack(">I", len(name)) + name + b"\0\0")
    got = b""
    while not got.endswith(struct.pack(">QII", P.OPT_REPLY_MAGIC, P.OPT_GO, P.REP_ACK) + b"\0\0\0\0"):
        chunk = s.recv(4096)
        assert chunk, "server closed during GO"
        got += chunk
    return s


def _closed(s: socket.socket) -> bool:
    try:
        while True:
            if not s.recv(65536):
                return True
    except TimeoutError:
        return False
    except OSError:
        return True


def test_malformed_requests_get_errors_or_a_clean_disconnect(pair: Cluster) -> None:
    c = pair
    before = c[0].data_hash(SIZE)
    s = _raw_client(c[0].nbd)
    s.sendall(P.REQ.pack(P.REQUEST_MAGIC, 0, P.CMD_READ, 1, SIZE - 1, 2))  # out of range read
    assert struct.unpack(">IIQ", s.recv(16)) == (P.SIMPLE_REPLY_MAGIC, P.EINVAL, 1)
    s.sendall(P.REQ.pack(P.REQUEST_MAGIC, 0, P.CMD_WRITE, 2, SIZE, 4) + b"abcd")  # beyond the end
    assert struct.unpack(">IIQ", s.recv(16)) == (P.SIMPLE_REPLY_MAGIC, P.ENOSPC, 2)
    s.sendall(P.REQ.pack(P.REQUEST_MAGIC, 0, P.CMD_WRITE, 3, 0, P.MAX_REQUEST + 1))  # oversize: disconnect
    assert _closed(s)
    s = _raw_client(c[0].nbd)
    s.sendall(P.REQ.pack(0xBADBAD, 0, P.CMD_WRITE, 4, 0, 4) + b"evil")  # wrong magic: disconnect
    assert _closed(s)
    s = _raw_client(c[0].nbd)
    s.sendall(P.REQ.pack(P.REQUEST_MAGIC, 0, P.CMD_WRITE, 5, 0, 4096)[:20])  # truncated, then gone
    s.close()
    assert c[0].running and c[0].data_hash(SIZE) == before


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(min_size=1, max_size=200))
def test_fuzzed_transmission_never_crashes_or_changes_a_block(pair: Cluster, garbage: bytes) -> None:
    """Random bytes after a valid handshake (writes excluded by the magic check of every frame)."""
    c = pair
    if garbage[:4] == struct.pack(">I", P.REQUEST_MAGIC):
        garbage = b"\0" + garbage
    writes = c[0].status()["counters"]["writes"]
    s = _raw_client(c[0].nbd)
    s.settimeout(0.2)
    s.sendall(garbage)
    _closed(s)
    s.close()
    assert c[0].running
    assert c[0].status()["counters"]["writes"] == writes


def test_cli_status_and_refusal_read_like_drbd(pair: Cluster) -> None:
    cli = [sys.executable, "-m", "hastack_blockrepl"]
    out = run(*cli, "status", "--socket", pair[0].ctl).stdout
    lines = out.splitlines()
    assert lines[0].startswith("r0 node-id:0 role:Primary disk:UpToDate")
    assert "node1 node-id:1 connection:Connected role:Secondary" in lines[1]
    assert "replication:Established peer-disk:UpToDate" in lines[2]
    res = subprocess.run([*cli, "primary", "--socket", pair[1].ctl], capture_output=True, text=True, timeout=30)
    assert res.returncode == 1 and "refusing to become Primary: node 0 (node0) is Primary" in res.stderr


def test_metrics_endpoint_passes_promtool(pair: Cluster, tmp_path: Path) -> None:
    url = f"http://{pair[0].cfg['metrics']['listen']}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    for name in ("hastack_blockrepl_role", "hastack_blockrepl_disk_state", "hastack_blockrepl_connection_state",
                 "hastack_blockrepl_out_of_sync_bytes", "hastack_blockrepl_request_seconds_bucket",
                 "hastack_blockrepl_auth_failures_total", "hastack_blockrepl_protocol_a_lag_bytes"):  # fmt: skip
        assert name in text, name
    assert 'hastack_blockrepl_role{resource="r0",role="Primary"} 1.0' in text
    (tmp_path / "m.txt").write_text(text)
    res = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr


def test_events_stream_reports_connection_changes(pair: Cluster) -> None:
    c = pair
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(20)
    s.connect(c[0].ctl)
    s.sendall(b'{"cmd": "events"}\n')
    f = s.makefile("r")
    assert json.loads(f.readline())["result"] == "streaming"
    c[0].call("disconnect", peer=1)
    c[0].call("connect", peer=1)
    seen: list[str] = []
    while "sync-decision" not in seen:
        seen.append(json.loads(f.readline())["event"])
    s.close()
    assert "peer-standalone" in seen and "peer-connected" in seen
    c.wait_connected()
