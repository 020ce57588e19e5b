"""Bad replication traffic: unauthenticated peers, wrong secrets, garbage and truncated frames
are refused with a clean disconnect; the replica keeps running and no block changes."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.blockrepl_cluster import Cluster, closed_by_server, cluster
from hastack_blockrepl import wire as W

SIZE = 16 << 20


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster(tmp_path_factory.mktemp("repl"), 2, size=SIZE) as c:
        c.wait_connected()
        c[0].call("primary")
        yield c


def connect(c: Cluster) -> socket.socket:
    host, port = c[0].cfg["net"]["listen"].rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
    return s


def frame(enc: W.Encoder, ftype: int, payload: bytes = b"", **kw: int) -> bytes:
    return b"".join(bytes(p) for p in enc.encode(ftype, payload, **kw))


def auth_failures(c: Cluster) -> float:
    for line in c[0].call("metrics").splitlines():
        if line.startswith("hastack_blockrepl_auth_failures_total"):
            return float(line.split()[-1])
    return 0.0


def handshake_as(c: Cluster, node: int, secret: bytes, resource: str = "r0") -> socket.socket:
    s = connect(c)
    enc = W.Encoder(None)
    mine = os.urandom(W.NONCE_LEN)
    s.sendall(frame(enc, W.HELLO, W.hello_payload(node, resource, mine)))
    dec = W.Decoder(None)
    hello = next(iter(dec.feed(s.recv(4096))))
    their_nonce, _ = W.parse_hello(hello.payload)
    s.sendall(frame(enc, W.AUTH, W.auth_response(secret, their_nonce, mine, node, resource)))
    return s


def test_wrong_secret_is_refused_and_counted(pair: Cluster) -> None:
    before = auth_failures(pair)
    s = handshake_as(pair, 1, b"not-the-secret-at-all")
    assert closed_by_server(s)
    assert auth_failures(pair) == before + 1
    assert pair[0].peer(1)["replication"] == "Established"  # the real peer is untouched


def test_unknown_node_and_wrong_resource_refused(pair: Cluster) -> None:
    for node, resource in ((7, "r0"), (1, "other")):
        s = connect(pair)
        s.sendall(frame(W.Encoder(None), W.HELLO, W.hello_payload(node, resource, os.urandom(32))))
        assert closed_by_server(s)


@pytest.mark.parametrize(
    "data",
    [
        b"\0" * 64,  # wrong magic
        W.HEADER.pack(W.MAGIC, W.HELLO, 0, 1 << 30, 1, 0, 0),  # oversize length before authentication
        W.HEADER.pack(W.MAGIC, W.WRITE, 0, 4, 1, 0, 0) + b"evil",  # a write before authentication
        W.HEADER.pack(W.MAGIC, W.HELLO, 0, 3, 1, 0, 0) + b"abc",  # malformed HELLO
        W.HEADER.pack(W.MAGIC, W.HELLO, 0, 100, 1, 0, 0)[:20],  # truncated, then silence
    ],
)
def test_garbage_gets_a_clean_disconnect(pair: Cluster, data: bytes) -> None:
    before = pair[0].data_hash(SIZE)
    s = connect(pair)
    s.sendall(data)
    assert closed_by_server(s, timeout=15)  # the truncated case ends by the handshake timeout
    assert pair[0].running and pair[1].running
    assert pair[0].data_hash(SIZE) == before


def test_forged_frame_after_valid_auth_is_refused(pair: Cluster) -> None:
    """A replayed or forged frame on an authenticated connection fails its HMAC."""
    s = handshake_as(pair, 1, Path(pair[0].cfg["net"]["secretFile"]).read_bytes().strip())
    s.sendall(W.HEADER.pack(W.MAGIC, W.WRITE, 0, 4, 3, 1, 0) + b"evil" + b"\0" * W.MAC_LEN)
    assert closed_by_server(s)
    assert pair[0].running
