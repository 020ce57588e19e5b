"""Typed configuration of the mon sidecar, rendered by the operator from ServiceMonitor specs.

Field names mirror ``servicemonitors.hastack.io`` (``spec.target``, ``spec.probes[]`` keyed by
``name``, ``spec.alert``, ``spec.receivers``). The operator writes one YAML file per sidecar
(``MonConfig`` dumped with ``by_alias=True``); mon reads it and reloads it on change.
Durations are Go-style strings ("500ms", "3s") as in the CRDs.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from hastack_common.consts import HEARTBEAT_SOCKET, MON_SOCKET, STATE_FILE
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
    """CRD fields, plus what the operator renders from Secrets (clientCertFile, clientKeyFile, caFile)."""

    port: Port | None = None
    path: str = "/"
    method: str = "GET"
    headers: dict[str, str] = {}
    body: str | None = None
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] = []  # empty: 200-399
    body_regex: Regex | None = None
    insecure_skip_verify: bool = False
    follow_redirects: bool = True
    client_cert_secret: str | None = None  # the operator mounts it and sets the two files below
    client_cert_file: str | None = None
    client_key_file: str | None = None
    ca_file: str | None = None
    server_name: str | None = None
    url: str | None = None  # a full URL instead of the target, port and path (standalone use)
    max_redirects: Annotated[int, Field(ge=0, le=50)] = 10


DnsType = Literal["A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT"]


class DnsCheck(_Model):
    name: str
    record_type: DnsType = "A"
    server: str | None = None  # host or host:port; default: the target host, port 53
    expect: list[str] = []  # every listed answer must be present
    rcode: Literal["NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED"] = "NOERROR"


class TlsCheck(_Model):
    port: Port | None = None
    server_name: str | None = None
    min_days_left: Annotated[float, Field(ge=0)] = 14
    insecure_skip_verify: bool = False
    ca_file: str | None = None


class ExecCheck(_Model):
    command: Annotated[list[str], Field(min_length=1)]
    expect_exit_code: int = 0
    expect_output: Regex | None = None
    env: dict[str, str] = {}


PROBE_KINDS = ("tcp", "http", "https", "dns", "tls", "exec")
ProbeType = Literal["tcp", "http", "https", "dns", "tls", "exec"]


class Probe(_Model):
    """One probe. ``type`` names the block that configures it (``https`` uses the ``http`` block);
    tcp, http(s) and tls blocks may be left out (defaults), dns and exec need theirs. Without
    ``type``, the one block given decides."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
    type: ProbeType | None = None
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
        blocks = [k for k in PROBE_KINDS if getattr(self, k) is not None]
        if self.type is None and len(blocks) != 1:
            kinds = ", ".join(PROBE_KINDS)
            raise ValueError(f"probe {self.name!r} needs a type ({kinds}) or exactly one block")
        if self.type in ("dns", "exec") and getattr(self, self.type) is None:
            raise ValueError(f"probe {self.name!r}: a {self.type} probe needs the {self.type} block")
        if parse_duration(self.interval) <= 0:
            raise ValueError(f"probe {self.name!r}: interval must be positive")
        if parse_duration(self.timeout) <= 0:
            raise ValueError(f"probe {self.name!r}: timeout must be positive")
        return self

    @property
    def kind(self) -> str:
        if self.type is not None:
            return self.type
        return next(k for k in PROBE_KINDS if getattr(self, k) is not None)

    def http_check(self) -> HttpCheck:
        return self.https or self.http or HttpCheck()


class Alert(_Model):
    """mon's alert rule: ``alertafter`` (N in a row, or failuresWithin N within a window),
    ``alertevery``, ``upalert``, ``depend``. Defaults are the CRD's."""

    after: Annotated[int, Field(ge=1)] = 1
    within: Duration | None = None
    failures_within: Annotated[int, Field(ge=1)] | None = None
    every: Duration = "1h"  # "0s": alert once per outage
    up_alert: bool = True
    depends_on: list[str] = []

    @model_validator(mode="after")
    def _window(self) -> Alert:
        if (self.within is None) != (self.failures_within is None):
            raise ValueError("alert.within and alert.failuresWithin go together")
        return self


RECEIVER_KINDS = ("event", "webhook", "alertmanager", "failover")


class Receiver(_Model):
    """CRD fields (name, type, url, timeout, retries, headersSecret) plus mon's own knobs."""

    name: str
    type: Literal["event", "webhook", "alertmanager", "failover"]
    url: str | None = None
    timeout: Duration = "5s"
    retries: Annotated[int, Field(ge=1, le=100)] = 5  # delivery attempts before giving up
    headers_secret: str | None = None  # the operator renders its keys into ``headers``
    headers: dict[str, str] = {}
    backoff: Duration = "500ms"  # first retry delay, doubled up to maxBackoff
    max_backoff: Duration = "30s"
    insecure_skip_verify: bool = False
    ca_file: str | None = None
    resend: Duration = "1m"  # alertmanager: push firing alerts again this often
    labels: dict[str, str] = {}  # alertmanager: extra labels
    reason: str = "ProbeFailed"  # event: the Event's reason for a down alert
    ha_cluster: str | None = None  # failover: default spec.target.haCluster
    socket: str = HEARTBEAT_SOCKET  # failover: heartbeat's control socket

    @model_validator(mode="after")
    def _url(self) -> Receiver:
        if self.type in ("webhook", "alertmanager") and not self.url:
            raise ValueError(f"receiver {self.name!r}: webhook and alertmanager receivers need url")
        return self

    @property
    def kind(self) -> str:
        return self.type


class ServiceMonitorSpec(_Model):
    target: Target
    probes: Annotated[list[Probe], Field(min_length=1)]
    alert: Alert = Alert()
    receivers: list[Receiver] = []

    @model_validator(mode="after")
    def _unique(self) -> ServiceMonitorSpec:
        if any(r.type == "failover" and not (r.ha_cluster or self.target.ha_cluster) for r in self.receivers):
            raise ValueError("a failover receiver needs target.haCluster (or its own haCluster)")
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
    control_socket: str = MON_SOCKET
    alerting: Literal["always", "active"] = "always"  # "active": only while this member is active
    state_file: str = STATE_FILE
    status_interval: Duration = "2s"
    publish_status: bool = True  # the hastack.io/monitor-status annotation on this pod (HASTACK_POD_NAME)

    @model_validator(mode="after")
    def _unique(self) -> MonConfig:
        keys = [(m.namespace, m.name) for m in self.monitors]
        dup = sorted({f"{ns}/{n}" for ns, n in keys if keys.count((ns, n)) > 1})
        if dup:
            raise ValueError(f"monitors must be unique by namespace/name; repeated: {', '.join(dup)}")
        return self


def monitor_from_object(obj: dict[str, Any]) -> MonitorConfig:
    """A ServiceMonitor as the API returns it -> its ``monitors[]`` entry (raises ValidationError)."""
    meta = obj.get("metadata", {})
    return MonitorConfig.model_validate(
        {
            "name": meta.get("name"),
            "namespace": meta.get("namespace", "default"),
            "uid": meta.get("uid"),
            "spec": obj.get("spec", {}),
        }
    )


def render(config: MonConfig) -> str:
    """The YAML file mon reads (what the operator puts in the member pods' ConfigMap)."""
    import yaml

    return str(yaml.safe_dump(config.model_dump(by_alias=True, exclude_none=True), sort_keys=False))
