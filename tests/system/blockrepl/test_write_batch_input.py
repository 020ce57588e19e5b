"""Write batches from an authenticated Primary: a well-formed WRITES frame is written and
acknowledged; a malformed one (its MAC valid) closes the connection and changes no block.

The peer here is this test, speaking the wire protocol as node 1 after the real node 1 was
stopped: it authenticates with the shared secret, echoes node 0's state as a Primary with
the same data generation (so the decision is "no sync"), then sends WRITES frames.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.blockrepl_cluster import Cluster, closed_by_server, cluster, wait_for
from hastack_blockrepl import fastpath as F
from hastack_blockrepl import wire as W

SIZE = 16 << 20


class FakePrimary:
    def __init__(self, c: Cluster) -> None:
        secret = Path(c[0].cfg["net"]["secretFile"]).read_bytes().strip()
        host, port = c[0].cfg["net"]["listen"].rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=10)
        self.enc, self.dec = W.Encoder(None), W.Decoder(None)
        self.frames: list[W.Frame] = []
        mine = os.urandom(W.NONCE_LEN)
        self.send(W.HELLO, W.hello_payload(1, "r0", mine))
        hello = self.recv(W.HELLO)
        theirs, meta = W.parse_hello(hello.payload)
        version = W.negotiate([int(v) for v in meta["versions"]])
        assert version >= W.VERSION_BATCH
        self.recv(W.AUTH)
        self.send(W.AUTH, W.auth_response(secret, theirs, mine, 1, "r0"))
        nonces = {1: mine, 0: theirs}
        self.enc.set_key(W.direction_key(secret, 1, nonces, version), version)
        self.dec.set_key(W.direction_key(secret, 0, nonces, version), version)
        state = self.recv(W.STATE).json()
        self.send(W.STATE, json.dumps({**state, "role": "Primary", "changes": 0}).encode())
        self.send(W.BITMAP, bytes(SIZE // 4096 // 8), flags=W.F_LAST)
        decision = self.recv(W.DECIDE).json()
        assert decision["action"] == "none", decision
        self.send(W.DECIDE, json.dumps(decision).encode())

    def send(self, ftype: int, payload: bytes = b"", **kw: int) -> None:
        self.s.sendall(b"".join(bytes(p) for p in self.enc.encode(ftype, payload, **kw)))

    def recv(self, ftype: int) -> W.Frame:
        while True:
            for i, f in enumerate(self.frames):
                if f.type == ftype:
                    return self.frames.pop(i)
            data = self.s.recv(1 << 20)
            if not data:
                raise ConnectionError(f"closed while waiting for {W.NAMES[ftype]}")
            self.frames += list(self.dec.feed(data))


def batch(writes: list[tuple[int, bytes]]) -> bytes:
    head = [F.HEAD.pack(len(writes), 0)] + [F.ENTRY.pack(o, len(d), 0) for o, d in writes]
    return b"".join(head + [d for _, d in writes])


@pytest.fixture
def secondary(tmp_path: Path) -> Iterator[Cluster]:
    with cluster(tmp_path, 2, size=SIZE) as c:
        c.wait_connected()
        c[1].stop()
        wait_for(lambda: c[0].peer(1)["connection"] == "Connecting", 15, "node 0 to see node 1 gone")
        yield c


def test_a_batch_is_written_and_acknowledged_a_malformed_one_changes_nothing(secondary: Cluster) -> None:
    c = secondary
    peer = FakePrimary(c)
    wait_for(lambda: c[0].peer(1)["replication"] == "Established", 15, "the fake Primary established")
    good = [(0, b"a" * 4096), (SIZE - 4096, b"b" * 4096)]
    peer.send(W.WRITES, batch(good), id=7)
    acked = peer.recv(W.ACK_WRITES)
    assert W.unpack_ids(acked.payload) == (7,)
    with open(c[0].disk, "rb") as f:
        assert f.read(4096) == b"a" * 4096
    before = c[0].data_hash(SIZE)
    bad = batch([(4096, b"x" * 4096), (SIZE - 100, b"y" * 4096)])  # the second write ends past the volume
    peer.send(W.WRITES, bad, id=8)
    assert closed_by_server(peer.s)
    assert c[0].data_hash(SIZE) == before, "a block of a refused batch was written"
    assert c[0].running
    assert "beyond the volume" in c[0].log.read_text(), "the refusal names its reason"
