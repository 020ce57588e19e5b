"""Online reload of ``heartbeat.yaml`` (DESIGN: changing timings never rolls pods).

The kubelet updates the mounted ConfigMap in every member at a different moment, so each member
applies new timings on its own, in any order, and safety does not depend on that order:

* deadTime: every acknowledgement carries the deadTime its sender promises (wire.py); the
  promise, not either member's configuration, bounds the acknowledgement right, and a member
  never calls a peer dead before any time it promised (membership.peer_state).
* leaseDuration / renewDeadline: each renewal writes the holder's current leaseDuration into the
  Lease, and the right from that renewal never outlasts the duration it wrote
  (arbitration.lease_until); standbys wait the duration of the record they observe.
* keepalive, warnTime, failover.*, gateGrace: take effect at once.

What a running member cannot change (its name, the members, the cluster, the Lease, the port,
the run directory, the secret file, the volume section) is reported and needs a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hastack_common.config_heartbeat import HeartbeatConfig
from hastack_common.durations import parse_duration
from hastack_common.logs import kv
from hastack_heartbeat import membership as m
from hastack_heartbeat.arbitration import Timings

log = logging.getLogger(__name__)
FIXED = ("cluster", "namespace", "members", "lease_name", "run_dir", "secret_file", "volume", "peer_domain")


def params_for(cfg: HeartbeatConfig, me: str, timings: Timings, ignore_outdated: bool = False) -> m.Params:
    f = cfg.failover
    return m.Params(
        me=me, peers=tuple(x for x in cfg.members if x != me), timings=timings,
        max_failures=f.max_failures, failure_timeout=parse_duration(f.failure_timeout),
        request_min_interval=parse_duration(f.request_min_interval), auto_failback=f.auto_failback,
        preferred=f.preferred_member, ignore_outdated=ignore_outdated,
    )


def restart_needed(old: HeartbeatConfig, new: HeartbeatConfig) -> list[str]:
    """The changed fields a running member cannot apply."""
    changed = [name for name in FIXED if getattr(old, name) != getattr(new, name)]
    if old.timing.port != new.timing.port:
        changed.append("timing.port")
    return changed


def timings_for(cfg: HeartbeatConfig, current: Timings) -> Timings:
    """The new file's timings; test-only switches of the running member carry over."""
    return dataclasses.replace(Timings.from_config(cfg.timing), fencing=current.fencing)


async def watch(path: Path, load: Callable[[str], HeartbeatConfig], apply: Callable[[HeartbeatConfig], None],
                rejected: Callable[[str], None], interval: float = 2.0) -> None:
    """Poll ``path`` (the kubelet swaps a ConfigMap's files atomically); apply a valid change, report
    an invalid one and keep running on the last good configuration."""
    last = await asyncio.to_thread(_read, path)
    while True:
        await asyncio.sleep(interval)
        text = await asyncio.to_thread(_read, path)
        if text is None or text == last:
            continue
        last = text
        try:
            cfg = load(text)
        except Exception as exc:  # pydantic's or check_timings' message names the field
            log.error("heartbeat.yaml change refused; running on the previous configuration",
                      extra=kv(error=str(exc)[:500]))
            rejected(str(exc)[:500])
            continue
        apply(cfg)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def describe(old: Timings, new: Timings) -> dict[str, Any]:
    return {k: f"{getattr(old, k)}->{getattr(new, k)}" for k in ("keepalive", "warn", "dead", "init_dead",
                                                                 "lease_duration", "renew_period", "renew_deadline")
            if getattr(old, k) != getattr(new, k)}
