"""Names every component agrees on (DESIGN: API group, labels, annotations, paths, ports)."""

from __future__ import annotations

GROUP = "hastack.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

HACLUSTER = "hacluster"
HACLUSTERS = "haclusters"
REPLICATEDVOLUMES = "replicatedvolumes"
SERVICEMONITORS = "servicemonitors"
PLURALS = (HACLUSTERS, REPLICATEDVOLUMES, SERVICEMONITORS)
KINDS = {HACLUSTERS: "HACluster", REPLICATEDVOLUMES: "ReplicatedVolume", SERVICEMONITORS: "ServiceMonitor"}

# Labels and annotations
LABEL_CLUSTER = f"{GROUP}/cluster"
LABEL_ROLE = f"{GROUP}/role"
ROLE_ACTIVE = "active"
ANNOTATION_MEMBER_STATUS = f"{GROUP}/member-status"
ANNOTATION_SWITCHOVER = f"{GROUP}/switchover"
FIELD_MANAGER = "hastack-operator"

# Inside a member pod
RUN_DIR = "/run/hastack"
BLOCKREPL_SOCKET = f"{RUN_DIR}/blockrepl.sock"
HEARTBEAT_SOCKET = f"{RUN_DIR}/heartbeat.sock"
MON_SOCKET = f"{RUN_DIR}/mon.sock"
STATE_FILE = f"{RUN_DIR}/state.json"
GATE_ACK_FILE = f"{RUN_DIR}/gate.ack"
# fsinit's outcome (action, reason, device), written when it exits; heartbeat waits for it before
# mounting a device that carries no filesystem yet (day 0).
FSINIT_RESULT = f"{RUN_DIR}/fsinit.json"
GATE_BINARY = "/hastack/bin/gate"

# Ports (DRBD's and Heartbeat's own)
REPLICATION_PORT = 7788
HEARTBEAT_PORT = 694

# Heartbeat and Lease defaults (DESIGN "Defaults")
DEFAULT_KEEPALIVE = "500ms"
DEFAULT_WARN_TIME = "1500ms"
DEFAULT_DEAD_TIME = "3s"
DEFAULT_INIT_DEAD = "10s"
DEFAULT_LEASE_DURATION = "4s"
DEFAULT_RENEW_PERIOD = "1s"
DEFAULT_RENEW_DEADLINE = "3s"
