"""The right to stay active and the right to take over, table-driven (DESIGN's rule)."""

from __future__ import annotations

import math

import pytest

from hastack_heartbeat import arbitration as arb
from hastack_heartbeat.arbitration import LeaseRecord, Timings

T = Timings()  # renewDeadline 3, deadTime 3, margin 0.5


@pytest.mark.parametrize(
    ("renewed_at", "lost", "acks", "expected"),
    [
        (10.0, False, {"b": None}, 13.0),  # Lease renewed at 10: right until the renew deadline
        (None, False, {"b": None}, -math.inf),  # neither: no right
        (None, False, {"b": 11.0}, 13.5),  # API unreachable, the peer acked a heartbeat sent at 11
        (10.0, False, {"b": 11.0}, 13.5),  # whichever lasts longer
        (12.0, False, {"b": 9.0}, 15.0),
        (None, False, {"b": 11.0, "c": None}, -math.inf),  # 3 members: both peers must have acked
        (None, False, {"b": 11.0, "c": 10.0}, 12.5),  # the older of the two counts
        (None, False, {}, -math.inf),  # a member alone has no peers to ask
        (12.0, True, {"b": 12.0}, -math.inf),  # the API server says another member holds the Lease
    ],
)
def test_right_until(renewed_at: float | None, lost: bool, acks: dict[str, float | None],
                     expected: float) -> None:
    assert arb.right_until(renewed_at, lost, acks, T) == expected


def test_required_acks_is_a_majority_of_peers_for_two_and_three_members() -> None:
    assert arb.required_acks(1) == 1 and arb.required_acks(2) == 2
    assert arb.required_acks(0) == 0


HELD = LeaseRecord("b", "7", 4.0)
RELEASED = LeaseRecord("", "8", 4.0)
HANDOVER = LeaseRecord("", "8", 4.0, handover="c")


@pytest.mark.parametrize(
    ("lease", "observed_at", "gone", "now", "ok", "why"),
    [
        (None, 0.0, True, 100.0, False, "no Lease read yet"),
        (RELEASED, 10.0, False, 10.1, True, "released"),
        (HANDOVER, 10.0, False, 10.1, False, "switchover to c"),
        (HANDOVER, 10.0, False, 14.0, True, "released"),  # the target did not take it in time
        (LeaseRecord("a", "9", 4.0), 10.0, False, 10.0, True, "names this member"),
        (HELD, 10.0, True, 13.9, False, "held by b"),  # not yet expired in our observation
        (HELD, 10.0, False, 14.0, False, "alive and active"),  # expired, but b is alive: API outage
        (HELD, 10.0, True, 14.0, True, "dead by heartbeat"),
    ],
)
def test_may_acquire(lease: LeaseRecord | None, observed_at: float, gone: bool, now: float, ok: bool,
                     why: str) -> None:
    got, reason = arb.may_acquire("a", lease, observed_at, gone, now)
    assert got is ok
    assert why in reason


def test_fencing_switch_off_is_visible() -> None:
    assert arb.right_until(None, False, {"b": None}, Timings(fencing=False)) == math.inf


def test_the_rights_follow_what_was_promised_and_written_not_the_current_configuration() -> None:
    t = Timings(dead=6.0, renew_deadline=5.0, lease_duration=6.0)
    # the peer promised 2 s in its ack: the ack right ends 2 s (less the margin) after the send
    assert arb.ack_until({"b": 10.0}, t, {"b": 2.0}) == 10.0 + 2.0 - t.margin
    assert arb.ack_until({"b": 10.0}, t, {"b": 0.0}) == 10.0 + 6.0 - t.margin  # not given: our own
    # the renewal wrote leaseDuration 4 (before a reload to 6): the right ends 3.5 s after it
    assert arb.lease_until(10.0, t, written_duration=4.0) == 10.0 + 4.0 - t.margin
    assert arb.lease_until(10.0, t, written_duration=6.0) == 10.0 + 5.0
