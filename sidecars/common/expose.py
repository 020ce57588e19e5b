"""Expose / unexpose: turn the Primary's NBD export into a local block device, and back.

- With the kernel's nbd driver (``/dev/nbd0`` exists and ``nbd-client`` is installed) the
  export is connected to a free ``/dev/nbdN``.
- Elsewhere (this project's test machines): ``nbdfuse`` serves the export as one file in a
  FUSE mount, and a loop device is attached to that file.

Both are idempotent: an existing FUSE mount and a loop device already backed by the FUSE
file (matched by backing inode, never by path) are reused, so a restarted caller finds what
it left. ``unexpose`` flushes the device and removes everything in order: loop device, FUSE
mount, nbdfuse process. Callers unmount any filesystem first (``unexpose`` refuses a device
that is still mounted, with a message that says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import logging
import os
import re
import shutil
import signal
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path

from hastack_common import subproc
from hastack_common.logs import kv

log = logging.getLogger(__name__)
TIMEOUT = 30.0


class ExposeError(Exception):
    """Expose or unexpose failed; the message names the step and the command's output."""


@dataclass(frozen=True)
class Exposed:
    device: str  # /dev/loopN or /dev/nbdN
    method: str  # "nbdfuse" or "nbd"
    workdir: str  # where the FUSE mount, the pid file and the record live
    # nbdfuse: the loop device's disk sequence number, unique per attachment until reboot. It finds
    # the loop device again after the FUSE file has died with its container (losetup then cannot
    # say what backs it) and never mistakes a reused device number for ours.
    diskseq: str = ""


async def _run(*argv: str, timeout: float = TIMEOUT, check: bool = True) -> str:
    try:
        code, text = await subproc.run(list(argv), timeout)
    except TimeoutError:
        raise ExposeError(f"{' '.join(argv)} timed out after {timeout}s") from None
    if check and code:
        raise ExposeError(f"{' '.join(argv)} failed (exit {code}): {text}")
    return text


def _mountinfo() -> list[list[str]]:
    with open("/proc/self/mountinfo") as f:
        return [line.split() for line in f]


def is_mountpoint(path: str) -> bool:
    real = os.path.realpath(path)
    return any(len(f) > 4 and f[4] == real for f in _mountinfo())


def device_mounted(device: str) -> bool:
    """True when a filesystem on ``device`` is mounted (matched by major:minor)."""
    try:
        st = os.stat(device)
    except OSError:
        return False
    majmin = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    return any(len(f) > 2 and f[2] == majmin for f in _mountinfo())


def kernel_nbd_available(device: str = "/dev/nbd0", path: str | None = None) -> bool:
    """The kernel path is taken only when the nbd driver's first device exists *and* ``nbd-client``
    is on ``path`` (default: ``$PATH``); either alone falls back to nbdfuse + loop."""
    return os.path.exists(device) and shutil.which("nbd-client", path=path) is not None


def nbd_devices(paths: list[str]) -> list[str]:
    """Whole nbd devices (``/dev/nbdN``, no partitions such as ``/dev/nbd0p1``), in number order."""
    whole = [p for p in paths if re.fullmatch(r"/dev/nbd\d+", p)]
    return sorted(whole, key=lambda d: int(d[len("/dev/nbd") :]))


def nbd_client_argv(uri: str, device: str) -> list[str]:
    """The ``nbd-client`` command that connects ``device`` to ``uri`` (``nbd+unix:///EXPORT?socket=
    PATH`` or ``nbd://HOST[:PORT]/EXPORT``)."""
    u = urllib.parse.urlsplit(uri)
    export = urllib.parse.unquote(u.path.lstrip("/"))
    if u.scheme == "nbd+unix":
        sock = urllib.parse.parse_qs(u.query).get("socket", [""])[0]
        if not sock:
            raise ExposeError(f"{uri}: an nbd+unix URI needs ?socket=PATH")
        return ["nbd-client", "-unix", sock, device, "-N", export]
    if u.scheme == "nbd" and u.hostname:
        return ["nbd-client", u.hostname, str(u.port or 10809), device, "-N", export]
    raise ExposeError(f"{uri}: nbd-client needs an nbd+unix:// or nbd:// URI")


def client_pid(check_output: str) -> int | None:
    """``nbd-client -check DEV`` prints the pid of the client holding DEV, or nothing/an error."""
    text = check_output.strip()
    return int(text) if text.isdigit() else None


def reusable(old: Exposed | None, check_output: str) -> bool:
    """Idempotency of the kernel path: the recorded ``/dev/nbdN`` is returned again only while an
    ``nbd-client`` still holds it (a record of the nbdfuse path, or a dead client, is not reused)."""
    return old is not None and old.method == "nbd" and client_pid(check_output) is not None


def read_record(workdir: Path) -> Exposed | None:
    """What ``expose`` recorded under ``workdir`` (its idempotency record), if anything."""
    rec = workdir / "exposed.json"
    return Exposed(**json.loads(rec.read_text())) if rec.exists() else None


def backing_id(file: str) -> str:
    """``maj:min:inode`` of ``file`` (what losetup reports as BACK-MAJ:MIN and BACK-INO)."""
    st = os.stat(file)
    return f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}:{st.st_ino}"


async def loop_for(file: str) -> str | None:
    """The loop device already attached to ``file``, matched by its backing device *and* inode.

    The inode alone is not enough: every nbdfuse file is inode 2 of its own FUSE filesystem.
    """
    try:
        return await loop_backed_by(backing_id(file))
    except OSError:
        return None


def diskseq(device: str) -> str:
    """The kernel's disk sequence number of ``device`` ("" where the kernel has none, before 5.15)."""
    try:
        return Path(f"/sys/block/{os.path.basename(device)}/diskseq").read_text().strip()
    except OSError:
        return ""


def same_attachment(exp: Exposed) -> bool:
    """``exp.device`` is still the loop device ``exp`` attached (same disk sequence number)."""
    return bool(exp.diskseq) and diskseq(exp.device) == exp.diskseq


async def loop_backed_by(backing: str) -> str | None:
    """The loop device whose backing file is ``maj:min:inode``."""
    majmin, _, ino = backing.rpartition(":")
    want = (majmin, ino)
    out = await _run("losetup", "--list", "--json", "--output", "NAME,BACK-MAJ:MIN,BACK-INO", check=False)
    with contextlib.suppress(ValueError):
        for dev in json.loads(out or "{}").get("loopdevices", []):
            if (str(dev.get("back-maj:min", "")).strip(), str(dev.get("back-ino"))) == want:
                return str(dev["name"])
    return None


async def expose(uri: str, workdir: str, wait: float = TIMEOUT) -> Exposed:
    """Make ``uri`` (an NBD URI such as ``nbd+unix:///r0?socket=/run/hastack/blockrepl-nbd.sock``)
    a block device; returns it. Safe to call again: returns what is already there."""
    wd = Path(workdir)
    await asyncio.to_thread(wd.mkdir, parents=True, exist_ok=True)
    if kernel_nbd_available():
        return await _expose_kernel(uri, wd)
    mnt, pidfile = wd / "fuse", wd / "nbdfuse.pid"
    mnt.mkdir(exist_ok=True)
    file = mnt / "nbd"
    if not is_mountpoint(str(mnt)):
        pidfile.unlink(missing_ok=True)
        proc = await asyncio.create_subprocess_exec(
            "nbdfuse", "-P", str(pidfile), str(mnt), uri, stdout=asyncio.subprocess.DEVNULL,
            stderr=open(wd / "nbdfuse.log", "ab"),  # noqa: ASYNC230, SIM115 - a log handle for the child
            start_new_session=True,
        )  # fmt: skip
        deadline = asyncio.get_running_loop().time() + wait
        while not (pidfile.exists() and file.exists()):
            if proc.returncode is not None or asyncio.get_running_loop().time() > deadline:
                tail = (wd / "nbdfuse.log").read_text(errors="replace")[-500:]
                raise ExposeError(f"nbdfuse did not serve {uri} at {mnt}: {tail or 'no output'}")
            await asyncio.sleep(0.05)
    device = await loop_for(str(file))
    if device is None:
        device = await _run("losetup", "--find", "--show", str(file))
    exp = Exposed(device, "nbdfuse", str(wd), diskseq(device))
    (wd / "exposed.json").write_text(json.dumps(asdict(exp)))
    log.info("exposed", extra=kv(device=device, method="nbdfuse", uri=uri))
    return exp


async def _expose_kernel(uri: str, wd: Path) -> Exposed:
    old = read_record(wd)
    recorded = old is not None and old.method == "nbd"
    check = await _run("nbd-client", "-check", old.device, check=False) if old is not None and recorded else ""
    if old is not None and reusable(old, check):
        return old
    for dev in nbd_devices(glob.glob("/dev/nbd*")):
        if client_pid(await _run("nbd-client", "-check", dev, check=False)) is None:
            await _run(*nbd_client_argv(uri, dev))
            exp = Exposed(dev, "nbd", str(wd))
            (wd / "exposed.json").write_text(json.dumps(asdict(exp)))
            return exp
    raise ExposeError("no free /dev/nbd* device")


async def unexpose(workdir: str) -> None:
    """Flush and remove the device exposed under ``workdir``; nothing is left. Idempotent."""
    wd = Path(workdir)
    rec = wd / "exposed.json"
    exp = read_record(wd)
    mnt, pidfile = wd / "fuse", wd / "nbdfuse.pid"
    if exp is not None and exp.method == "nbd":
        if device_mounted(exp.device):
            raise ExposeError(f"{exp.device} is still mounted: unmount it before unexpose")
        await _run("blockdev", "--flushbufs", exp.device, check=False)
        await _run("nbd-client", "-d", exp.device, check=False)
        rec.unlink(missing_ok=True)
        return
    live = is_mountpoint(str(mnt))
    if live:
        device = await loop_for(str(mnt / "nbd"))
    else:  # the FUSE mount died with a killed container: its loop device may still be attached
        device = exp.device if exp is not None and await asyncio.to_thread(same_attachment, exp) else None
    if device is not None:
        if device_mounted(device):
            raise ExposeError(f"{device} is still mounted: unmount it before unexpose")
        # fsync: reaches the Primary as NBD FLUSH (nothing can reach a dead nbdfuse: no check then)
        await _run("blockdev", "--flushbufs", device, check=live)
        await _run("losetup", "--detach", device)
    if live:
        await _unmount_fuse(mnt)
        pid = _read_pid(pidfile)
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while pid is not None and _alive(pid) and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if pid is not None and _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    # Without a live mount the pid file is a dead container's: its number may be anyone's here.
    pidfile.unlink(missing_ok=True)
    rec.unlink(missing_ok=True)
    log.info("unexposed", extra=kv(device=device, workdir=workdir))


async def _unmount_fuse(mnt: Path, wait: float = 10.0) -> None:
    """The kernel lets go of a detached loop device's backing file a moment after ``losetup
    --detach`` returns (seen in pods: "Device or resource busy"); retry until the FUSE mount is free."""
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        try:
            await _run("fusermount3", "-u", str(mnt))
            return
        except ExposeError as exc:
            if "busy" not in str(exc) or asyncio.get_running_loop().time() > deadline:
                raise
        await asyncio.sleep(0.1)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return False
