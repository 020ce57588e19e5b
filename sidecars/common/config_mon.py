"""Typed configuration of the mon sidecar, rendered by the operator from ServiceMonitor specs.

Field names mirror ``servicemonitors.hastack.io`` (``spec.target``, ``spec.probes[]`` keyed by
``name``, ``spec.alert``, ``spec.receivers``). The operator writes one YAML file per sidecar
(``MonConfig`` dumped with ``by_alias=True``); mon reads it and reloads it on change.
Durations are Go-style strings ("500ms", "3s") as in the CRDs.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from hastack_common.durations import parse_duration


def _check_duration(value: str) -> str:
    if parse_duration(value) < 0:
        raise ValueError(f"duration {value!r} must not be negative")
    return value


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from exc
    return value


Duration = Annotated[str, AfterValidator(_check_duration)]
Regex = Annotated[str, AfterValidator(_check_regex)]
Port = Annotated[int, Field(ge=1, le=65535)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel, frozen=True)


def _exactly_one(model: BaseModel, fields: tuple[str, ...], what: str) -> str:
    chosen = [f for f in fields if getattr(model, f) is not None]
    if len(chosen) != 1:
        names = ", ".join(to_camel(f) for f in fields)
        got = ", ".join(chosen) or "none"
        raise ValueError(f"{what} needs exactly one of {names}; got {len(chosen)} ({got})")
    return chosen[0]


class Target(_Model):
    """What to probe: a Service (``<name>.<namespace>.svc``), a HACluster or a host."""

    service: str | None = None
    ha_cluster: str | None = None
    host: str | None = None
    port: Port | None = None

    @model_validator(mode="after")
    def _one(self) -> Target:
        _exactly_one(self, ("service", "ha_cluster", "host"), "spec.target")
        return self


class TcpCheck(_Model):
    port: Port | None = None
    send: str | None = None
    expect: Regex | None = None


class HttpCheck(_Model):
    url: str | None = None  # full URL; otherwise built from the target, port and path
    port: Port | None = None
    path: str = "/"
    method: str = "GET"
    headers: dict[str, str] = {}
    body: str | None = None
    expected_status: list[Annotated[int, Field(ge=100, le=599)]] = []  # empty: any 2xx
    body_regex: Regex | None = None
    tls_verify: bool = True
    ca_file: str | None = None
    client_cert_file: str | None = None
    client_key_file: str | None = None
    server_name: str | None = None
    follow_redirects: bool = True
    max_redirects: Annotated[int, Field(ge=0, le=50)] = 10


DnsType = Literal["A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT"]


class DnsCheck(_Model):
    name: str
    type: DnsType = "A"
    server: str | None = None  # host or host:port; default: the target host, port 53
    expect: list[str] = []  # every listed answer must be present
    rcode: Literal["NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED"] = "NOERROR"


class TlsCheck(_Model):
    port: Port | None = None
    server_name: str | None = None
    min_days_left: Annotated[float, Field(ge=0)] = 14.0
    tls_verify: bool = True
    ca_file: str | None = None


class ExecCheck(_Model):
    command: Annotated[list[str], Field(min_length=1)]
    expect_exit_code: int = 0
    output_regex: Regex | None = None
    env: dict[str, str] = {}


PROBE_KINDS = ("tcp", "http", "https", "dns", "tls", "exec")


class Probe(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$", max_length=63)]
    interval: Duration = "30s"
    timeout: Duration = "5s"
    jitter: Duration | None = None  # default: 10 % of the interval
    tcp: TcpCheck | None = None
    http: HttpCheck | None = None
    https: HttpCheck | None = None
    dns: DnsCheck | None = None
    tls: TlsCheck | None = None
    exec: ExecCheck | None = None

    @model_validator(mode="after")
    def _check(self) -> Probe:
        _exactly_one(self, PROBE_KINDS, f"probe {self.name!r}")
        if parse_duration(self.interval) <= 0:
            raise ValueError(f"probe {self.name!r}: interval must be positive")
        if parse_duration(self.timeout) <= 0:
            raise ValueError(f"probe {self.name!r}: timeout must be positive")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in PROBE_KINDS if getattr(self, k) is not None)


class Alert(_Model):
    """mon's alert rule: ``alertafter`` (N, optionally within a window), ``alertevery``, ``upalert``,
    ``depend``."""

    after: Annotated[int, Field(ge=1)] = 1
    within: Duration | None = None
    every: Duration | None = None
    up_alert: bool = False
    depends_on: list[str] = []


class EventReceiver(_Model):
    reason: str = "ProbeFailed"


class WebhookReceiver(_Model):
    url: str
    timeout: Duration = "5s"
    retries: Annotated[int, Field(ge=0, le=100)] = 5
    backoff: Duration = "500ms"
    max_backoff: Duration = "30s"
    headers: dict[str, str] = {}
    tls_verify: bool = True
    ca_file: str | None = None


class AlertmanagerReceiver(_Model):
    url: str  # base URL, e.g. http://alertmanager:9093
    timeout: Duration = "5s"
    resend: Duration = "1m"
    labels: dict[str, str] = {}


class FailoverReceiver(_Model):
    ha_cluster: str
    socket: str = "/run/hastack/heartbeat.sock"


RECEIVER_KINDS = ("event", "webhook", "alertmanager", "failover")


class Receiver(_Model):
    name: str
    event: EventReceiver | None = None
    webhook: WebhookReceiver | None = None
    alertmanager: AlertmanagerReceiver | None = None
    failover: FailoverReceiver | None = None

    @model_validator(mode="after")
    def _one(self) -> Receiver:
        _exactly_one(self, RECEIVER_KINDS, f"receiver {self.name!r}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in RECEIVER_KINDS if getattr(self, k) is not None)


class ServiceMonitorSpec(_Model):
    target: Target
    probes: Annotated[list[Probe], Field(min_length=1)]
    alert: Alert = Alert()
    receivers: list[Receiver] = []

    @model_validator(mode="after")
    def _unique(self) -> ServiceMonitorSpec:
        probes, receivers = [p.name for p in self.probes], [r.name for r in self.receivers]
        for what, names in (("probe", probes), ("receiver", receivers)):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{what} names must be unique; repeated: {', '.join(dup)}")
        return self


class MonitorConfig(_Model):
    name: str
    namespace: str = "default"
    uid: str | None = None
    spec: ServiceMonitorSpec


class MonConfig(_Model):
    """The whole file mon reads: every ServiceMonitor this process runs, plus process settings."""

    monitors: list[MonitorConfig] = []
    max_concurrency: Annotated[int, Field(ge=1, le=100_000)] = 256
    metrics_address: str = "0.0.0.0:9813"
    control_socket: str = "/run/hastack/mon.sock"
    alerting: Literal["always", "active"] = "always"  # "active": only while this member is active
    state_file: str = "/run/hastack/state.json"
    status_interval: Duration = "2s"

    @model_validator(mode="after")
    def _unique(self) -> MonConfig:
        keys = [(m.namespace, m.name) for m in self.monitors]
        dup = sorted({f"{ns}/{n}" for ns, n in keys if keys.count((ns, n)) > 1})
        if dup:
            raise ValueError(f"monitors must be unique by namespace/name; repeated: {', '.join(dup)}")
        return self
