"""Small workloads the e2e tests put on the lab (pure manifest builders)."""

from __future__ import annotations

from typing import Any

from harness.lab_addons import STORAGE_CLASS
from harness.lab_images import BUSYBOX_IMAGE

TCP_PORT = 7000
UDP_PORT = 694  # Heartbeat's port: the path heartbeats take between members

# A TCP server answering "tcp-<hostname>" to each connection (busybox nc: one per loop turn).
TCP_SERVER = f"while true; do echo tcp-$(hostname) | nc -l -p {TCP_PORT}; done"

UDP_ECHO = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", {UDP_PORT}))
me = socket.gethostname().encode()
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(b"udp-" + me + b":" + data, peer)
"""

# Exits 0 once the name in argv[1] resolves (the hastack image's Python; busybox has nslookup).
RESOLVE_PY = ["/usr/bin/python3", "-c", "import socket, sys; socket.getaddrinfo(sys.argv[1], None)"]

UDP_ASK = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
for _ in range(5):
    s.sendto(b"ping", (sys.argv[1], int(sys.argv[2])))
    try:
        print(s.recvfrom(2048)[0].decode())
        break
    except TimeoutError:
        pass
else:
    sys.exit("no UDP answer")
"""


def headless_service(name: str, app: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {"app": app},
            "ports": [
                {"name": "tcp", "port": TCP_PORT, "protocol": "TCP"},
                {"name": "udp", "port": UDP_PORT, "protocol": "UDP"},
            ],
        },
    }


def spread_statefulset(name: str, service: str, image: str, command: list[str], replicas: int = 2) -> dict[str, Any]:
    """One pod per node (required anti-affinity), as hastack's members are placed."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "serviceName": service,
            "replicas": replicas,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "affinity": {
                        "podAntiAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": [
                                {
                                    "labelSelector": {"matchLabels": labels},
                                    "topologyKey": "kubernetes.io/hostname",
                                }
                            ]
                        }
                    },
                    "containers": [{"name": "main", "image": image, "imagePullPolicy": "Never", "command": command}],
                },
            },
        },
    }


def block_claim(name: str, size: str = "512Mi") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "volumeMode": "Block",
            "storageClassName": STORAGE_CLASS,
            "resources": {"requests": {"storage": size}},
        },
    }


def block_pod(name: str, claim: str, command: str, node: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": 1,
        "containers": [
            {
                "name": "main",
                "image": BUSYBOX_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["/bin/sh", "-c", command],
                "volumeDevices": [{"name": "disk", "devicePath": "/dev/xvda"}],
            }
        ],
        "volumes": [{"name": "disk", "persistentVolumeClaim": {"claimName": claim}}],
    }
    if node:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": spec,
    }


def sleeper_pod(name: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "nodeSelector": {"kubernetes.io/hostname": node},
            "containers": [
                {
                    "name": "main",
                    "image": BUSYBOX_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
                }
            ],
        },
    }


DATA_DIR = "/var/lib/hastack/data"
BACKING = "/dev/hastack/backing"

# Is the member's device the filesystem at the data directory? Not `mountpoint -q`: inside a
# pod the hostPath is itself a bind mount, so that test is always true. Compare device numbers.
DEVICE_MOUNTED = '[ "$(mountpoint -d {data})" = "$(mountpoint -x {dev})" ]'

# The privileged side of a member, as DESIGN "Inside a member pod" asks: format only a device
# with no signature, mount only where the device is not mounted yet, unmount on TERM.
# `keep_mounted` replaces the TERM handler by nothing: the container dies with its filesystem mounted.
MEMBER_SIDECAR = """set -eu
if ! blkid -p {dev} >/dev/null 2>&1; then mkfs.ext4 -q -L hastack {dev}; fi
{mounted} || mount {dev} {data}
[ -f {data}/hello ] || echo "hello from $(hostname)" > {data}/hello
echo "mounted by $(hostname) at $(date +%s%N)" >> {data}/mounts.log
trap {on_term} TERM
sleep infinity & wait
"""

APP = "until [ -f /data/hello ]; do sleep 0.2; done; cat /data/hello; trap 'exit 0' TERM; sleep 3600 & wait"


def member_pod(
    name: str,
    claim: str,
    image: str,
    host_dir: str,
    keep_mounted: bool = False,
    data_volume: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A member-pod-shaped pod: a privileged native sidecar with the Block PV and the data
    directory (Bidirectional), an unprivileged app seeing it through HostToContainer."""
    on_term = "''" if keep_mounted else f"'umount {DATA_DIR}; exit 0'"
    mounted = DEVICE_MOUNTED.format(data=DATA_DIR, dev=BACKING)
    script = MEMBER_SIDECAR.format(dev=BACKING, data=DATA_DIR, on_term=on_term, mounted=mounted)
    volume = data_volume or {"hostPath": {"path": host_dir, "type": "DirectoryOrCreate"}}
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 3,
            "initContainers": [{
                "name": "heartbeat", "image": image, "imagePullPolicy": "Never", "restartPolicy": "Always",
                "command": ["/bin/sh", "-c", script],
                "securityContext": {"privileged": True},
                "volumeDevices": [{"name": "backing", "devicePath": BACKING}],
                "volumeMounts": [{"name": "hastack-data", "mountPath": DATA_DIR,
                                  "mountPropagation": "Bidirectional"}],
                "startupProbe": {"exec": {"command": ["/bin/sh", "-c", mounted]},
                                 "periodSeconds": 1, "failureThreshold": 120},
            }],
            "containers": [{
                "name": "app", "image": BUSYBOX_IMAGE, "imagePullPolicy": "Never",
                "command": ["/bin/sh", "-c", APP],
                "volumeMounts": [{"name": "hastack-data", "mountPath": "/data",
                                  "mountPropagation": "HostToContainer"}],
            }],
            "volumes": [{"name": "hastack-data", **volume},
                        {"name": "backing", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }  # fmt: skip
