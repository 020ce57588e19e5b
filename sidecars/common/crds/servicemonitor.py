"""ServiceMonitor (servicemonitors.hastack.io): probes with mon's alert rules and receivers."""

from __future__ import annotations

from hastack_common import consts as c
from hastack_common.crds.schema import (
    AGE,
    DNS_LABEL_PATTERN,
    Schema,
    array,
    boolean,
    column,
    conditions,
    crd,
    duration,
    integer,
    obj,
    rule,
    string,
    string_list,
    string_map,
)

PROBE_TYPES = ["tcp", "http", "https", "dns", "tls", "exec"]
RECEIVER_TYPES = ["event", "webhook", "alertmanager", "failover"]

TARGET = obj(
    "What to probe: exactly one of service, haCluster or host.",
    {
        "service": string("A Service in this namespace (probed by its cluster DNS name).",
                          pattern=DNS_LABEL_PATTERN, max_length=63),
        "haCluster": string("A HACluster in this namespace: its members' mon sidecars probe the app "
                            "locally; the active member's mon evaluates alerts.",
                            pattern=DNS_LABEL_PATTERN, max_length=63),
        "host": string("A host name or IP address."),
        "port": integer("Default port for the probes.", minimum=1, maximum=65535),
    },
    rules=[rule("[has(self.service), has(self.haCluster), has(self.host)].filter(x, x).size() == 1",
                "target needs exactly one of service, haCluster or host")],
)

_TCP = obj("tcp probe: connect, optionally send and expect.", {
    "port": integer("Port (default: target.port).", minimum=1, maximum=65535),
    "send": string("Bytes to send after connecting.", max_length=4096),
    "expect": string("Regular expression the reply must match.", max_length=4096),
})
_HTTP = obj("http/https probe.", {
    "port": integer("Port (default: target.port).", minimum=1, maximum=65535),
    "path": string("Request path.", default="/", pattern=r"^/.*", max_length=2048),
    "method": string("HTTP method.", enum=["GET", "HEAD", "POST", "PUT", "OPTIONS"], default="GET"),
    "headers": string_map("Request headers."),
    "body": string("Request body.", max_length=65536),
    "expectStatus": array("Accepted status codes (default: 200-399).",
                          {"type": "integer", "minimum": 100, "maximum": 599}, max_items=32),
    "bodyRegex": string("Regular expression the response body must match.", max_length=4096),
    "insecureSkipVerify": boolean("Do not verify the server certificate (https).", default=False),
    "followRedirects": boolean("Follow redirects.", default=True),
    "clientCertSecret": string("Secret with tls.crt and tls.key for a client certificate.",
                               pattern=DNS_LABEL_PATTERN, max_length=63),
})
_DNS = obj("dns probe: resolve a name.", {
    "name": string("Name to resolve."),
    "recordType": string("Record type.", enum=["A", "AAAA", "CNAME", "MX", "TXT", "SRV", "NS"],
                         default="A"),
    "expect": string_list("Answers that must all be present.", max_items=32, max_length=1024),
    "server": string("DNS server host[:port] (default: the target)."),
}, required=["name"])
_TLS = obj("tls probe: certificate expiry.", {
    "port": integer("Port (default: target.port).", minimum=1, maximum=65535),
    "serverName": string("SNI server name."),
    "minDaysLeft": integer("Fail when the certificate expires in fewer days.", default=14, minimum=0,
                           maximum=3650),
    "insecureSkipVerify": boolean("Report expiry without verifying the chain (self-signed certificates).",
                                  default=False),
})
_EXEC = obj("exec probe: run a command in the mon sidecar.", {
    "command": string_list("Command and arguments.", max_items=64),
    "expectExitCode": integer("Expected exit code.", default=0, minimum=0, maximum=255),
    "expectOutput": string("Regular expression the output must match.", max_length=4096),
}, required=["command"])

PROBE = obj(
    "One probe; its type names the block that configures it.",
    {
        "name": string("Probe name, unique in the monitor.", pattern=DNS_LABEL_PATTERN, max_length=63),
        "type": string("Probe type.", enum=PROBE_TYPES),
        "interval": duration("Time between probes.", default="30s"),
        "timeout": duration("Time a probe may take before it fails.", default="5s"),
        "tcp": _TCP, "http": _HTTP, "dns": _DNS, "tls": _TLS, "exec": _EXEC,
    },
    required=["name", "type"],
    rules=[
        rule("duration(self.timeout) <= duration(self.interval)", "timeout must not exceed interval"),
        rule("duration(self.interval) >= duration('100ms')", "interval must be at least 100ms"),
        rule("self.type != 'dns' || has(self.dns)", "a dns probe needs the dns block"),
        rule("self.type != 'exec' || has(self.exec)", "an exec probe needs the exec block"),
    ],
)

ALERT = obj(
    "mon's alert rules.",
    {
        "after": integer("Alert after this many consecutive failures (mon's alertafter).", default=1,
                         minimum=1, maximum=1000),
        "within": duration("With failuresWithin: alert after that many failures within this window."),
        "failuresWithin": integer("Alert after this many failures within `within`.", minimum=1,
                                  maximum=1000),
        "every": duration("Re-alert period while still failing (mon's alertevery); 0s alerts once.",
                          default="1h"),
        "upAlert": boolean("Send an up-alert on recovery (mon's upalert).", default=True),
        "dependsOn": string_list("ServiceMonitors in this namespace whose failure suppresses this one's "
                                 "alerts (mon's depend).", max_items=16, max_length=63),
    },
    default={},
    rules=[rule("has(self.within) == has(self.failuresWithin)",
                "within and failuresWithin go together")],
)

RECEIVER = obj(
    "Where alerts go.",
    {
        "name": string("Receiver name.", pattern=DNS_LABEL_PATTERN, max_length=63),
        "type": string("event (a Kubernetes Event on this object), webhook (JSON POST), alertmanager "
                       "(Alertmanager v2 API push), failover (move the target HACluster's resource "
                       "group).", enum=RECEIVER_TYPES),
        "url": string("URL of the webhook or Alertmanager.", pattern=r"^https?://.*", max_length=2048),
        "timeout": duration("Delivery timeout.", default="5s"),
        "retries": integer("Delivery attempts before giving up.", default=5, minimum=1, maximum=100),
        "headersSecret": string("Secret whose keys are sent as HTTP headers (webhook).",
                                pattern=DNS_LABEL_PATTERN, max_length=63),
    },
    required=["name", "type"],
    rules=[rule("!(self.type in ['webhook', 'alertmanager']) || has(self.url)",
                "webhook and alertmanager receivers need url")],
)

SPEC = obj(
    "Desired state of the ServiceMonitor.",
    {
        "target": TARGET,
        "probes": array("Probes, keyed by name.", PROBE, max_items=64, min_items=1, map_keys=["name"]),
        "alert": ALERT,
        "receivers": array("Alert receivers.", RECEIVER, max_items=16, default=[], map_keys=["name"]),
    },
    required=["target", "probes"],
    rules=[rule("!self.receivers.exists(r, r.type == 'failover') || has(self.target.haCluster)",
                "a failover receiver needs target.haCluster")],
)

_PROBE_STATUS = obj("Last result of one probe.", {
    "name": string("Probe name."),
    "lastResult": string("success or failure, with the reason.", max_length=1024),
    "consecutiveFailures": integer("Failures in a row.", minimum=0),
    "lastChange": string("When the result last changed.", max_length=64),
    "latency": string("Duration of the last probe.", max_length=64),
    "alert": string("Alert state: ok, pending, alerting, suppressed.", max_length=32),
    "reason": string("Why the alert state is what it is.", max_length=1024),
}, preserve_unknown=True)

STATUS: Schema = obj("Observed state, written by the operator only.", {
    "probes": array("Per-probe results.", _PROBE_STATUS, max_items=64),
    "summary": string("e.g. 3/3 up.", max_length=64),
    "alerting": integer("Probes currently alerting.", minimum=0),
    "observedGeneration": integer("The generation last reconciled.", minimum=0),
    "conditions": conditions(),
}, preserve_unknown=True)

DEFINITION = crd(
    group=c.GROUP, version=c.VERSION, kind="ServiceMonitor", plural=c.SERVICEMONITORS,
    short_names=["hasm"],
    description="Probes of a service with mon's alert rules (servicemonitors.hastack.io; not the "
                "Prometheus Operator's ServiceMonitor).",
    spec=SPEC, status=STATUS,
    printer_columns=[
        column("Target-Service", ".spec.target.service", priority=1),
        column("Cluster", ".spec.target.haCluster"),
        column("Probes", ".status.summary"),
        column("Alerting", ".status.alerting", kind="integer"),
        AGE,
    ],
)
