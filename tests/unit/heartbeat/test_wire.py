"""The heartbeat datagram codec: round trip, and every damaged packet refused with a reason."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hastack_heartbeat import wire
from hastack_heartbeat.events import Packet

SECRET = b"s" * 32
PKT = Packet(kind="hb", src="web-0", dst="web-1", epoch=1_700_000_000_000_000_000, seq=42, active=True)

packets = st.builds(
    Packet,
    kind=st.sampled_from(["hb", "ack"]),
    src=st.text(min_size=1, max_size=60),
    dst=st.text(min_size=1, max_size=60),
    epoch=st.integers(0, 2**64 - 1),
    seq=st.integers(0, 2**64 - 1),
    active=st.booleans(),
    eligible=st.booleans(),
    ack_epoch=st.integers(0, 2**64 - 1),
    ack_seq=st.integers(0, 2**64 - 1),
)


@given(packets)
def test_round_trip(pkt: Packet) -> None:
    assert wire.decode(wire.encode(pkt, "web", SECRET), "web", SECRET) == pkt


def reason(data: bytes, cluster: str = "web", secret: bytes = SECRET) -> str:
    with pytest.raises(wire.BadPacket) as err:
        wire.decode(data, cluster, secret)
    return err.value.reason


def test_each_kind_of_damage_has_its_reason() -> None:
    good = wire.encode(PKT, "web", SECRET)
    assert reason(good, secret=b"t" * 32) == "bad_mac"
    assert reason(good[:20]) == "truncated"
    assert reason(good[:-1]) == "truncated"
    assert reason(good + b"x") == "malformed"
    assert reason(b"XXXX" + good[4:]) == "bad_magic"
    assert reason(good[:4] + b"\x09" + good[5:]) == "bad_version"
    assert reason(good + b"\0" * 2000) == "oversize"
    assert reason(wire.encode(PKT, "db", SECRET)) == "wrong_cluster"
    forged_seq = bytearray(good)
    forged_seq[20] ^= 1  # inside the sequence number: the MAC no longer matches
    assert reason(bytes(forged_seq)) == "bad_mac"


@given(st.data())
def test_any_prefix_or_bit_flip_is_refused_never_crashes(data: st.DataObject) -> None:
    good = wire.encode(PKT, "web", SECRET)
    cut = data.draw(st.integers(0, len(good) - 1))
    assert reason(good[:cut]) in wire.REASONS
    bit = data.draw(st.integers(0, len(good) * 8 - 1))
    flipped = bytearray(good)
    flipped[bit // 8] ^= 1 << (bit % 8)
    assert reason(bytes(flipped)) in wire.REASONS


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        wire.check_secret(b"short")


def test_the_promised_deadtime_rides_in_the_former_padding_rounded_down() -> None:
    pkt = Packet(kind="ack", src="a", dst="b", epoch=1, seq=2, ack_epoch=3, ack_seq=4, dead=wire.dead_code(3.1))
    got = wire.decode(wire.encode(pkt, "c", SECRET), "c", SECRET)
    assert got.dead == 12 and wire.dead_seconds(got.dead) == 3.0  # never more than promised
    assert wire.dead_code(1000.0) == 255 and wire.dead_code(0.2) == 0
    old = wire.encode(Packet(kind="ack", src="a", dst="b", epoch=1, seq=2), "c", SECRET)
    assert old[7] == 0 and wire.decode(old, "c", SECRET).dead == 0  # a sender without the field: "not given"
