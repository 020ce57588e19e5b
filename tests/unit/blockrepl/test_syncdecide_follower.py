"""Split brain with 3 replicas: a side that followed another Primary is never judged by change
counts or promotion age (it kept no bitmap for the peer, so neither is known)."""

from __future__ import annotations

import pytest

from hastack_blockrepl.syncdecide import DISCONNECT, SOURCE, TARGET, Policy, Side, decide_sync

G1, G2, G3 = 0x1000, 0x2000, 0x3000  # common generation; A's after the split; B's, followed by C

# A wrote while cut off (tracked 256 blocks for C since G1); C followed B (no bitmap for A)
A = Side(0, G2, G1, (G1, 0), changes=256, primary_since=200.0)
C_FOLLOWER = Side(2, G3, 0, (G1, 0), changes=0, primary_since=0.0)


@pytest.mark.parametrize(
    "after_sb_0pri",
    ["discard-zero-changes", "discard-least-changes", "discard-younger-primary", "discard-older-primary"],
)
def test_no_0pri_policy_judges_a_follower(after_sb_0pri: str) -> None:
    pol = Policy(after_sb_0pri)
    for local, peer in ((A, C_FOLLOWER), (C_FOLLOWER, A)):
        d = decide_sync(local, peer, pol)
        assert (d.action, d.split_brain) == (DISCONNECT, True), (after_sb_0pri, local.node_id, d)


@pytest.mark.parametrize("after_sb_1pri", ["consensus", "call-pri-lost-after-sb"])
def test_1pri_policies_built_on_0pri_do_not_judge_a_follower_either(after_sb_1pri: str) -> None:
    primary_a = Side(0, G2, G1, (G1, 0), changes=256, primary_since=200.0, primary=True)
    pol = Policy("discard-zero-changes", after_sb_1pri)
    for local, peer in ((primary_a, C_FOLLOWER), (C_FOLLOWER, primary_a)):
        d = decide_sync(local, peer, pol)
        assert (d.action, d.split_brain, d.pri_lost) == (DISCONNECT, True, False)


def test_discard_secondary_still_applies_to_a_follower() -> None:
    primary_a = Side(0, G2, G1, (G1, 0), changes=256, primary=True)
    pol = Policy("disconnect", "discard-secondary")
    assert decide_sync(primary_a, C_FOLLOWER, pol).action == SOURCE
    assert decide_sync(C_FOLLOWER, primary_a, pol).action == TARGET


def test_counterproof_a_tracked_zero_change_side_is_still_discarded() -> None:
    """The rule is what protects the follower: had it kept a bitmap (and so written nothing
    itself), discard-zero-changes would discard it."""
    tracked = Side(2, G3, G1, (G1, 0), changes=0, primary_since=300.0)
    assert decide_sync(tracked, A, Policy("discard-zero-changes")).action == TARGET
    assert decide_sync(A, tracked, Policy("discard-zero-changes")).action == SOURCE
