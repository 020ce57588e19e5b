"""Typed configuration of the heartbeat sidecar, rendered by the operator from a HACluster.

Field names mirror ``haclusters.hastack.io`` (``spec.heartbeat`` and ``spec.failover``). The
operator writes it as YAML (``HeartbeatConfig.model_dump(by_alias=True)``) into the member's
ConfigMap; the per-cluster secret is a mounted file. The pod's own name and namespace come from
the environment (``HASTACK_POD_NAME``, ``HASTACK_NAMESPACE``), so one file serves every member.

Durations are Go-style strings ("500ms", "3s"), as in the CRD. The timings must satisfy the
inequalities of :func:`check_timings` (docs/heartbeat.md, "Why it is safe"); a configuration that
breaks them is refused with a message naming the inequality.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from hastack_common import consts as c
from hastack_common.durations import parse_duration


def _check_duration(value: str) -> str:
    if parse_duration(value) < 0:
        raise ValueError(f"duration {value!r} must not be negative")
    return value


Duration = Annotated[str, AfterValidator(_check_duration)]
Port = Annotated[int, Field(ge=1, le=65535)]
DEFAULT_SAFETY_MARGIN = "500ms"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel, frozen=True)


class Timing(_Model):
    """Heartbeat's knobs (``spec.heartbeat``) plus the Lease timings and the fencing margin."""

    keepalive: Duration = c.DEFAULT_KEEPALIVE
    warn_time: Duration = c.DEFAULT_WARN_TIME
    dead_time: Duration = c.DEFAULT_DEAD_TIME
    init_dead: Duration = c.DEFAULT_INIT_DEAD
    port: Port = c.HEARTBEAT_PORT
    lease_duration: Duration = c.DEFAULT_LEASE_DURATION
    renew_period: Duration = c.DEFAULT_RENEW_PERIOD
    renew_deadline: Duration = c.DEFAULT_RENEW_DEADLINE
    # Time the active keeps in hand for demoting itself (and for clock-rate differences):
    # its right to stay active ends this much before any standby could act.
    safety_margin: Duration = DEFAULT_SAFETY_MARGIN

    def seconds(self, field: str) -> float:
        return parse_duration(getattr(self, field))

    @model_validator(mode="after")
    def _safe(self) -> Timing:
        problems = check_timings(self)
        if problems:
            raise ValueError("unsafe heartbeat timings: " + "; ".join(problems))
        return self


def check_timings(t: Timing) -> list[str]:
    """Every broken inequality, as a sentence an operator can act on (empty when safe)."""
    s = t.seconds
    ka, warn, dead, init = s("keepalive"), s("warn_time"), s("dead_time"), s("init_dead")
    lease, period, deadline, margin = (s("lease_duration"), s("renew_period"), s("renew_deadline"),
                                       s("safety_margin"))
    out = []
    if ka <= 0:
        out.append("keepalive must be greater than 0")
    if not ka < warn < dead:
        out.append(f"need keepalive < warnTime < deadTime, got {t.keepalive} / {t.warn_time} / {t.dead_time}")
    if dead < 3 * ka:
        out.append(f"deadTime ({t.dead_time}) must be at least 3 keepalives, or one lost packet "
                   "declares a peer dead")
    if init < dead:
        out.append(f"initDead ({t.init_dead}) must be at least deadTime ({t.dead_time}): a restarted "
                   "member must not declare the active dead sooner than a running one would")
    if not 0 < period < deadline:
        out.append(f"need 0 < renewPeriod < renewDeadline, got {t.renew_period} / {t.renew_deadline}")
    if lease != int(lease) or lease < 1:
        out.append(f"leaseDuration ({t.lease_duration}) must be a whole number of seconds (the Lease "
                   "stores leaseDurationSeconds)")
    if margin <= 0:
        out.append("safetyMargin must be greater than 0")
    if deadline + margin > lease:
        out.append(f"renewDeadline ({t.renew_deadline}) + safetyMargin ({t.safety_margin}) must not exceed "
                   f"leaseDuration ({t.lease_duration}): the active must have demoted before any standby "
                   "can see the Lease expire")
    if dead - margin <= ka:
        out.append(f"deadTime ({t.dead_time}) - safetyMargin ({t.safety_margin}) must exceed keepalive "
                   f"({t.keepalive}), or peer acknowledgements can never keep the active in place")
    return out


class Failover(_Model):
    """``spec.failover`` as heartbeat needs it."""

    auto_failback: bool = False
    preferred_member: str | None = None  # pod name of the preferred member (autoFailback)
    max_failures: Annotated[int, Field(ge=1, le=100)] = 3
    failure_timeout: Duration = "10m"
    # mon's failover requests: at most one per this period is honoured.
    request_min_interval: Duration = "60s"
    # the monitor operation: an app that exited (its gate says so) and has not run again for this
    # long fails the resource group over (the kubelet restarts it meanwhile; CrashLoopBackOff
    # waits 10 s, then 20 s, ...).
    app_down_after: Duration = "15s"


class Volume(_Model):
    """The ReplicatedVolume of the resource group, as heartbeat's volume agents need it."""

    blockrepl_socket: str = c.BLOCKREPL_SOCKET
    nbd_uri: str = f"nbd+unix:///hastack?socket={c.RUN_DIR}/blockrepl-nbd.sock"
    expose_dir: str = f"{c.RUN_DIR}/expose"  # nbdfuse mount, pid file, exposure record
    mount_dir: str  # the member's hostPath directory, e.g. /var/lib/hastack/mounts/<ns>/<pod>
    fs_type: Literal["ext4", "xfs", "btrfs"] = "ext4"
    fsck: bool = True
    # In a pod, mount only once a start gate has started (at most this long; "0s": do not wait).
    # The kubelet makes an app container's subPath by bind-mounting the member's directory when
    # the container starts: made before the mount, that bind sees the filesystem by propagation;
    # made after it, the bind holds the filesystem itself, and no demotion can unmount it.
    wait_for_gate: Duration = "0s"


class HeartbeatConfig(_Model):
    """The whole file ``heartbeat.yaml``."""

    cluster: str  # HACluster name
    namespace: str
    members: list[str] = Field(min_length=1, max_length=5)  # pod names, ordinal order
    peer_domain: str  # per-pod DNS name of a member = "<pod>.<peerDomain>"
    lease_name: str
    timing: Timing = Timing()
    failover: Failover = Failover()
    secret_file: str = "/etc/hastack/heartbeat/secret"
    run_dir: str = c.RUN_DIR
    metrics_port: Port = 9694
    gate_grace: Duration = "10s"  # TERM -> KILL grace the start gate gives the app
    # DNS name or address of each member, when not "<pod>.<peerDomain>" (tests, host daemons).
    addresses: dict[str, str] = {}
    volume: Volume | None = None

    @model_validator(mode="after")
    def _members(self) -> HeartbeatConfig:
        if len(set(self.members)) != len(self.members):
            raise ValueError(f"members must be distinct, got {self.members}")
        pref = self.failover.preferred_member
        if pref is not None and pref not in self.members:
            raise ValueError(f"failover.preferredMember {pref!r} is not one of the members {self.members}")
        unknown = set(self.addresses) - set(self.members)
        if unknown:
            raise ValueError(f"addresses name unknown members: {sorted(unknown)}")
        return self

    def address_of(self, member: str) -> str:
        return self.addresses.get(member) or f"{member}.{self.peer_domain}"


def load(text: str) -> HeartbeatConfig:
    """Parse the rendered YAML; raises ``ValueError`` with pydantic's field-by-field message."""
    import yaml

    data = yaml.safe_load(text) or {}
    return HeartbeatConfig.model_validate(data)
