"""Leader election on a coordination.k8s.io/v1 Lease, so two operator replicas are safe.

Only the holder runs the handlers. A standby waits; the holder renews every
``renew_period`` and, if it cannot renew for ``renew_deadline``, stops at once (the
process exits and its pod restarts as a standby) — before the Lease, ``lease_duration``
long, can be taken by another instance. Expiry is judged on this process's monotonic
clock from the moment it last saw the record change, never on another host's wall clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from hastack_common.logs import kv
from hastack_operator import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaderSettings:
    namespace: str
    name: str = "hastack-operator"
    identity: str = ""
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    renew_period: float = 2.0


class LostLeadership(Exception):
    """The Lease could not be renewed within the renew deadline."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LeaderElector:
    def __init__(self, api: client.CoordinationV1Api, settings: LeaderSettings) -> None:
        self.api = api
        self.s = settings
        self._seen: tuple[Any, ...] | None = None
        self._seen_at = 0.0

    async def acquire(self) -> None:
        """Return once this instance holds the Lease."""
        while not await asyncio.to_thread(self._try_acquire_or_renew):  # noqa: ASYNC110 (polls the API)
            await asyncio.sleep(self.s.renew_period)
        metrics.LEADER.set(1)
        log.info("became leader", extra=kv(lease=self.s.name, identity=self.s.identity))

    async def hold(self) -> None:
        """Renew until renewing fails for renew_deadline; then raise LostLeadership."""
        last_ok = time.monotonic()
        while True:
            await asyncio.sleep(self.s.renew_period)
            try:
                renew = asyncio.to_thread(self._try_acquire_or_renew)
                ok = await asyncio.wait_for(renew, self.s.renew_period)
            except Exception as exc:
                log.warning("lease renewal failed", extra=kv(error=exc))
                ok = False
            if ok:
                last_ok = time.monotonic()
            elif time.monotonic() - last_ok >= self.s.renew_deadline - self.s.renew_period:
                metrics.LEADER.set(0)
                raise LostLeadership(f"could not renew Lease {self.s.namespace}/{self.s.name}")

    def release(self) -> None:
        try:
            lease = self.api.read_namespaced_lease(self.s.name, self.s.namespace)
            if lease.spec and lease.spec.holder_identity == self.s.identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = None
                self.api.replace_namespaced_lease(self.s.name, self.s.namespace, lease)
        except ApiException as exc:
            log.warning("could not release the leader lease", extra=kv(error=exc.reason))
        metrics.LEADER.set(0)

    def _try_acquire_or_renew(self) -> bool:
        now = _now()
        try:
            lease = self.api.read_namespaced_lease(self.s.name, self.s.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.s.name, namespace=self.s.namespace),
                spec=self._spec(now, acquire_time=now, transitions=0))
            try:
                self.api.create_namespaced_lease(self.s.namespace, body)
                return True
            except ApiException as exc2:
                if exc2.status == 409:
                    return False
                raise
        spec = lease.spec or client.V1LeaseSpec()
        version = lease.metadata.resource_version if lease.metadata else None
        record = (spec.holder_identity, spec.renew_time, version)
        if record != self._seen:
            self._seen, self._seen_at = record, time.monotonic()
        holder = spec.holder_identity
        duration = spec.lease_duration_seconds or int(self.s.lease_duration)
        expired = time.monotonic() - self._seen_at > duration
        if holder and holder != self.s.identity and not expired:
            return False
        mine = holder == self.s.identity
        lease.spec = self._spec(
            now,
            acquire_time=spec.acquire_time if mine else now,
            transitions=(spec.lease_transitions or 0) + (0 if mine else 1))
        try:
            self.api.replace_namespaced_lease(self.s.name, self.s.namespace, lease)
        except ApiException as exc:
            if exc.status == 409:  # someone else wrote it first: optimistic concurrency
                return False
            raise
        return True

    def _spec(self, now: dt.datetime, *, acquire_time: Any, transitions: int) -> client.V1LeaseSpec:
        return client.V1LeaseSpec(
            holder_identity=self.s.identity, lease_duration_seconds=int(self.s.lease_duration),
            acquire_time=acquire_time, renew_time=now, lease_transitions=transitions)
