"""The operator's cost-saving plumbing (pure parts): coalescing, the applied-objects record,
status comparison as the API server stores it, and reads answered from indexes."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hastack_operator.reconcile import applied
from hastack_operator.reconcile.coalesce import Coalescer
from hastack_operator.reconcile.reads import IndexReads
from hastack_operator.reconcile.status_patch import cleaned, status_changed


def test_events_during_a_run_make_exactly_one_more_run() -> None:
    c = Coalescer()
    runs: list[int] = []
    entered, release = threading.Event(), threading.Event()

    def slow() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            entered.set()
            assert release.wait(5)

    t = threading.Thread(target=lambda: c.run("web", slow))
    t.start()
    assert entered.wait(5)
    # three more triggers while the first run is busy: none runs itself, one more run follows
    assert [c.run("web", slow) for _ in range(3)] == [False, False, False]
    assert c.run("db", lambda: None) is True  # other keys are not held up
    release.set()
    t.join(5)
    assert runs == [0, 1]
    assert c.run("web", slow) is True and runs == [0, 1, 2]


def test_a_failing_run_releases_its_key() -> None:
    c = Coalescer()

    def boom() -> None:
        raise RuntimeError("API down")

    with pytest.raises(RuntimeError):
        c.run("web", boom)
    assert c.run("web", lambda: None) is True


names_ = st.frozensets(st.tuples(st.sampled_from(["v1", "apps/v1", "policy/v1"]),
                                 st.sampled_from(["Service", "StatefulSet", "PodDisruptionBudget"]),
                                 st.text("abcdef-0123", min_size=1, max_size=12)), max_size=12)


@given(names_)
def test_the_record_on_the_anchor_round_trips(names: frozenset[applied.Name]) -> None:
    anchor: dict[str, Any] = {"apiVersion": "v1", "kind": "ServiceAccount",
              "metadata": {"name": "web-member", "annotations": {"keep": "me"}}}
    out = applied.with_record(anchor, names)
    assert applied.recorded_on(out) == names
    assert out["metadata"]["annotations"]["keep"] == "me"
    assert applied.ANNOTATION_APPLIED not in anchor["metadata"]["annotations"]  # a copy, not changed in place


@pytest.mark.parametrize("annotations", [None, {}, {applied.ANNOTATION_APPLIED: "not json"},
                                         {applied.ANNOTATION_APPLIED: '{"a": 1}'},
                                         {applied.ANNOTATION_APPLIED: '[["v1", "Service"]]'}])
def test_an_anchor_without_a_readable_record_means_unknown(annotations: dict[str, str] | None) -> None:
    anchor: dict[str, Any] = {"metadata": {"name": "x", **({"annotations": annotations} if annotations else {})}}
    assert applied.recorded_on(anchor) is None


def test_the_manifest_digest_ignores_key_order_and_sees_every_value() -> None:
    a = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"x": "1", "y": "2"}}
    b = {"data": {"y": "2", "x": "1"}, "metadata": {"name": "c"}, "kind": "ConfigMap", "apiVersion": "v1"}
    assert applied.digest(a) == applied.digest(b)
    assert applied.digest(a) != applied.digest({**a, "data": {"x": "1", "y": "3"}})


def test_a_status_with_null_fields_in_list_items_is_not_changed_when_stored_without_them() -> None:
    new = {"members": [{"name": "web-0", "state": "unknown", "lastSeen": None}], "phase": "Pending"}
    stored = {"members": [{"name": "web-0", "state": "unknown"}], "phase": "Pending"}
    assert not status_changed(stored, new)
    assert status_changed(stored, {**new, "phase": "Running"})
    assert cleaned(new)["members"] == stored["members"]


def test_a_null_dict_field_still_deletes_what_is_stored() -> None:
    stored = {"lastFailover": {"time": "t", "durationSeconds": 3}}
    new = {"lastFailover": {"time": "t", "durationSeconds": None}}
    assert status_changed(stored, new)
    assert cleaned(new) == new  # the null is sent: the merge patch removes the stored value


def pod(name: str, cluster: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "labels": {"hastack.io/cluster": cluster}}}


def test_index_reads_answer_from_the_indexes_without_the_api() -> None:
    web = {"metadata": {"name": "web", "namespace": "ns"},
           "spec": {"resources": [{"kind": "volume", "name": "data"}]}}
    gone = {"metadata": {"name": "old", "namespace": "ns", "deletionTimestamp": "t"},
            "spec": {"target": {"haCluster": "web"}}}
    mon = {"metadata": {"name": "http", "namespace": "ns"}, "spec": {"target": {"haCluster": "web"}}}
    indexes: dict[str, Any] = {
        "clusters_by_name": {("ns", "web"): [web]},
        "clusters_by_volume": {("ns", "data"): [web]},
        "volumes_by_name": {("ns", "data"): [{"metadata": {"name": "data"}}]},
        "monitors_by_cluster": {("ns", "web"): [mon, gone]},
        "members_by_cluster": {("ns", "web"): [pod("web-1", "web"), pod("web-0", "web")]},
        "statefulsets_by_name": {("ns", "web"): [{"metadata": {"name": "web"}}]},
        "claims_by_cluster": {("ns", "web"): []},
        "nodes_by_name": {("", "n1"): [{"metadata": {"name": "n1"}}]},
    }
    reads = IndexReads(None, indexes)  # type: ignore[arg-type]  # a miss would need the API: none here
    assert reads.cluster("ns", "web") == web
    assert reads.clusters_using("ns", "data") == [web] and reads.clusters_using("ns", "other") == []
    assert reads.volume("ns", "data") == {"metadata": {"name": "data"}}
    assert [m["metadata"]["name"] for m in reads.monitors("ns", "web")] == ["http"]  # deleting ones left out
    assert [p["metadata"]["name"] for p in reads.pods("ns", "web")] == ["web-0", "web-1"]
    assert reads.pods("ns", "nobody") == [] and reads.claims("ns", "web") == []
    assert reads.statefulset("ns", "web") == {"metadata": {"name": "web"}}
    assert reads.node("n1") == {"metadata": {"name": "n1"}}
    assert not reads.fresh


def test_conditions_are_sent_in_one_order_whoever_built_them() -> None:
    a = {"conditions": [{"type": "Updating", "status": "False"}, {"type": "Accepted", "status": "True"}]}
    b = {"conditions": [{"type": "Accepted", "status": "True"}, {"type": "Updating", "status": "False"}]}
    assert cleaned(a) == cleaned(b)
    assert not status_changed(cleaned(a), cleaned(b))


def test_builders_leave_their_inputs_alone() -> None:
    """Reconciles read shared index entries: a builder that changed its input would change what
    every later reconcile reads (a gated command wrapped twice, say)."""
    import copy
    import json

    from harness import samples
    from hastack_operator.resources import monitor_objects
    from hastack_operator.resources.cluster_set import desired
    from hastack_operator.resources.spec import HACluster, ReplicatedVolume

    body = samples.hacluster("c", "ns", resources=[{"kind": "service", "name": "c-a", "port": 80},
                                                   {"kind": "volume", "name": "d", "mountPath": "/data"},
                                                   {"kind": "monitor", "name": "m"}])
    body["metadata"].update(uid="u", generation=1)
    rv = samples.replicatedvolume("d", "ns")
    sm = samples.servicemonitor("m", "ns", target={"haCluster": "c", "port": 8000})
    before = copy.deepcopy([body, rv, sm])
    first = desired(HACluster.from_body(body), ReplicatedVolume.from_body(rv), [sm], "img")
    again = desired(HACluster.from_body(body), ReplicatedVolume.from_body(rv), [sm], "img")
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
    monitor_objects.desired(sm, "img")
    assert [body, rv, sm] == before
