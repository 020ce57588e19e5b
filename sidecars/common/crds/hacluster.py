"""HACluster: N member pods, exactly one active; Heartbeat's knobs; what moves on failover."""

from __future__ import annotations

from hastack_common import consts as c
from hastack_common.crds.schema import (
    AGE,
    DNS_LABEL_PATTERN,
    array,
    boolean,
    column,
    conditions,
    crd,
    duration,
    free_object,
    integer,
    obj,
    rule,
    string,
    string_list,
)

_CONTAINER = obj(
    "A container of the member pod. hastack starts it through the start gate, so it runs only while "
    "its member is active: `command` is required (the operator cannot read an image's entrypoint).",
    {
        "name": string("Container name.", pattern=DNS_LABEL_PATTERN, max_length=63),
        "image": string("Container image.", max_length=1024),
        "command": string_list("Entrypoint of the container (run as `/hastack/bin/gate -- <command>`)."),
        "args": string_list("Arguments to the command."),
    },
    required=["name", "command"],
    preserve_unknown=True,
)

TEMPLATE = obj(
    "Pod template of the user's containers (a Kubernetes PodTemplateSpec). hastack adds its sidecars, "
    "volumes, the start gate and anti-affinity; every container must give `command`.",
    {
        "metadata": free_object("Labels and annotations for the member pods."),
        "spec": obj("Pod spec of the user's containers.", {
            "containers": array("The user's containers.", _CONTAINER, max_items=16, min_items=1),
        }, required=["containers"], preserve_unknown=True),
    },
    required=["spec"],
    preserve_unknown=True,
)

_safe_timings = [
    rule("duration(self.warnTime) > duration(self.keepalive)", "warnTime must be greater than keepalive",
         reason="FieldValueInvalid"),
    rule("duration(self.deadTime) > duration(self.warnTime)", "deadTime must be greater than warnTime",
         reason="FieldValueInvalid"),
    rule("duration(self.initDead) >= duration(self.deadTime)", "initDead must be at least deadTime",
         reason="FieldValueInvalid"),
    rule("duration(self.renewPeriod) < duration(self.renewDeadline)",
         "renewPeriod must be less than renewDeadline", reason="FieldValueInvalid"),
    rule("duration(self.renewDeadline) < duration(self.leaseDuration)",
         "renewDeadline must be less than leaseDuration (the active demotes itself before its Lease "
         "can expire)", reason="FieldValueInvalid"),
    # heartbeat keeps a 500ms safety margin (hastack_common.config_heartbeat.check_timings)
    rule("duration(self.renewDeadline) + duration('500ms') <= duration(self.leaseDuration)",
         "renewDeadline + 500ms (heartbeat's safety margin) must not exceed leaseDuration",
         reason="FieldValueInvalid"),
    rule("duration(self.deadTime) - duration('500ms') > duration(self.keepalive)",
         "deadTime - 500ms (heartbeat's safety margin) must exceed keepalive", reason="FieldValueInvalid"),
    rule("duration(self.deadTime) >= duration(self.keepalive) + duration(self.keepalive) + "
         "duration(self.keepalive)",
         "deadTime must be at least 3 keepalives, or one lost packet declares a peer dead",
         reason="FieldValueInvalid"),
]

HEARTBEAT = obj(
    "Heartbeat's own knobs. Safety rests on keepalive < warnTime < deadTime and renewPeriod < "
    "renewDeadline < leaseDuration: an active that cannot renew demotes itself at renewDeadline, "
    "before any standby can acquire the Lease at leaseDuration.",
    {
        "keepalive": duration("Interval between heartbeats to every peer.", default=c.DEFAULT_KEEPALIVE),
        "warnTime": duration("A peer silent this long is reported as warn.", default=c.DEFAULT_WARN_TIME),
        "deadTime": duration("A peer silent this long is dead.", default=c.DEFAULT_DEAD_TIME),
        "initDead": duration("Grace period after start-up before a silent peer is declared dead.",
                             default=c.DEFAULT_INIT_DEAD),
        "port": integer("UDP port of the heartbeat.", default=c.HEARTBEAT_PORT, minimum=1, maximum=65535),
        "leaseDuration": string("Duration of the arbitration Lease, in whole seconds (the Lease stores "
                                "seconds), e.g. \"4s\".", default=c.DEFAULT_LEASE_DURATION,
                                pattern=r"^[1-9][0-9]*s$", max_length=8),
        "renewPeriod": duration("How often the active renews the Lease.", default=c.DEFAULT_RENEW_PERIOD),
        "renewDeadline": duration("The active demotes itself when it could not renew for this long.",
                                  default=c.DEFAULT_RENEW_DEADLINE),
    },
    default={},
    rules=_safe_timings,
)

FAILOVER = obj(
    "How failover and fencing behave.",
    {
        "autoFailback": boolean("Move back to preferredMember when it returns (Heartbeat's auto_failback).",
                                default=False),
        "preferredMember": integer("Ordinal of the member preferred as active (with autoFailback).",
                                   minimum=0, maximum=4),
        "fencing": string(
            "How a lost node is fenced: OutOfService taints it node.kubernetes.io/out-of-service and "
            "force-deletes the member pod so it is recreated; None waits for the node to return. "
            "Failover itself never waits for this: the Lease fences the old active.",
            enum=["OutOfService", "None"], default="OutOfService"),
        "fenceAfter": duration("How long a member's node must be NotReady before it is fenced.",
                               default="60s"),
        "replaceAfter": duration(
            "If the node stays lost this long, the member's PVC is deleted so a fresh replica is "
            "provisioned elsewhere and fully synced. \"0s\" never replaces.", default="15m"),
        "maxFailures": integer("Failures of the resource group on one member before it is not chosen "
                               "again until the failure count expires.", default=3, minimum=1, maximum=100),
        "failureTimeout": duration("How long a member's failure count is remembered.", default="10m"),
    },
    default={},
)

RESOURCE = obj(
    "One item of the resource group, moved with the active member in list order.",
    {
        "kind": string("service (a Service that routes to the active member), volume (a ReplicatedVolume "
                       "to promote and mount), monitor (a ServiceMonitor whose failure triggers failover).",
                       enum=["service", "volume", "monitor"]),
        "name": string("Name of the Service, ReplicatedVolume or ServiceMonitor in this namespace.",
                       pattern=DNS_LABEL_PATTERN, max_length=63),
        "mountPath": string("Where the user's containers see the volume's filesystem (kind volume).",
                            pattern=r"^/.*", max_length=1024),
        "port": integer("Port of the active Service (kind service).", minimum=1, maximum=65535),
        "targetPort": integer("Container port the active Service sends to (kind service).",
                              minimum=1, maximum=65535),
    },
    required=["kind", "name"],
    rules=[
        rule("self.kind != 'volume' || has(self.mountPath)", "a volume resource needs mountPath"),
        rule("self.kind == 'volume' || !has(self.mountPath)", "mountPath is only for a volume resource"),
    ],
)

SPEC = obj(
    "Desired state of the HACluster.",
    {
        "replicas": integer("Number of member pods, one per node.", default=2, minimum=2, maximum=5),
        "template": TEMPLATE,
        "heartbeat": HEARTBEAT,
        "failover": FAILOVER,
        "resources": array("The resource group, started in order on the active and stopped in reverse.",
                           RESOURCE, max_items=16, default=[],
                           rules=[rule("self.filter(r, r.kind == 'volume').size() <= 1",
                                       "a HACluster has at most one volume"),
                                  rule("self.all(r, self.exists_one(s, s.kind == r.kind && s.name == r.name))",
                                       "resources must not repeat")]),
        "mountRoot": string("Host directory under which each member's filesystem is mounted.",
                            default="/var/lib/hastack/mounts", pattern=r"^/.*", max_length=1024),
    },
    required=["template"],
    rules=[rule(
        "oldSelf.resources.filter(r, r.kind == 'volume').map(r, r.name) == "
        "self.resources.filter(r, r.kind == 'volume').map(r, r.name)",
        "the volume of a HACluster cannot be changed", reason="FieldValueForbidden",
        field_path=".resources")],
)

_MEMBER = obj("A member as the operator last saw it.", {
    "name": string("Pod name."),
    "node": string("Node the member runs on."),
    "state": string("Heartbeat state seen by the active: alive, warn, dead, or unknown when the member "
                    "stopped publishing.", max_length=32),
    "role": string("active or standby.", max_length=32),
    "lastSeen": string("When the member last published its status.", max_length=64),
}, preserve_unknown=True)

STATUS = obj("Observed state, written by the operator only.", {
    "phase": string("Pending, Running, Degraded, FailingOver or Failed.", max_length=32),
    "activeMember": string("Pod name of the active member."),
    "members": array("Members as published by their heartbeat sidecars.", _MEMBER, max_items=5),
    "lastFailover": obj("The last failover.", {
        "time": string("When it happened.", max_length=64),
        "from": string("Former active member."),
        "to": string("New active member."),
        "reason": string("Why it happened.", max_length=1024),
        "durationSeconds": {"type": "number", "description": "Detection to serving, in seconds."},
    }, preserve_unknown=True),
    "failoverCount": integer("Failovers since creation.", minimum=0),
    "observedGeneration": integer("The generation last reconciled.", minimum=0),
    "conditions": conditions(),
}, preserve_unknown=True)

DEFINITION = crd(
    group=c.GROUP, version=c.VERSION, kind="HACluster", plural=c.HACLUSTERS, short_names=["hac"],
    description="A group of member pods of which exactly one is active, with Heartbeat-style failover.",
    spec=SPEC, status=STATUS,
    printer_columns=[
        column("Phase", ".status.phase"),
        column("Active", ".status.activeMember", description="The active member pod."),
        column("Members", ".spec.replicas", kind="integer"),
        column("Failovers", ".status.failoverCount", kind="integer"),
        column("Last-Failover", ".status.lastFailover.time", priority=1),
        AGE,
    ],
)
