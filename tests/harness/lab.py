"""The lab: a real multi-node Kubernetes on this one machine (docs/lab.md).

    lab = Lab(LabConfig(nodes=2))
    lab.up()            # idempotent: completes a half-built lab, reuses a running one
    lab.kubectl("get", "nodes")
    lab.kill_node(1); lab.restart_node(1); lab.set_link(0, up=False)
    lab.down()          # leaves nothing: processes, mounts, loops, cgroups, netns, links, routes

State lives in HASTACK_LAB_DIR (default /var/lib/hastack-lab): the control plane's
directory, one directory per node, the disks' backing files, and lab.json.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import binaries, lab_addons, lab_images, lab_net, pki
from harness.controlplane import ControlPlane
from harness.kubeconfig import http_get, tls_context
from harness.lab_node import LabNode, exposure_loops, loops_backed_under, mounts_under, procs_matching, unmount_all
from harness.lab_nodecfg import CNI_BIN_DIR, CNI_NETWORK
from harness.procs import pid_alive, run, wait_for

log = logging.getLogger("harness.lab")

DEFAULT_DIR = Path("/var/lib/hastack-lab")
CNI_RESULTS = Path("/var/lib/cni/results")
# hostPath roots a member's Bidirectional mount may live under: Bidirectional needs a shared
# mount, and this machine's / is private (no systemd). The kubelet shares its own root dir
# only. `up` makes each a shared bind mount of itself; `down` removes those.
HASTACK_MOUNT_ROOT = Path("/var/lib/hastack")
LAB_BINARIES = ("kubelet", "kube-proxy", "containerd", "containerd-shim-runc-v2", "ctr", "crictl", "coredns")


def lab_dir() -> Path:
    return Path(os.environ.get("HASTACK_LAB_DIR") or DEFAULT_DIR)


@dataclass(frozen=True)
class LabConfig:
    nodes: int = 2
    disks_per_node: int = 2
    disk_size: int = 1 << 30
    directory: Path = field(default_factory=lab_dir)


class Lab:
    def __init__(self, config: LabConfig | None = None) -> None:
        self.config = config or LabConfig()
        self.dir = self.config.directory
        self.nets = lab_net.plan(self.config.nodes)
        self.nodes = [LabNode(n, self.dir) for n in self.nets]
        self.timings: dict[str, float] = {}
        self.extra_images: list[Path] = []

    # -- access ------------------------------------------------------------------------

    @property
    def cp_dir(self) -> Path:
        return self.dir / "controlplane"

    @property
    def kubeconfig(self) -> Path:
        return self.cp_dir / "admin.kubeconfig"

    @property
    def shared_roots(self) -> list[Path]:
        """Where member data directories (hostPath, Bidirectional) may be: the lab's own
        `hostpath/` and hastack's default mount root."""
        return [self.dir / "hostpath", HASTACK_MOUNT_ROOT]

    @property
    def state_file(self) -> Path:
        return self.dir / "lab.json"

    def state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.state_file.read_text()))
        except (OSError, ValueError):
            return {}

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        argv = [binaries.find("kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        return run(argv, timeout=timeout, check=check, input=input)

    def apply(self, docs: list[dict[str, Any]], namespace: str | None = None) -> None:
        """Server-side apply of `docs` (into `namespace` when given)."""
        self.kubectl(
            *(("-n", namespace) if namespace else ()),
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=hastack-lab",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
        )

    def node(self, index_or_name: int | str) -> LabNode:
        for n in self.nodes:
            if index_or_name in (n.net.index, n.name):
                return n
        raise KeyError(f"no lab node {index_or_name!r}; nodes: {[n.name for n in self.nodes]}")

    def api_healthy(self) -> bool:
        st = self.state()
        if not st.get("server") or not self.kubeconfig.exists():
            return False
        ctx = tls_context(
            self.cp_dir / "pki" / "ca.crt",
            self.cp_dir / "pki" / "admin.crt",
            self.cp_dir / "pki" / "admin.key",
        )
        try:
            return http_get(f"{st['server']}/readyz", ctx)[0] == 200
        except OSError:
            return False

    # -- up ----------------------------------------------------------------------------

    def up(self) -> dict[str, float]:
        t0 = time.monotonic()
        self._check_host()
        binaries.find_all(LAB_BINARIES)
        images = [i.archive for i in lab_images.system_images()] + self.extra_images
        self.timings["binaries_images"] = time.monotonic() - t0
        st = self.state()
        if self.dir.exists() and (st.get("nodes") != self.config.nodes or not self.api_healthy()):
            # Half-built, killed, or another size: certificates and state cannot be trusted.
            log.info(
                "lab state incomplete (nodes=%s asked=%d): clearing it first",
                st.get("nodes"),
                self.config.nodes,
            )
            self.down()
        self.dir.mkdir(parents=True, exist_ok=True)
        for root in self.shared_roots:
            _make_shared(root)
        lab_net.setup_bridge()
        for net in self.nets:
            lab_net.setup_node(net, self.nets)
        if not self.api_healthy():
            self._start_control_plane()
        self.timings["control_plane"] = time.monotonic() - t0
        ca = pki.CertificateAuthority.load(self.cp_dir / "pki")
        server = self.state()["server"]
        def start(node: LabNode) -> None:
            node.prepare(ca, server, lab_images.PAUSE_IMAGE)
            node.start(images)

        with ThreadPoolExecutor(len(self.nodes)) as pool:  # nodes boot side by side, as machines do
            list(pool.map(start, self.nodes))
        self._wait_nodes_ready(120)
        self.timings["nodes_ready"] = time.monotonic() - t0
        self._addons()
        self._wait_dns(180)
        self.timings["dns_ready"] = time.monotonic() - t0
        log.info("lab up: %s", {k: round(v, 1) for k, v in self.timings.items()})
        return self.timings

    def _check_host(self) -> None:
        if os.geteuid() != 0:
            raise PermissionError("the lab needs root (network namespaces, cgroups, loop devices)")
        missing = [
            b
            for b in ("runc", "nsenter", "losetup", "iptables", "catatonit", "busybox")
            if not shutil.which(b, path="/usr/sbin:/usr/bin:/sbin:/bin")
        ]
        if not Path(CNI_BIN_DIR, "bridge").exists():
            missing.append("containernetworking-plugins (/usr/lib/cni/bridge)")
        if missing:
            raise FileNotFoundError(f"missing on this machine: {', '.join(missing)}; run .ci/install-deps")

    def _start_control_plane(self) -> None:
        # The default ServiceAccount is awaited later (_addons), while the nodes start.
        cp = ControlPlane(
            nodes=0, bind_address=lab_net.HOST_IP, workdir=self.cp_dir, detached=True, wait_default_sa=False
        )
        cp.start()
        self.state_file.write_text(
            json.dumps(
                {
                    "nodes": self.config.nodes,
                    "server": cp.server,
                    "ports": cp.ports,
                    "control_plane_pids": cp.pids(),
                }
            )
        )

    def _kill_control_plane(self) -> None:
        pids = procs_matching(str(self.cp_dir))
        for pid in pids:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        wait_for(lambda: not any(pid_alive(p) for p in pids), 20, "the lab control plane to stop")

    def _wait_nodes_ready(self, timeout: float) -> None:
        names = {n.name for n in self.nodes}

        def ready() -> bool:
            items = json.loads(self.kubectl("get", "nodes", "-o", "json").stdout)["items"]
            ok = {
                i["metadata"]["name"]
                for i in items
                if any(c["type"] == "Ready" and c["status"] == "True" for c in i["status"].get("conditions", []))
            }
            return names <= ok

        wait_for(ready, timeout, f"lab nodes {sorted(names)} Ready")

    def _addons(self) -> None:
        wait_for(
            lambda: self.kubectl("get", "sa", "default", "-n", "default", check=False).returncode == 0,
            60,
            "the default ServiceAccount",
        )
        self.apply(lab_addons.coredns_manifests(lab_images.coredns_image()))
        docs: list[dict[str, Any]] = [lab_addons.storage_class()]
        for node in self.nodes:
            for j in range(self.config.disks_per_node):
                disk = lab_addons.attach_disk(node.name, j, self.dir / "disks", self.config.disk_size)
                docs.append(lab_addons.local_pv(disk))
        self.apply(docs)
        self.recycle_released_pvs()

    def recycle_released_pvs(self, wipe: bool = True) -> None:
        """A Retain PV whose claim is gone becomes Available again, its disk discarded first (as a
        provisioner hands out a fresh volume: the next claim finds no filesystem, no metadata)."""
        pvs = json.loads(self.kubectl("get", "pv", "-o", "json").stdout)["items"]
        for pv in pvs:
            if (
                pv["status"].get("phase") == "Released"
                and pv["spec"].get("storageClassName") == lab_addons.STORAGE_CLASS
            ):
                device = (pv["spec"].get("local") or {}).get("path", "")
                if wipe and device.startswith("/dev/loop"):
                    # blkdiscard, not a hole punched in the file: it also drops the device's page cache
                    run(["blkdiscard", device], timeout=60)
                self.kubectl(
                    "patch",
                    "pv",
                    pv["metadata"]["name"],
                    "--type=json",
                    "-p",
                    '[{"op":"remove","path":"/spec/claimRef"}]',
                )

    def _wait_dns(self, timeout: float) -> None:
        def ready() -> bool:
            out = self.kubectl("get", "deploy", "coredns", "-n", "kube-system", "-o", "json").stdout
            return json.loads(out)["status"].get("readyReplicas", 0) >= 1

        wait_for(ready, timeout, "CoreDNS ready")

    def import_image(self, archive: Path) -> None:
        """Import an image archive into every node's containerd (side by side); restarted nodes
        get it again from `extra_images`."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda n: n.import_images([archive]), self.nodes))
        if archive not in self.extra_images:
            self.extra_images.append(archive)

    # -- faults ------------------------------------------------------------------------

    def kill_node(self, index: int | str) -> None:
        """Power loss: SIGKILL the node's kubelet, kube-proxy, containerd, shims and containers."""
        self.node(index).kill()

    def restart_node(self, index: int | str, wait_ready: bool = True) -> None:
        node = self.node(index)
        node.kill()
        node.start([i.archive for i in lab_images.system_images()] + self.extra_images)
        if wait_ready:
            self._wait_nodes_ready(120)

    def set_link(self, index: int | str, up: bool) -> None:
        lab_net.set_link(self.node(index).net, up)

    # -- down --------------------------------------------------------------------------

    def down(self) -> None:
        """Remove everything the lab may have made, whether or not it is fully up."""
        t0 = time.monotonic()
        for net in lab_net.plan(lab_net.MAX_NODES):
            node = LabNode(net, self.dir)
            if node.paths.root.exists() or node.all_pids():
                node.cleanup()
        self._kill_control_plane()
        for root in self.shared_roots:
            unmount_all(root)
        unmount_all(self.dir)
        for loop in [*exposure_loops(), *loops_backed_under(self.dir)]:
            subprocess.run(["losetup", "-d", loop], capture_output=True, check=False)
        for net in lab_net.plan(lab_net.MAX_NODES):
            lab_net.teardown_node(net)
        lab_net.teardown_bridge()
        for f in CNI_RESULTS.glob(f"{CNI_NETWORK}-*"):
            f.unlink(missing_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        _remove_empty_dirs(HASTACK_MOUNT_ROOT)  # members' hostPath directories; never a file
        log.info("lab down in %.1fs", time.monotonic() - t0)

    def leftovers(self) -> list[str]:
        """Anything of the lab still on the machine (empty after a clean down)."""
        found = lab_net.leftovers()
        found += [f"process {p}" for p in procs_matching(str(self.dir))]
        for prefix in (self.dir, *self.shared_roots):
            found += [f"mount {m}" for m in _mounts_with(str(prefix))]
        found += [f"loop {lp}" for lp in loops_backed_under(self.dir)]
        found += [f"loop {lp} (a member's exposed volume)" for lp in exposure_loops()]
        found += [f"cgroup {c}" for c in Path("/sys/fs/cgroup").glob(f"*/{lab_net.PREFIX}-*")]
        if self.dir.exists():
            found.append(f"directory {self.dir}")
        return found

    # -- status ------------------------------------------------------------------------

    def status(self) -> str:
        st = self.state()
        lines = [f"lab directory {self.dir}: {'present' if self.dir.exists() else 'absent'}"]
        if not st:
            return "\n".join([*lines, "lab is down"])
        lines.append(
            f"API server {st.get('server')} ({'ready' if self.api_healthy() else 'NOT ready'}), "
            f"kubeconfig {self.kubeconfig}"
        )
        for node in self.nodes:
            procs = node.running()
            link = "up" if lab_net.link_up(node.net) else "DOWN"
            lines.append(
                f"  {node.name} {node.net.ip} pods {node.net.pod_cidr} link {link} "
                + " ".join(f"{k}={'running' if v else 'STOPPED'}" for k, v in procs.items())
            )
        if self.api_healthy():
            lines.append(self.kubectl("get", "nodes", "-o", "wide", check=False).stdout.rstrip())
            lines.append(self.kubectl("get", "pods", "-A", "-o", "wide", check=False).stdout.rstrip())
        return "\n".join(lines)


def _remove_empty_dirs(root: Path) -> None:
    """Remove `root` and the directories below it that hold no file (bottom-up); keep the rest."""
    if not root.is_dir() or mounts_under(root):
        return
    for dirpath, _, _ in sorted(os.walk(root), key=lambda w: -w[0].count("/")):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)


def _make_shared(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    if not mounts_under(root) or mounts_under(root)[-1] != str(root):
        run(["mount", "--bind", str(root), str(root)])
    run(["mount", "--make-rshared", str(root)])


def _mounts_with(prefix: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [ln.split()[4] for ln in f if ln.split()[4].startswith(prefix)]
