"""One lab node: containerd, kubelet and kube-proxy in the node's network namespace (the
host's mount namespace: `nsenter --net`), its cgroup subtree, its files and mounts.

Processes are found by their command line (every one of them names the node's directory)
and by the node's cgroups, so any process — the `hastack lab` command, a pytest session,
a later `down` after a killed run — can stop what another one started.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import yaml

from harness import binaries, kubeconfig, lab_nodecfg, pki
from harness.lab_net import NodeNet
from harness.procs import pid_alive, wait_for

log = logging.getLogger("harness.lab_node")

CGROUP_BASE = Path("/sys/fs/cgroup")
CGROUP_V1 = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest first (from /proc/self/mountinfo)."""
    prefix = str(root).rstrip("/")
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


def unmount_all(root: Path) -> None:
    for _ in range(5):  # stacked mounts show again once the top one is gone
        points = mounts_under(root)
        if not points:
            return
        for point in points:
            if subprocess.run(["umount", point], capture_output=True, check=False).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _loop_rows() -> list[tuple[str, str, int, str]]:
    """(device, backing file, backing inode, backing st_dev "maj:min") of every loop device."""
    out = subprocess.run(["losetup", "-l", "-n", "--raw", "-O", "NAME,BACK-FILE,BACK-INO,BACK-MAJ:MIN"],
                         capture_output=True, text=True, check=False).stdout  # fmt: skip
    rows = []
    for line in out.splitlines():
        fields = [f.replace("\\x20", " ").strip() for f in line.split(" ")]
        if len(fields) == 4 and fields[2].isdigit():
            rows.append((fields[0], fields[1], int(fields[2]), fields[3]))
    return rows


# Where heartbeat's nbdfuse file is, as the loop device attached inside a member pod names it; once
# the FUSE mount is gone with its container, losetup names it by what is left of the path
# ("/nbd", then "/nbd (deleted)").
EXPOSE_FILE = "/run/hastack/expose/fuse/nbd"


def exposure_loops() -> list[str]:
    """Loop devices attached to a member's nbdfuse file (any member, any node: one kernel)."""
    out = subprocess.run(["losetup", "-l", "-n", "--raw", "-O", "NAME,BACK-FILE"], capture_output=True,
                         text=True, check=False).stdout  # fmt: skip
    found = []
    for line in out.splitlines():  # not _loop_rows: a dead FUSE file has no inode to report
        name, _, back = line.partition(" ")
        if back.replace("\\x20", " ").strip().removesuffix(" (deleted)") in (EXPOSE_FILE, "/nbd"):
            found.append(name)
    return sorted(found)


def loops_backed_under(root: Path) -> list[str]:
    """Loop devices whose backing file lies under `root`, preceded by the loop devices that pin
    them (the kubelet maps a Block PV through one more loop device on the device node itself:
    its backing is the /dev node, recognised by inode on /dev's filesystem)."""
    rows = _loop_rows()
    ours = [name for name, back, _, _ in rows if back.startswith(str(root))]
    dev = os.stat("/dev")
    dev_id = f"{os.major(dev.st_dev)}:{os.minor(dev.st_dev)}"
    inodes = set()
    for name in ours:
        try:
            inodes.add(os.stat(name).st_ino)
        except OSError:
            pass
    pins = [name for name, _, ino, maj_min in rows if maj_min == dev_id and ino in inodes and name not in ours]
    return pins + ours


def procs_matching(needle: str) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline and pid_alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


class LabNode:
    def __init__(self, net: NodeNet, lab_dir: Path) -> None:
        self.net = net
        self.name = net.name
        self.paths = lab_nodecfg.NodePaths(lab_dir / "nodes" / net.name)

    # -- configuration -------------------------------------------------------------------

    def prepare(self, ca: pki.CertificateAuthority, server: str, sandbox_image: str) -> None:
        """Write certificates, kubeconfigs and configs; create the node's cgroups. Idempotent."""
        p = self.paths
        for d in (p.root, p.pki, p.logs, p.kubelet_dir, p.pod_logs, p.cni_conf_dir, p.cni_ipam_dir):
            d.mkdir(parents=True, exist_ok=True)
        if not (p.pki / "kubelet.crt").exists():
            ca.issue("kubelet", self.name, server=True, ips=(self.net.ip,), dns=(self.name,), out_dir=p.pki)
            ca.issue(
                "kubelet-client",
                f"system:node:{self.name}",
                orgs=("system:nodes",),
                client=True,
                out_dir=p.pki,
            )
            ca.issue("kube-proxy", "system:kube-proxy", client=True, out_dir=p.pki)
        kubeconfig.write(
            p.root / "kubelet.kubeconfig",
            server,
            ca.pair.cert,
            f"system:node:{self.name}",
            p.pki / "kubelet-client.crt",
            p.pki / "kubelet-client.key",
        )
        kubeconfig.write(
            p.root / "kube-proxy.kubeconfig",
            server,
            ca.pair.cert,
            "system:kube-proxy",
            p.pki / "kube-proxy.crt",
            p.pki / "kube-proxy.key",
        )
        (p.root / "containerd.toml").write_text(lab_nodecfg.containerd_toml(p, sandbox_image))
        (p.cni_conf_dir / "10-hastack-lab.conflist").write_text(lab_nodecfg.cni_conflist(self.net, p))
        (p.root / "resolv.conf").write_text("search .\noptions ndots:1\n")
        (p.root / "kubelet.yaml").write_text(yaml.safe_dump(lab_nodecfg.kubelet_config(self.net, p, ca.pair.cert)))
        (p.root / "kube-proxy.yaml").write_text(
            yaml.safe_dump(lab_nodecfg.kube_proxy_config(self.net, p.root / "kube-proxy.kubeconfig"))
        )
        self._make_cgroups()

    def _cgroup_dirs(self, all_hierarchies: bool = False) -> list[Path]:
        """The node's subtree in each v1 hierarchy (and, for removal, in every mounted one:
        the kubelet also creates it in the unified hierarchy)."""
        rel = lab_nodecfg.cgroup_root(self.net).lstrip("/")
        names = [h.name for h in CGROUP_BASE.iterdir()] if all_hierarchies else list(CGROUP_V1)
        return [CGROUP_BASE / c / rel for c in names if (CGROUP_BASE / c).is_dir()]

    def _make_cgroups(self) -> None:
        for d in self._cgroup_dirs():
            d.mkdir(exist_ok=True)
            if d.parent.name == "cpuset":
                for f in ("cpuset.cpus", "cpuset.mems"):
                    (d / f).write_text((d.parent / f).read_text().strip() or "0")

    # -- processes -----------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], env_path: str) -> int:
        log_file = open(self.paths.logs / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            ["nsenter", f"--net={self.net.netns_path}", "--", *argv],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={"PATH": env_path, "HOME": "/root"},
            start_new_session=True,
        )
        log_file.close()
        log.info("node=%s started %s pid=%d", self.name, name, proc.pid)
        return proc.pid

    def running(self) -> dict[str, bool]:
        root = str(self.paths.root)
        return {
            "containerd": bool(procs_matching(f"--config {root}/containerd.toml")),
            "kubelet": bool(procs_matching(f"--config={root}/kubelet.yaml")),
            "kube-proxy": bool(procs_matching(f"--config={root}/kube-proxy.yaml")),
        }

    def ctr(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        argv = [str(binaries.find("ctr")), "-a", str(self.paths.containerd_sock), "-n", "k8s.io", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def start(self, images: list[Path]) -> None:
        """Start whatever of containerd, kubelet and kube-proxy is not running. Idempotent."""
        p, up = self.paths, self.running()
        cbin = binaries.find("containerd")
        shim_dir = str(binaries.find("containerd-shim-runc-v2").parent)
        if not up["containerd"]:
            self._spawn(
                "containerd",
                [str(cbin), "--config", str(p.root / "containerd.toml")],
                f"{shim_dir}:{SYSTEM_PATH}",
            )
        wait_for(lambda: self.ctr("version", timeout=5).returncode == 0, 60, f"containerd on {self.name}")
        self.import_images(images)
        if not up["kubelet"]:
            self._spawn(
                "kubelet",
                [
                    str(binaries.find("kubelet")),
                    f"--config={p.root / 'kubelet.yaml'}",
                    f"--kubeconfig={p.root / 'kubelet.kubeconfig'}",
                    f"--root-dir={p.kubelet_dir}",
                    f"--hostname-override={self.name}",
                    f"--node-ip={self.net.ip}",
                    "-v=1",
                ],
                SYSTEM_PATH,
            )
        if not up["kube-proxy"]:
            self._spawn(
                "kube-proxy",
                [str(binaries.find("kube-proxy")), f"--config={p.root / 'kube-proxy.yaml'}", "-v=1"],
                SYSTEM_PATH,
            )

    def import_images(self, archives: list[Path]) -> None:
        marker_dir = self.paths.root / "imported"
        marker_dir.mkdir(exist_ok=True)
        for archive in archives:
            marker = marker_dir / archive.name
            if marker.exists():
                continue
            res = self.ctr("images", "import", str(archive), timeout=600)
            if res.returncode != 0:
                raise RuntimeError(f"importing {archive} into {self.name} failed: {res.stderr.strip()}")
            marker.touch()

    def cgroup_pids(self) -> list[int]:
        pids: set[int] = set()
        for d in self._cgroup_dirs():
            if d.parent.name not in {"pids", "memory"}:
                continue
            for procs in d.rglob("cgroup.procs"):
                try:
                    pids.update(int(x) for x in procs.read_text().split())
                except OSError:
                    pass
        return [p for p in pids if pid_alive(p)]

    def all_pids(self) -> list[int]:
        return sorted(set(procs_matching(str(self.paths.root)) + self.cgroup_pids()))

    def kill(self, timeout: float = 20.0) -> None:
        """SIGKILL everything of this node at once: kubelet, kube-proxy, containerd, shims, containers
        (a power loss). Mounts, loop devices and files stay, as they would on a real disk."""
        for _ in range(3):
            for pid in self.all_pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not self.all_pids():
                break
            time.sleep(0.2)
        wait_for(lambda: not self.all_pids(), timeout, f"every process of {self.name} to die")

    def remove_pods(self, timeout: float = 60.0) -> None:
        """Stop and remove every pod through CRI, so CNI DEL and unmounts run (best effort)."""
        if not self.running()["containerd"]:
            return
        crictl = str(binaries.find("crictl"))
        ep = f"unix://{self.paths.containerd_sock}"
        for verb in ("stopp", "rmp"):
            pods = subprocess.run(
                [crictl, "-r", ep, "pods", "-q"], capture_output=True, text=True, timeout=timeout, check=False
            ).stdout.split()
            if pods:
                subprocess.run([crictl, "-r", ep, verb, *pods], capture_output=True, timeout=timeout, check=False)

    def cleanup(self) -> None:
        """Leave nothing of this node: processes, iptables rules, mounts, loop devices, cgroups, files."""
        try:
            self.remove_pods()
        except (subprocess.TimeoutExpired, OSError) as exc:
            log.warning("node=%s removing pods via CRI failed: %s", self.name, exc)
        self.kill()
        if self.net.netns_path.exists():
            subprocess.run(
                [
                    "nsenter",
                    f"--net={self.net.netns_path}",
                    "--",
                    str(binaries.find("kube-proxy")),
                    "--cleanup",
                ],
                capture_output=True,
                timeout=60,
                check=False,
            )
        unmount_all(self.paths.root)
        for loop in loops_backed_under(self.paths.root):
            subprocess.run(["losetup", "-d", loop], capture_output=True, check=False)
        self.remove_cgroups()

    def remove_cgroups(self) -> None:
        for d in self._cgroup_dirs(all_hierarchies=True):
            if not d.exists():
                continue
            for sub in sorted((x for x in d.rglob("*") if x.is_dir()), key=lambda x: -len(x.parts)):
                sub.rmdir()
            d.rmdir()

    def status(self) -> dict[str, object]:
        return {
            "name": self.name,
            "ip": self.net.ip,
            "netns": self.net.netns,
            "pod_cidr": self.net.pod_cidr,
            "processes": self.running(),
        }

    def describe(self) -> str:
        return json.dumps(self.status())
