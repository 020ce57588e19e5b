"""Replication frames: HMAC on every frame, sequence checks, mutual challenge-response."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hastack_blockrepl import wire as W

SECRET = b"s" * 32


def roundtrip(frames: list[list[bytes | memoryview]], key: bytes | None = SECRET) -> list[W.Frame]:
    dec = W.Decoder(key)
    data = b"".join(bytes(p) for parts in frames for p in parts)
    return list(dec.feed(data))


def test_roundtrip_in_pieces() -> None:
    enc = W.Encoder(SECRET)
    frames = [
        enc.encode(W.WRITE, b"x" * 5000, id=1, offset=4096, flags=W.F_FUA),
        enc.encode(W.FLUSH, id=2),
        enc.json(W.STATE, {"a": 1}),
    ]
    data = b"".join(bytes(p) for parts in frames for p in parts)
    dec, got = W.Decoder(SECRET), []
    for i in range(0, len(data), 333):
        got += list(dec.feed(data[i : i + 333]))
    assert [(f.type, f.id, f.offset, f.flags) for f in got] == [
        (W.WRITE, 1, 4096, 1),
        (W.FLUSH, 2, 0, 0),
        (W.STATE, 0, 0, 0),
    ]
    assert got[0].payload == b"x" * 5000 and got[2].json() == {"a": 1}


def test_tampered_payload_fails_hmac() -> None:
    enc = W.Encoder(SECRET)
    hdr, payload, mac = enc.encode(W.WRITE, b"data", id=1)
    with pytest.raises(W.AuthError):
        list(W.Decoder(SECRET).feed(bytes(hdr) + b"dat4" + bytes(mac)))
    with pytest.raises(W.AuthError):
        list(W.Decoder(b"t" * 32).feed(bytes(hdr) + bytes(payload) + bytes(mac)))


def test_replay_and_reorder_detected() -> None:
    enc = W.Encoder(SECRET)
    f1 = b"".join(bytes(p) for p in enc.encode(W.PING))
    f2 = b"".join(bytes(p) for p in enc.encode(W.PING))
    with pytest.raises(W.WireError):
        list(W.Decoder(SECRET).feed(f1 + f1))
    with pytest.raises(W.WireError):
        list(W.Decoder(SECRET).feed(f2))


def test_bad_magic_and_oversize() -> None:
    with pytest.raises(W.WireError):
        list(W.Decoder(None).feed(b"\0" * 40))
    hdr = W.HEADER.pack(W.MAGIC, W.WRITE, 0, W.MAX_PAYLOAD + 1, 1, 0, 0)
    with pytest.raises(W.WireError):
        list(W.Decoder(None).feed(hdr))


def test_mutual_auth_and_keys() -> None:
    na, nb = os.urandom(32), os.urandom(32)
    # b answers a's challenge; a checks it
    resp_b = W.auth_response(SECRET, na, nb, 2, "r0")
    W.check_auth(SECRET, na, nb, 2, "r0", resp_b)
    with pytest.raises(W.AuthError):  # wrong secret
        W.check_auth(SECRET, na, nb, 2, "r0", W.auth_response(b"x" * 32, na, nb, 2, "r0"))
    with pytest.raises(W.AuthError):  # reflected: a's own answer sent back to a
        W.check_auth(SECRET, na, nb, 2, "r0", W.auth_response(SECRET, nb, na, 1, "r0"))
    with pytest.raises(W.AuthError):  # replay of an earlier session's answer
        W.check_auth(SECRET, os.urandom(32), nb, 2, "r0", resp_b)
    with pytest.raises(W.AuthError):
        W.check_auth(SECRET, na, na, 2, "r0", resp_b)
    keys = {1: na, 2: nb}
    assert W.direction_key(SECRET, 1, keys) != W.direction_key(SECRET, 2, keys)


def test_version_negotiation() -> None:
    assert W.negotiate([1, W.VERSION_MAX]) == W.VERSION_MAX
    assert W.negotiate([1, 5]) == 5
    with pytest.raises(W.WireError, match="upgrade"):
        W.negotiate([W.VERSION_MAX + 1, W.VERSION_MAX + 3])
    nonce = os.urandom(32)
    got_nonce, meta = W.parse_hello(W.hello_payload(3, "r0", nonce))
    assert got_nonce == nonce and meta["node"] == 3
    with pytest.raises(W.WireError):
        W.parse_hello(nonce + b"{not json")


def test_id_lists_round_trip_and_reject_a_partial_id() -> None:
    ids = [1, 2, 2**63 + 5, 7]
    enc, dec = W.Encoder(SECRET), W.Decoder(SECRET)
    (f,) = list(dec.feed(b"".join(bytes(p) for p in enc.encode(W.ACK_WRITES, W.pack_ids(ids)))))
    assert f.type == W.ACK_WRITES and list(W.unpack_ids(f.payload)) == ids
    assert W.unpack_ids(b"") == ()
    with pytest.raises(W.WireError, match="whole number"):
        W.unpack_ids(W.pack_ids([1])[:7])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=500))
def test_decoder_never_crashes_on_garbage(data: bytes) -> None:
    try:
        frames = list(W.Decoder(SECRET).feed(data))
    except W.WireError:
        return
    assert frames == []  # nothing forged passes the HMAC


@pytest.mark.skipif(W.fastpath.Gmac is None, reason="the compiled extension is not built")
@settings(max_examples=300, deadline=None)
@given(
    key=st.sampled_from([16, 24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    seq=st.integers(0, (1 << 64) - 1),
    hdr=st.binary(min_size=0, max_size=32),
    payload=st.binary(max_size=70_000),
)
def test_compiled_frame_mac_gives_the_reference_tags(key: bytes, seq: int, hdr: bytes, payload: bytes) -> None:
    """Replicas with and without the compiled extension speak the same wire: every tag agrees."""
    want = W.py_gmac(key)(seq, hdr, payload)
    mac = W.fastpath.Gmac(key)
    assert mac(seq, hdr, payload) == want
    assert mac(seq, memoryview(hdr), memoryview(bytearray(payload))) == want
    assert mac(seq ^ 1, hdr, payload) != want  # the nonce is in it


@pytest.mark.skipif(W.fastpath.Gmac is None, reason="the compiled extension is not built")
def test_compiled_frame_mac_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="16, 24 or 32 bytes"):
        W.fastpath.Gmac(b"k" * 20)
    with pytest.raises(ValueError, match="header of at most 32 bytes"):
        W.fastpath.Gmac(SECRET)(1, b"h" * 33, b"")
    with pytest.raises(OverflowError):
        W.fastpath.Gmac(SECRET)(-1, b"h", b"")


def test_frames_of_a_compiled_replica_pass_the_reference_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rolling update mixes replicas built with and without the extension."""
    enc = W.Encoder(SECRET)
    frames = [enc.encode(W.WRITE, os.urandom(n), id=i) for i, n in enumerate((0, 1, 4096, 60_000))]
    monkeypatch.setattr(W.fastpath, "Gmac", None)
    assert [f.id for f in roundtrip(frames)] == [0, 1, 2, 3]
    enc = W.Encoder(SECRET)
    frames = [enc.encode(W.WRITE, os.urandom(n), id=i) for i, n in enumerate((0, 4096))]
    monkeypatch.undo()
    assert [f.id for f in roundtrip(frames)] == [0, 1]
