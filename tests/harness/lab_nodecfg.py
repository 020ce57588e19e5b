"""Pure builders of a lab node's configuration files: containerd, CNI, kubelet, kube-proxy.

The settings this machine needs (notes/real-nodes.md) are here, each with its reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.lab_net import CLUSTER_CIDR, DNS_SERVICE_IP, NodeNet

CNI_NETWORK = "hastack-lab"
CNI_BIN_DIR = "/usr/lib/cni"
RUNC = "/usr/sbin/runc"


@dataclass(frozen=True)
class NodePaths:
    root: Path

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd" / "state"

    @property
    def containerd_sock(self) -> Path:
        return self.root / "containerd.sock"

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pki(self) -> Path:
        return self.root / "pki"


def cgroup_root(node: NodeNet) -> str:
    """One cgroup subtree per node (two kubelets must not share /kubepods)."""
    return f"/{node.netns}"


def containerd_toml(paths: NodePaths, sandbox_image: str) -> str:
    sock = paths.containerd_sock
    # restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE; without it every sandbox fails
    # ("can't get final child's PID from pipe: EOF"). NRI and /opt are host-global: off.
    return f"""version = 3
root = "{paths.containerd_root}"
state = "{paths.containerd_state}"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.nri.v1.nri"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{sandbox_image}"

[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  enable_unprivileged_ports = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{RUNC}"
        Root = "{paths.root / "runc"}"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{CNI_BIN_DIR}"]
    conf_dir = "{paths.cni_conf_dir}"

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""


def cni_conflist(node: NodeNet, paths: NodePaths) -> str:
    """The bridge plugin with the node's own pod subnet; no masquerading (routed between nodes)."""
    doc = {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": node.pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(paths.cni_ipam_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(doc, indent=2)


def kubelet_config(node: NodeNet, paths: NodePaths, ca_file: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node.ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "tlsCertFile": str(paths.pki / "kubelet.crt"),
        "tlsPrivateKeyFile": str(paths.pki / "kubelet.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca_file)},
        },
        "authorization": {"mode": "Webhook"},
        "failCgroupV1": False,  # this machine is cgroup v1 only; the kubelet exits otherwise
        "cgroupDriver": "cgroupfs",  # no systemd here
        "cgroupRoot": cgroup_root(node),
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        "oomScoreAdj": 0,  # lowering it needs CAP_SYS_RESOURCE
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{paths.containerd_sock}",
        "imageServiceEndpoint": f"unix://{paths.containerd_sock}",
        "clusterDNS": [DNS_SERVICE_IP],
        "clusterDomain": "cluster.local",
        "resolvConf": str(paths.root / "resolv.conf"),
        "podLogsDir": str(paths.pod_logs),
        "volumePluginDir": str(paths.kubelet_dir / "volume-plugins"),
        # Images cannot be pulled again (no registry): never garbage-collect or evict them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "1Mi",
            "nodefs.available": "0%",
            "nodefs.inodesFree": "0%",
            "imagefs.available": "0%",
            "imagefs.inodesFree": "0%",
        },
        "localStorageCapacityIsolation": False,
        "maxPods": 110,
        "podPidsLimit": -1,
        "serializeImagePulls": False,
        "shutdownGracePeriod": "0s",
    }


def kube_proxy_config(node: NodeNet, kubeconfig: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "clusterCIDR": CLUSTER_CIDR,
        "hostnameOverride": node.name,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # conntrack sysctls are host-wide and not writable from a node's namespace: leave them.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }
