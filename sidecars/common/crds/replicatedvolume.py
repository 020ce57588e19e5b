"""ReplicatedVolume: a block device mirrored across nodes with DRBD's semantics."""

from __future__ import annotations

from hastack_common import consts as c
from hastack_common.crds.schema import (
    AGE,
    Schema,
    array,
    boolean,
    column,
    conditions,
    crd,
    integer,
    obj,
    quantity,
    rule,
    string,
    string_list,
)

AFTER_SB_0PRI = ["disconnect", "discard-younger-primary", "discard-older-primary",
                 "discard-zero-changes", "discard-least-changes"]
AFTER_SB_1PRI = ["disconnect", "consensus", "discard-secondary", "call-pri-lost-after-sb"]
AFTER_SB_2PRI = ["disconnect", "call-pri-lost-after-sb"]
FILESYSTEMS = ["ext4", "xfs", "btrfs", "reiserfs"]

# Five cron fields (minute hour day-of-month month day-of-week) or a @macro.
CRON_PATTERN = r"^(@(yearly|annually|monthly|weekly|daily|hourly)|(\S+\s+){4}\S+)$"

FILESYSTEM = obj(
    "The filesystem laid down once, by the fsinit init container, on a never-written volume.",
    {
        "type": string("ext4, xfs or btrfs (reiserfs only where the node's kernel lists it). "
                       "Immutable.", enum=FILESYSTEMS, default="ext4"),
        "mkfsOptions": string_list("Extra mkfs options, e.g. [\"-E\", \"lazy_itable_init=0\"].",
                                   max_items=32, max_length=256),
        "fsck": boolean("Check the filesystem before every mount on promotion.", default=True),
    },
    default={},
    rules=[rule("self.type == oldSelf.type", "filesystem.type is immutable", reason="FieldValueForbidden")],
)

SPLIT_BRAIN = obj(
    "Automatic split-brain recovery policies, with DRBD's names. After a split brain the link stays "
    "down (and the SplitBrain condition and alert say so) unless the policy that applies resolves it.",
    {
        "afterSb0Pri": string("Policy when neither node is primary.", enum=AFTER_SB_0PRI,
                              default="disconnect"),
        "afterSb1Pri": string("Policy when one node is primary.", enum=AFTER_SB_1PRI, default="disconnect"),
        "afterSb2Pri": string("Policy when both nodes are primary.", enum=AFTER_SB_2PRI,
                              default="disconnect"),
    },
    default={},
)

SPEC = obj(
    "Desired state of the ReplicatedVolume.",
    {
        "size": quantity("Usable size of the volume (the backing PVCs add the metadata). May only grow.",
                         rules=[
                             rule("quantity(self).isGreaterThan(quantity('0'))", "size must be positive"),
                             rule("quantity(self).compareTo(quantity(oldSelf)) >= 0",
                                  "size may only grow", reason="FieldValueForbidden"),
                         ]),
        "replicas": integer("Number of replicas (2 or 3); equals the members of the HACluster that uses "
                            "the volume. Immutable.", default=2, minimum=2, maximum=3,
                            rules=[rule("self == oldSelf", "replicas is immutable",
                                        reason="FieldValueForbidden")]),
        "protocol": string("Replication protocol with DRBD's meaning: A (asynchronous: a write is "
                           "acknowledged once written locally and sent), B (memory-synchronous: once the "
                           "peer received it), C (synchronous: once written on every replica's disk).",
                           enum=["A", "B", "C"], default="C"),
        "storageClassName": string("StorageClass of the per-replica backing PVCs (volumeMode: Block). "
                                   "Immutable."),
        "filesystem": FILESYSTEM,
        "syncRate": quantity("Maximum background resync rate per second, e.g. 100Mi.", default="100Mi",
                             rules=[rule("quantity(self).isGreaterThan(quantity('0'))",
                                         "syncRate must be positive")]),
        "splitBrain": SPLIT_BRAIN,
        "verify": string("Online verify schedule as a cron expression (e.g. \"0 3 * * 0\"); empty: never.",
                         pattern=CRON_PATTERN, max_length=128),
        "reclaimPolicy": string("Whether the backing PVCs outlive the volume's HACluster.",
                                enum=["Retain", "Delete"], default="Retain"),
    },
    required=["size"],
    rules=[rule("has(self.storageClassName) == has(oldSelf.storageClassName) && "
                "(!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)",
                "storageClassName is immutable", reason="FieldValueForbidden",
                field_path=".storageClassName")],
)

_REPLICA = obj("One replica, as its blockrepl sidecar reports it.", {
    "node": string("Node of the replica."),
    "member": string("Member pod of the replica."),
    "role": string("Primary, Secondary or Unknown.", max_length=32),
    "diskState": string("UpToDate, Consistent, Inconsistent, Outdated, Diskless, or Unknown when not reported.",
                        max_length=32),
    "connection": string("Connection state to the primary (Connected, Connecting, StandAlone, ...).",
                         max_length=32),
    "replication": string("Established, SyncSource, SyncTarget, ...", max_length=32),
    "outOfSyncBytes": integer("Bytes marked out of sync.", minimum=0),
}, preserve_unknown=True)

STATUS: Schema = obj("Observed state, written by the operator only.", {
    "primary": string("Member pod whose replica is Primary."),
    "replicas": array("Per-replica states.", _REPLICA, max_items=3),
    "diskStates": string("Disk states of the replicas in ordinal order, e.g. UpToDate/UpToDate.",
                         max_length=128),
    "syncProgress": string("Resync progress, e.g. 42.0%, when a resync runs.", max_length=32),
    "cluster": string("The HACluster using the volume."),
    "observedGeneration": integer("The generation last reconciled.", minimum=0),
    "conditions": conditions(),
}, preserve_unknown=True)

DEFINITION = crd(
    group=c.GROUP, version=c.VERSION, kind="ReplicatedVolume", plural=c.REPLICATEDVOLUMES,
    short_names=["rvol"],
    description="A block device mirrored over the network across 2 or 3 nodes (DRBD semantics).",
    spec=SPEC, status=STATUS,
    printer_columns=[
        column("Size", ".spec.size"),
        column("Protocol", ".spec.protocol"),
        column("Primary", ".status.primary"),
        column("Disks", ".status.diskStates", description="Disk states of the replicas."),
        column("Sync", ".status.syncProgress"),
        column("Cluster", ".status.cluster", priority=1),
        AGE,
    ],
)


