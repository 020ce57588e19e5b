"""Sync decisions from generation identifiers (DRBD's rules), table-driven plus a symmetry property."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hastack_blockrepl.meta import CONSISTENT, DAY0, DISKLESS, INCONSISTENT, OUTDATED, UP_TO_DATE
from hastack_blockrepl.syncdecide import DISCONNECT, NONE, SOURCE, TARGET, Policy, Side, decide_sync

A, B, C, D = 0x1000, 0x2000, 0x3000, 0x4000


def side(node: int, cur: int, bm: int = 0, hist: tuple[int, int] = (0, 0), **kw: object) -> Side:
    return Side(node, cur, bm, hist, **kw)  # type: ignore[arg-type]


CASES = [
    # (name, local, peer, policy, action, full, split_brain)
    ("blank-both", side(0, DAY0), side(1, DAY0), Policy(), NONE, False, False),
    ("new-local", side(0, DAY0), side(1, A), Policy(), TARGET, True, False),
    ("new-peer", side(0, A), side(1, DAY0), Policy(), SOURCE, True, False),
    ("same", side(0, A), side(1, A), Policy(), NONE, False, False),
    ("same-primary-flag-bit", side(0, A | 1), side(1, A), Policy(), NONE, False, False),
    ("local-tracked", side(0, B, A, (A, 0)), side(1, A), Policy(), SOURCE, False, False),
    ("peer-tracked", side(0, A), side(1, B, A), Policy(), TARGET, False, False),
    ("history-local", side(0, C, 0, (B, A)), side(1, A), Policy(), SOURCE, True, False),
    ("history-peer", side(0, A), side(1, C, 0, (A, 0)), Policy(), TARGET, True, False),
    ("crashed-primary", side(0, A, crashed_primary=True), side(1, A), Policy(), SOURCE, False, False),
    # its peer was promoted meanwhile (and wrote nothing yet): the Primary of the moment is the source
    ("crashed-primary-replaced", side(0, A, crashed_primary=True, changes=5), side(1, A, primary=True), Policy(),
     TARGET, False, False),
    ("same-marked-by-verify", side(0, A, changes=3, primary=True), side(1, A), Policy(), SOURCE, False, False),
    ("same-marked-on-secondary", side(0, A), side(1, A, changes=2), Policy(), TARGET, False, False),
    # a Secondary whose node crashed: its activity log marked, its disk Outdated; it is the target
    # even with fewer or more marks than the peer, and whichever node id it has
    ("crashed-secondary", side(0, A, changes=1024, disk=OUTDATED), side(1, A), Policy(), TARGET, False, False),
    ("crashed-secondary-peer", side(0, A, changes=3), side(1, A, changes=99, disk=OUTDATED), Policy(), SOURCE, False,
     False),
    # a Primary whose node crashed and rebooted: Outdated, so the peer that stayed up is the source
    ("crashed-primary-rebooted", side(0, A, crashed_primary=True, changes=5, disk=OUTDATED), side(1, A), Policy(),
     TARGET, False, False),
    # ... as a node restart leaves them: Consistent, so the peer that stayed up is the source
    ("restarted-secondary", side(0, A, changes=1024, disk=CONSISTENT), side(1, A), Policy(), TARGET, False, False),
    ("restarted-primary", side(0, A, crashed_primary=True, changes=5, disk=CONSISTENT), side(1, A, changes=2),
     Policy(), TARGET, False, False),
    # every node restarted (a power cut): no peer stayed up, the crashed Primary is the source ...
    ("all-restarted", side(0, A, changes=8, disk=CONSISTENT), side(1, A, crashed_primary=True, changes=4,
     disk=CONSISTENT), Policy(), TARGET, False, False),
    # ... or, with none, the lower node id; an Outdated replica never is
    ("all-restarted-secondaries", side(0, A, changes=8, disk=CONSISTENT), side(1, A, changes=9, disk=CONSISTENT),
     Policy(), SOURCE, False, False),
    ("restarted-and-outdated", side(0, A, changes=1, disk=OUTDATED), side(1, A, changes=3, disk=CONSISTENT),
     Policy(), TARGET, False, False),
    ("both-outdated-refused", side(0, A, crashed_primary=True, changes=1, disk=OUTDATED),
     side(1, A, changes=3, disk=OUTDATED), Policy(), DISCONNECT, False, False),
    # a restarted replica whose generation is newer (it wrote on after the peer left) is the source
    ("restarted-newer", side(0, B, A, (A, 0), changes=2, disk=CONSISTENT), side(1, A), Policy(), SOURCE, False,
     False),
    ("restarted-older", side(0, A, changes=2, disk=CONSISTENT), side(1, B, A), Policy(), TARGET, False, False),
    ("restarted-to-inconsistent", side(0, A, disk=CONSISTENT), side(1, A, disk=INCONSISTENT), Policy(), SOURCE,
     False, False),
    ("inconsistent-same", side(0, A, disk=INCONSISTENT), side(1, A), Policy(), TARGET, False, False),
    # a resync between two replicas interrupted (the source lost its Primary and reconnected):
    # the Inconsistent one resumes as the target, lower node id and marks or not
    ("interrupted-resync", side(0, A, changes=3, disk=INCONSISTENT), side(1, A, changes=5), Policy(), TARGET,
     False, False),
    ("interrupted-resync-from-outdated", side(0, A, changes=3, disk=INCONSISTENT), side(1, A, changes=1,
     disk=OUTDATED), Policy(), TARGET, False, False),
    ("diskless-local", side(0, A, disk=DISKLESS), side(1, B, A), Policy(), NONE, False, False),
    ("diskless-peer", side(0, B, A, changes=9), side(1, A, disk=DISKLESS), Policy(), NONE, False, False),
    ("unrelated", side(0, A), side(1, B), Policy(), DISCONNECT, True, False),
    ("sb-0pri-disconnect", side(0, B, A), side(1, C, A), Policy(), DISCONNECT, False, True),
    ("sb-history", side(0, B, 0, (A, 0)), side(1, C, 0, (A, 0)), Policy(), DISCONNECT, True, True),
    (
        "sb-younger-loses",
        side(0, B, A, primary_since=20.0),
        side(1, C, A, primary_since=10.0),
        Policy("discard-younger-primary"),
        TARGET,
        False,
        True,
    ),
    (
        "sb-older-loses",
        side(0, B, A, primary_since=20.0),
        side(1, C, A, primary_since=10.0),
        Policy("discard-older-primary"),
        SOURCE,
        False,
        True,
    ),
    (
        "sb-zero-changes",
        side(0, B, A, changes=0),
        side(1, C, A, changes=5),
        Policy("discard-zero-changes"),
        TARGET,
        False,
        True,
    ),
    (
        "sb-zero-changes-both-changed",
        side(0, B, A, changes=1),
        side(1, C, A, changes=5),
        Policy("discard-zero-changes"),
        DISCONNECT,
        False,
        True,
    ),
    (
        "sb-least-changes",
        side(0, B, A, changes=9),
        side(1, C, A, changes=5),
        Policy("discard-least-changes"),
        SOURCE,
        False,
        True,
    ),
    (
        "sb-1pri-discard-secondary",
        side(0, B, A, primary=True),
        side(1, C, A),
        Policy(after_sb_1pri="discard-secondary"),
        SOURCE,
        False,
        True,
    ),
    (
        "sb-1pri-consensus-agree",
        side(0, B, A, primary=True, changes=3),
        side(1, C, A, changes=0),
        Policy("discard-zero-changes", "consensus"),
        SOURCE,
        False,
        True,
    ),
    (
        "sb-1pri-consensus-disagree",
        side(0, B, A, primary=True, changes=0),
        side(1, C, A, changes=4),
        Policy("discard-zero-changes", "consensus"),
        DISCONNECT,
        False,
        True,
    ),
    (
        "sb-1pri-disconnect",
        side(0, B, A, primary=True),
        side(1, C, A),
        Policy("discard-zero-changes"),
        DISCONNECT,
        False,
        True,
    ),
    (
        "sb-2pri",
        side(0, B, A, primary=True),
        side(1, C, A, primary=True),
        Policy("discard-zero-changes", "discard-secondary", "disconnect"),
        DISCONNECT,
        False,
        True,
    ),
    ("sb-discard-my-data", side(0, B, A, discard_my_data=True), side(1, C, A), Policy(), TARGET, False, True),
    ("source-outdated-refused", side(0, B, A, disk=OUTDATED), side(1, A), Policy(), DISCONNECT, False, False),
    ("target-primary-refused", side(0, A, primary=True), side(1, B, A), Policy(), DISCONNECT, False, False),
]


@pytest.mark.parametrize("name,local,peer,policy,action,full,sb", CASES, ids=[c[0] for c in CASES])
def test_decision_table(
    name: str, local: Side, peer: Side, policy: Policy, action: str, full: bool, sb: bool
) -> None:
    d = decide_sync(local, peer, policy)
    assert (d.action, d.full, d.split_brain) == (action, full, sb), d.reason
    assert d.reason


def test_pri_lost_after_sb_flags_the_losing_primary_only() -> None:
    pol = Policy("discard-zero-changes", "call-pri-lost-after-sb")
    pri, sec = side(0, B, A, primary=True, changes=0), side(1, C, A, changes=7)
    assert decide_sync(pri, sec, pol).pri_lost and decide_sync(pri, sec, pol).action == DISCONNECT
    assert not decide_sync(sec, pri, pol).pri_lost


uuids = st.sampled_from([0, DAY0, A, B, C, D])
sides = st.builds(
    lambda n, cur, bm, h0, h1, disk, pri, since, ch, crash: Side(
        n, cur or A, bm, (h0, h1), disk, pri, since, ch, crash
    ),
    st.just(0),
    uuids,
    uuids,
    uuids,
    uuids,
    st.sampled_from([UP_TO_DATE, CONSISTENT, INCONSISTENT, OUTDATED, DISKLESS]),
    st.booleans(),
    st.sampled_from([0.0, 1.0, 2.0]),
    st.integers(0, 3),
    st.booleans(),
)
policies = st.builds(
    Policy,
    st.sampled_from(
        [
            "disconnect",
            "discard-younger-primary",
            "discard-older-primary",
            "discard-zero-changes",
            "discard-least-changes",
        ]
    ),
    st.sampled_from(["disconnect", "consensus", "discard-secondary", "call-pri-lost-after-sb"]),
    st.sampled_from(["disconnect", "call-pri-lost-after-sb"]),
)


@settings(max_examples=2000, deadline=None)
@given(sides, sides, policies)
def test_both_sides_reach_mirrored_decisions(a: Side, b: Side, pol: Policy) -> None:
    b = Side(
        1,
        *[
            getattr(b, f)
            for f in (
                "current",
                "bitmap",
                "history",
                "disk",
                "primary",
                "primary_since",
                "changes",
                "crashed_primary",
            )
        ],
    )
    da, db = decide_sync(a, b, pol), decide_sync(b, a, pol)
    assert (db.action, db.full, db.split_brain) == (da.mirrored().action, da.full, da.split_brain)
    # never make a Primary the sync target, never sync from a disk that is not UpToDate
    for d, me, other in ((da, a, b), (db, b, a)):
        if d.action == TARGET:
            assert not me.primary
        if d.action == SOURCE and not d.split_brain:
            assert me.disk in (UP_TO_DATE, CONSISTENT) or (me.disk == OUTDATED and other.disk == INCONSISTENT)
            # a restarted replica is never the source of a peer that stayed up in the same generation
            assert not (me.disk == CONSISTENT and other.disk == UP_TO_DATE and me.current & ~1 == other.current & ~1)
