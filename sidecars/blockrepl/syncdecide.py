"""Who syncs from whom when two replicas connect (pure; DRBD's generation-identifier rules).

Both sides evaluate ``decide_sync(local, peer, policy)`` with the same facts swapped and
reach mirrored decisions (a property test holds this): one says ``sync-source``, the other
``sync-target``; both say ``none``; or both say ``disconnect`` with the same reason — split
brain and unrelated data are seen on every replica involved.
"""

from __future__ import annotations

from dataclasses import dataclass

from hastack_blockrepl.meta import CONSISTENT, DAY0, DISKLESS, INCONSISTENT, OUTDATED, UP_TO_DATE

NONE, SOURCE, TARGET, DISCONNECT = "none", "sync-source", "sync-target", "disconnect"


@dataclass(frozen=True)
class Side:
    node_id: int
    current: int
    bitmap: int  # the bitmap UUID this side keeps for the other side
    history: tuple[int, int] = (0, 0)
    disk: str = UP_TO_DATE
    primary: bool = False
    primary_since: float = 0.0  # when it last became Primary (wall clock, seconds)
    changes: int = 0  # dirty blocks this side has tracked for the other
    crashed_primary: bool = False
    discard_my_data: bool = False  # `connect --discard-my-data`: this side loses a split brain


@dataclass(frozen=True)
class Policy:
    after_sb_0pri: str = "disconnect"
    after_sb_1pri: str = "disconnect"
    after_sb_2pri: str = "disconnect"


@dataclass(frozen=True)
class Decision:
    action: str
    full: bool = False  # True: every block; False: the union of both sides' bitmaps
    split_brain: bool = False
    reason: str = ""
    pri_lost: bool = False  # this side is a Primary that lost the split brain: run pri-lost-after-sb
    retry: bool = False  # a mismatch that may go away (config, roles): stay Connecting, not StandAlone

    def mirrored(self) -> Decision:
        flip = {SOURCE: TARGET, TARGET: SOURCE}.get(self.action, self.action)
        return Decision(flip, self.full, self.split_brain, self.reason, False)


# Same generation, blocks marked: who may be the source. A Consistent replica's node went down
# with it (no acknowledged write beyond its own flushes is promised); an Outdated one is known
# to be behind; an Inconsistent one is part way through a resync (interrupted: its marks say
# what it still lacks), so it is the target whatever its node id.
_TRUST = {UP_TO_DATE: 2, CONSISTENT: 1, OUTDATED: 0, INCONSISTENT: -1}


def _c(u: int) -> int:
    return u & ~1


def _hist(s: Side) -> set[int]:
    return {_c(h) for h in s.history if h}


def compare(local: Side, peer: Side) -> tuple[str, bool, str]:
    """Compare generation identifiers: (source|target|none|split-brain|unrelated, full, why)."""
    lc, pc = _c(local.current), _c(peer.current)
    if lc == DAY0 and pc == DAY0:
        return "none", False, "both replicas are blank (day 0): initial sync skipped"
    if lc == DAY0:
        return "target", True, "this replica is new: full sync from the peer"
    if pc == DAY0:
        return "source", True, "the peer is new: full sync to it"
    if lc == pc:
        marked = local.changes or peer.changes or local.crashed_primary or peer.crashed_primary
        lr, pr = _TRUST.get(local.disk), _TRUST.get(peer.disk)
        if marked and lr is not None and pr is not None and lr != pr:
            # a Consistent replica's node restarted: a peer that stayed up (UpToDate) may hold
            # acknowledged writes it lacks; an Outdated one was left behind. Never the source
            # against a replica trusted more.
            who = "target" if lr < pr else "source"
            less = local.disk if lr < pr else peer.disk
            return who, False, f"same generation: the {less} replica resyncs the blocks marked out of sync"
        if marked and local.primary != peer.primary:
            # the Primary of the moment: clients see its data (a crashed Primary's extra blocks
            # were never acknowledged by the peer promoted in its place, nor, under C and B, to a client)
            who = "source" if local.primary else "target"
            return who, False, "same generation: the Primary's data is resynced to the blocks marked out of sync"
        if local.crashed_primary != peer.crashed_primary:
            who = "source" if local.crashed_primary else "target"
            return who, False, "a crashed Primary's activity log is resynced"
        if local.changes or peer.changes:  # verify found differences, a write failed, a Secondary's node crashed
            one_side = bool(local.changes) != bool(peer.changes)
            mine = bool(local.changes) if one_side else local.node_id < peer.node_id
            return ("source" if mine else "target"), False, "same generation with blocks marked out of sync"
        return "none", False, "same data generation"
    local_tracked = bool(local.bitmap) and _c(local.bitmap) == pc
    peer_tracked = bool(peer.bitmap) and _c(peer.bitmap) == lc
    if local_tracked and peer_tracked:
        return "split-brain", False, "each replica tracked changes since the other's generation"
    if local_tracked:
        return "source", False, "this replica tracked every change since the peer's generation"
    if peer_tracked:
        return "target", False, "the peer tracked every change since this replica's generation"
    if pc in _hist(local) and lc in _hist(peer):
        return "split-brain", True, "each replica's generation is in the other's history"
    if pc in _hist(local):
        return "source", True, "the peer's generation is in this replica's history: full sync"
    if lc in _hist(peer):
        return "target", True, "this replica's generation is in the peer's history: full sync"
    if local.bitmap and _c(local.bitmap) == _c(peer.bitmap):
        return "split-brain", False, "both replicas changed data since their common generation"
    common = ({_c(local.bitmap)} | _hist(local)) & ({_c(peer.bitmap)} | _hist(peer))
    if common - {0}:
        return "split-brain", True, "both replicas changed data since an older common generation"
    return "unrelated", True, "the replicas hold unrelated data (no common generation)"


def _younger_loses(local: Side, peer: Side) -> bool:
    """True when ``local`` is the one to discard under discard-younger-primary."""
    if local.primary_since != peer.primary_since:
        return local.primary_since > peer.primary_since
    return local.node_id > peer.node_id


def _sb0(policy: str, local: Side, peer: Side) -> bool | None:
    """Does ``local`` lose (True), win (False), or is it unresolved (None) under an after-sb-0pri policy.

    A side that kept no bitmap for the peer (bitmap UUID 0) wrote nothing itself since they
    parted: it followed another Primary (3 replicas). How much it changed and when that Primary
    was promoted are not known here, so no after-sb-0pri policy can judge it: unresolved.
    """
    if not local.bitmap or not peer.bitmap:
        return None
    if policy == "discard-younger-primary":
        return _younger_loses(local, peer)
    if policy == "discard-older-primary":
        return not _younger_loses(local, peer)
    if policy == "discard-zero-changes":
        if local.changes and peer.changes:
            return None
        if not local.changes and not peer.changes:
            return local.node_id > peer.node_id
        return local.changes == 0
    if policy == "discard-least-changes":
        if local.changes != peer.changes:
            return local.changes < peer.changes
        return _younger_loses(local, peer)
    return None


def _resolve(local: Side, peer: Side, policy: Policy) -> tuple[bool | None, bool]:
    """(local loses?, call pri-lost-after-sb on local)."""
    primaries = int(local.primary) + int(peer.primary)
    if primaries == 0:
        return _sb0(policy.after_sb_0pri, local, peer), False
    if primaries == 1:
        pol = policy.after_sb_1pri
        if pol == "discard-secondary":
            return not local.primary, False
        if pol in ("consensus", "call-pri-lost-after-sb"):
            loses = _sb0(policy.after_sb_0pri, local, peer)
            primary_loses = loses is not None and loses == local.primary
            if loses is None or (primary_loses and pol == "consensus"):
                return None, False
            if primary_loses:
                return None, local.primary
            return loses, False
        return None, False
    if policy.after_sb_2pri == "call-pri-lost-after-sb":
        loses = _sb0(policy.after_sb_0pri, local, peer)
        return None, bool(loses)
    return None, False


def decide_sync(local: Side, peer: Side, policy: Policy = Policy()) -> Decision:
    if DISKLESS in (local.disk, peer.disk):  # nothing to sync to or from; writes skip it, marked
        gone = local.node_id if local.disk == DISKLESS else peer.node_id
        return Decision(NONE, False, False, f"node {gone} is Diskless: it takes no part in a sync until it attaches")
    kind, full, why = compare(local, peer)
    if kind == "unrelated":
        return Decision(DISCONNECT, True, False, why)
    if kind == "split-brain" and local.discard_my_data != peer.discard_my_data:
        return Decision(
            TARGET if local.discard_my_data else SOURCE,
            full,
            True,
            f"split brain resolved by discard-my-data on node "
            f"{local.node_id if local.discard_my_data else peer.node_id} ({why})",
        )
    if kind == "split-brain":
        loses, pri_lost = _resolve(local, peer, policy)
        if loses is None:
            who = ["neither", "one", "both"][int(local.primary) + int(peer.primary)]
            return Decision(
                DISCONNECT,
                full,
                True,
                f"split brain ({why}; {who} Primary): not resolved by policy",
                pri_lost,
            )
        return Decision(TARGET if loses else SOURCE, full, True, f"split brain resolved by policy ({why})")
    if kind == "none":
        if local.disk == INCONSISTENT and peer.disk in (UP_TO_DATE, CONSISTENT):
            kind, why = "target", "this replica is Inconsistent: resync from the peer"
        elif peer.disk == INCONSISTENT and local.disk in (UP_TO_DATE, CONSISTENT):
            kind, why = "source", "the peer is Inconsistent: resync to it"
        else:
            return Decision(NONE, False, False, why)
    action = SOURCE if kind == "source" else TARGET
    src, dst = (local, peer) if action == SOURCE else (peer, local)
    if src.disk in (INCONSISTENT, OUTDATED) and not (src.disk == OUTDATED and dst.disk == INCONSISTENT):
        # it may become UpToDate (a resync from a third replica, `primary --force`): keep asking
        return Decision(DISCONNECT, full, False, f"would sync from node {src.node_id} whose disk is {src.disk}",
                        retry=True)
    if dst.primary:
        return Decision(
            DISCONNECT,
            full,
            False,
            f"node {dst.node_id} is Primary but holds older data than node {src.node_id}; demote it",
        )
    return Decision(action, full, False, why)
