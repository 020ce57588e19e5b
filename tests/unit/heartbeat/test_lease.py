"""Lease record <-> Lease object conversion (pure parts of lease.py)."""

from __future__ import annotations

import datetime as dt

from hastack_heartbeat.arbitration import LeaseRecord
from hastack_heartbeat.lease import ANNOTATION_HANDOVER, patch_body, to_record

NOW = dt.datetime(2026, 11, 24, 21, 0, 0, 123456, tzinfo=dt.UTC)


def test_to_record_from_api_dict_with_and_without_spec() -> None:
    obj = {"metadata": {"resourceVersion": "42", "annotations": {ANNOTATION_HANDOVER: "web-1",
                                                                 "hastack.io/outdated-1": "x"}},
           "spec": {"holderIdentity": "web-0", "leaseDurationSeconds": 4, "leaseTransitions": 3}}
    assert to_record(obj, 9.0) == LeaseRecord("web-0", "42", 4.0, 3, "web-1")
    assert to_record({"metadata": {"resourceVersion": "7"}}, 4.0) == LeaseRecord("", "7", 4.0, 0, "")


def test_patch_is_conditional_and_touches_only_our_fields() -> None:
    body = patch_body(LeaseRecord("web-1", "", 4.0, 4), "42", LeaseRecord("web-0", "42", 4.0, 3), NOW)
    assert body["metadata"] == {"resourceVersion": "42", "annotations": {ANNOTATION_HANDOVER: None}}
    assert body["spec"] == {"holderIdentity": "web-1", "leaseDurationSeconds": 4, "leaseTransitions": 4,
                            "renewTime": "2026-11-24T21:00:00.123456Z",
                            "acquireTime": "2026-11-24T21:00:00.123456Z"}
    renew = patch_body(LeaseRecord("web-1", "", 4.0, 4), "43", LeaseRecord("web-1", "43", 4.0, 4), NOW)
    assert "acquireTime" not in renew["spec"]
    release = patch_body(LeaseRecord("", "", 4.0, 4, handover="web-0"), "44", None, NOW)
    assert release["spec"]["holderIdentity"] is None and release["spec"]["renewTime"] is None
    assert release["metadata"]["annotations"] == {ANNOTATION_HANDOVER: "web-0"}
