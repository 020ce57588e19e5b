"""The HACluster's ``coordination.k8s.io/v1`` Lease, through the Kubernetes Python client.

Two calls, both run in a worker thread with a bounded request timeout (never per packet):
``get`` and a conditional ``update`` -- a merge patch carrying the last seen
``metadata.resourceVersion``, so the API server refuses it with 409 if anyone wrote the Lease
since (optimistic concurrency), and leaves every other field and annotation alone (blockrepl
records Outdated replicas in annotations of the same Lease). Outcomes are the core's words:
ok, conflict (with the current record), notfound, unreachable.

``LeaseRecord`` <-> Lease object conversion is pure and unit-tested; the operator creates the
Lease with metadata only (DESIGN), the members own its spec. The holder also writes and removes
``outdated.hastack.io/<member>`` annotations (``annotate``: conditional on the version it read,
and only while the record names it holder); ``to_record`` reads them into ``outdated``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

from hastack_common.consts import GROUP
from hastack_common.logs import kv
from hastack_common.outdate_peer import outdated_members
from hastack_heartbeat.arbitration import LeaseRecord

log = logging.getLogger(__name__)
ANNOTATION_HANDOVER = f"{GROUP}/handover"


def micro_time(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_record(obj: Any, default_duration: float) -> LeaseRecord:
    """A Lease (client model or dict from the API) as the core sees it."""
    d = obj if isinstance(obj, dict) else obj.to_dict()
    meta, spec = d.get("metadata") or {}, d.get("spec") or {}
    ann = meta.get("annotations") or {}
    duration = spec.get("lease_duration_seconds", spec.get("leaseDurationSeconds"))
    transitions = spec.get("lease_transitions", spec.get("leaseTransitions")) or 0
    holder = spec.get("holder_identity", spec.get("holderIdentity")) or ""
    return LeaseRecord(
        holder=holder,
        resource_version=str(meta.get("resource_version") or meta.get("resourceVersion") or ""),
        duration=float(duration) if duration else default_duration,
        transitions=int(transitions),
        handover=ann.get(ANNOTATION_HANDOVER, ""),
        outdated={member: rec.by for member, rec in outdated_members(ann).items()},
    )


def patch_body(rec: LeaseRecord, expected_version: str, old: LeaseRecord | None,
               now: dt.datetime) -> dict[str, Any]:
    """Merge patch writing ``rec`` only if the Lease is still at ``expected_version``."""
    spec: dict[str, Any] = {
        "holderIdentity": rec.holder or None,
        "leaseDurationSeconds": int(rec.duration),
        "leaseTransitions": rec.transitions,
        "renewTime": micro_time(now) if rec.holder else None,
    }
    if rec.holder and (old is None or old.holder != rec.holder):
        spec["acquireTime"] = micro_time(now)
    return {
        "metadata": {"resourceVersion": expected_version,
                     "annotations": {ANNOTATION_HANDOVER: rec.handover or None}},
        "spec": spec,
    }


class KubeLease:
    """Blocking calls run in a thread; each bounded by ``timeout`` seconds end to end."""

    def __init__(self, api_client: Any, namespace: str, name: str, timeout: float, default_duration: float):
        from kubernetes import client

        self.api = client.CoordinationV1Api(api_client)
        self.namespace, self.name, self.timeout = namespace, name, timeout
        self.default_duration = default_duration

    def _get_blocking(self) -> LeaseRecord:
        obj = self.api.read_namespaced_lease(self.name, self.namespace, _request_timeout=self.timeout)
        return to_record(obj, self.default_duration)

    def _update_blocking(self, rec: LeaseRecord, expected: str, old: LeaseRecord | None) -> LeaseRecord:
        body = patch_body(rec, expected, old, dt.datetime.now(dt.UTC))
        obj = self.api.patch_namespaced_lease(self.name, self.namespace, body, _request_timeout=self.timeout,
                                             _content_type="application/merge-patch+json")
        return to_record(obj, self.default_duration)

    def _annotate_blocking(self, me: str, key: str, value: str | None, deadline: float) -> tuple[str, LeaseRecord]:
        """Write one annotation while the Lease names ``me`` as holder: read, then a merge patch
        conditional on that resourceVersion; a conflict reads again, until ``deadline``."""
        from kubernetes.client.exceptions import ApiException

        while True:
            obj = self.api.read_namespaced_lease(self.name, self.namespace, _request_timeout=self.timeout)
            rec = to_record(obj, self.default_duration)
            if rec.holder != me:
                return "notholder", rec
            body = {"metadata": {"resourceVersion": rec.resource_version, "annotations": {key: value}}}
            try:
                obj = self.api.patch_namespaced_lease(self.name, self.namespace, body,
                                                      _request_timeout=self.timeout,
                                                      _content_type="application/merge-patch+json")
                return "ok", to_record(obj, self.default_duration)
            except ApiException as exc:
                if exc.status != 409 or time.monotonic() >= deadline:
                    raise

    async def annotate(self, me: str, key: str, value: str | None,
                       timeout: float) -> tuple[str, LeaseRecord | None]:
        """Outcomes: ok, notholder (with the record read), unreachable."""
        from kubernetes.client.exceptions import ApiException

        try:
            return await asyncio.wait_for(
                asyncio.to_thread(self._annotate_blocking, me, key, value, time.monotonic() + timeout),
                timeout + self.timeout + 0.5)
        except ApiException as exc:
            log.warning("Lease annotation not written", extra=kv(key=key, status=exc.status, reason=exc.reason))
            return "unreachable", None
        except Exception as exc:  # urllib3 errors, timeouts
            log.warning("Lease annotation not written", extra=kv(key=key, error=type(exc).__name__,
                                                                 detail=str(exc)[:200]))
            return "unreachable", None

    async def call(self, kind: str, rec: LeaseRecord | None, expected: str,
                   old: LeaseRecord | None) -> tuple[str, LeaseRecord | None]:
        from kubernetes.client.exceptions import ApiException

        try:
            if kind == "get":
                got = await asyncio.wait_for(asyncio.to_thread(self._get_blocking), self.timeout + 0.5)
                return "ok", got
            assert rec is not None
            try:
                got = await asyncio.wait_for(asyncio.to_thread(self._update_blocking, rec, expected, old),
                                             self.timeout + 0.5)
                return "ok", got
            except ApiException as exc:
                if exc.status != 409:
                    raise
                current = await asyncio.wait_for(asyncio.to_thread(self._get_blocking), self.timeout + 0.5)
                return "conflict", current
        except ApiException as exc:
            if exc.status == 404:
                return "notfound", None
            log.warning("Lease call failed", extra=kv(op=kind, status=exc.status, reason=exc.reason))
            return "unreachable", None
        except Exception as exc:  # urllib3 errors, timeouts: API unreachable
            log.warning("Lease call failed",
                        extra=kv(op=kind, error=type(exc).__name__, detail=str(exc)[:200]))
            return "unreachable", None


class NoLease:
    """Membership only, no arbitration: every Lease call is 'unreachable', so nobody becomes active."""

    async def call(self, kind: str, rec: LeaseRecord | None, expected: str,
                   old: LeaseRecord | None) -> tuple[str, LeaseRecord | None]:
        return "unreachable", None

    async def annotate(self, me: str, key: str, value: str | None,
                       timeout: float) -> tuple[str, LeaseRecord | None]:
        return "unreachable", None
