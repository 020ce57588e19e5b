"""The Lease's Outdated records, heartbeat's side (pure): parsing, and no promotion while recorded."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from hastack_common.outdate_peer import annotation_key, outdated_members, record_value
from hastack_heartbeat import arbitration as arb
from hastack_heartbeat import membership as m
from hastack_heartbeat.arbitration import LeaseRecord, Timings
from hastack_heartbeat.events import LeaseObserved, LeaseOp, LeaseReply, Tick
from hastack_heartbeat.lease import to_record
from hastack_heartbeat.outdated import peer_in_sync

NOW = dt.datetime(2026, 11, 25, 1, 0, 0, tzinfo=dt.UTC)
T = Timings()


def lease_with(outdated: dict[str, str], holder: str = "", rv: str = "10") -> LeaseRecord:
    return LeaseRecord(holder, rv, 4.0, 1, outdated=outdated)


def test_to_record_reads_the_outdated_annotations_and_a_damaged_one_still_counts() -> None:
    obj = {"metadata": {"resourceVersion": "42", "annotations": {
        annotation_key("web-1"): record_value("web-0", "ns/data", NOW),
        annotation_key("web-2"): "not json",
        "hastack.io/handover": ""}},
        "spec": {"holderIdentity": "web-0", "leaseDurationSeconds": 4}}
    rec = to_record(obj, 4.0)
    assert rec.outdated == {"web-1": "web-0", "web-2": "unknown"}
    assert outdated_members(None) == {}


def test_each_record_value_is_fresh_so_writing_it_always_moves_the_version() -> None:
    assert record_value("web-0", "r", NOW) != record_value("web-0", "r", NOW + dt.timedelta(microseconds=1))


@pytest.mark.parametrize(("lease", "holder_gone"), [
    (lease_with({"a": "b"}), False),  # released
    (lease_with({"a": "b"}, holder="b"), True),  # expired, holder dead by heartbeat
    (lease_with({"a": "b"}, holder="a"), False),  # names this member
])
def test_a_member_recorded_outdated_never_acquires(lease: LeaseRecord, holder_gone: bool) -> None:
    ok, why = arb.may_acquire("a", lease, observed_at=0.0, holder_gone=holder_gone, now=100.0)
    assert not ok and "recorded Outdated on the Lease by b" in why
    ok, _ = arb.may_acquire("a", dataclasses.replace(lease, outdated={}), 0.0, holder_gone, 100.0)
    assert ok


def _standby_seeing(rec: LeaseRecord, ignore: bool = False) -> tuple[m.State, list[object]]:
    params = m.Params(me="a", peers=("b",), timings=T, ignore_outdated=ignore)
    st, _ = m.step(m.initial(params, epoch=1, now=0.0), Tick(), 0.0)
    st, _ = m.step(st, LeaseReply("get", "ok", rec, 0.0), 0.0)
    out: list[object] = []
    for t in (5.0, 11.0, 20.0):  # the holder is dead (initDead passed), the Lease long expired
        st, acts = m.step(st, Tick(), t)
        out += acts
        for op in acts:
            if isinstance(op, LeaseOp) and op.kind == "get":
                st, more = m.step(st, LeaseReply("get", "ok", rec, t), t)
                out += more
    return st, out


def test_an_outdated_standby_is_not_eligible_and_sends_no_acquire() -> None:
    st, out = _standby_seeing(lease_with({"a": "b"}, holder="b"))
    assert not any(isinstance(x, LeaseOp) and x.kind == "update" for x in out)
    assert st.role is m.Role.STANDBY and not m.eligible(st, 20.0)
    assert m.block_reason(st).startswith("recorded Outdated on the Lease by b")


def test_the_test_only_switch_ignores_the_record_and_the_standby_acquires() -> None:
    st, out = _standby_seeing(lease_with({"a": "b"}, holder="b"), ignore=True)
    assert any(isinstance(x, LeaseOp) and x.kind == "update" for x in out)
    assert st.role is m.Role.ACQUIRING


def test_a_record_of_another_member_does_not_block_this_one() -> None:
    st, _ = _standby_seeing(lease_with({"c": "b"}, holder="b"))
    assert st.role is m.Role.ACQUIRING


def _holder() -> m.State:
    params = m.Params(me="a", peers=("b",), timings=T)
    st, _ = m.step(m.initial(params, epoch=1, now=0.0), Tick(), 0.0)
    st, acts = m.step(st, LeaseReply("get", "ok", lease_with({}), 0.0), 0.0)  # released: acquire
    op = next(x for x in acts if isinstance(x, LeaseOp))
    assert op.record is not None
    st, _ = m.step(st, LeaseReply("update", "ok", dataclasses.replace(op.record, resource_version="11"), 0.0), 0.0)
    assert st.role is m.Role.PROMOTING
    return st


def test_the_holders_own_record_write_moves_its_renewals_onto_the_new_version() -> None:
    st = _holder()
    written = lease_with({"b": "a"}, holder="a", rv="12")
    st, _ = m.step(st, LeaseObserved(written), 0.1)
    assert st.lease == written
    st, acts = m.step(st, Tick(), 1.1)
    renew = next(x for x in acts if isinstance(x, LeaseOp))
    assert renew.expected_version == "12"


def test_a_conflict_while_holding_renews_at_once_on_the_version_it_returned() -> None:
    st = _holder()
    st, acts = m.step(st, Tick(), 1.1)
    renew = next(x for x in acts if isinstance(x, LeaseOp))
    current = lease_with({"b": "a"}, holder="a", rv="13")
    st, acts = m.step(st, LeaseReply("update", "conflict", current, renew.sent_at), 1.2)
    again = next(x for x in acts if isinstance(x, LeaseOp))
    assert again.kind == "update" and again.expected_version == "13" and st.role is m.Role.PROMOTING


@pytest.mark.parametrize(("peer", "in_sync"), [
    ({"connection": "Connected", "replication": "Established", "peer_disk": "UpToDate", "out_of_sync_bytes": 0},
     True),
    ({"connection": "Connected", "replication": "SyncSource", "peer_disk": "Inconsistent",
      "out_of_sync_bytes": 4096}, False),
    ({"connection": "Connected", "replication": "Established", "peer_disk": "UpToDate", "out_of_sync_bytes": 4096},
     False),
    ({"connection": "Connecting", "replication": "Off", "peer_disk": "UpToDate", "out_of_sync_bytes": 0}, False),
])
def test_a_record_is_removed_only_for_a_peer_fully_in_sync(peer: dict[str, object], in_sync: bool) -> None:
    assert peer_in_sync(peer) is in_sync


def test_a_member_demoting_voluntarily_still_records_a_lost_peer() -> None:
    """The whole HACluster deleted: the active demotes (keeping its right, so the unmount's writes
    flow) while its peer goes away; refusing then would hold the journal writes forever."""
    from hastack_heartbeat.outdated import holds_lease

    st = _holder()
    assert holds_lease(st)
    assert holds_lease(dataclasses.replace(st, role=m.Role.DEMOTING, demote_keeps_right=True))
    assert not holds_lease(dataclasses.replace(st, role=m.Role.DEMOTING, demote_keeps_right=False))
    assert not holds_lease(dataclasses.replace(st, role=m.Role.STANDBY))


def test_the_first_takeover_of_a_never_held_lease_is_initial_not_a_switchover() -> None:
    from hastack_heartbeat.status import Timeline

    t = Timeline()
    t.detected(0.0, "start-up: the Lease was never held", "")
    assert t.kind == "initial"
    t2 = Timeline()
    t2.detected(0.0, "Lease released", "")
    assert t2.kind == "switchover"
