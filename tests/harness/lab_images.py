"""The lab's small system images, made from static binaries already on the machine:

- `hastack.local/pause:1`   the pod sandbox: Debian's static catatonit (`-P`: pause mode)
- `hastack.local/busybox:1` test workloads: Debian's busybox-static with its applets
- `hastack.local/coredns:<version>` cluster DNS: the cached, statically linked CoreDNS

Each archive is cached in ~/.cache/hastack/images/, keyed by the binary's digest.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness import binaries
from harness.ociarchive import ImageConfig, sha256_file, write_archive, write_layer_from_files

PAUSE_IMAGE = "hastack.local/pause:1"
BUSYBOX_IMAGE = "hastack.local/busybox:1"


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    archive: Path


def images_dir() -> Path:
    d = binaries.cache_root() / "images"
    d.mkdir(parents=True, exist_ok=True)
    return d


def coredns_image() -> str:
    return f"hastack.local/coredns:{binaries.versions()['COREDNS_VERSION']}"


def _host_binary(name: str, package: str) -> Path:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if not path:
        raise FileNotFoundError(f"{name} not found; install the Debian package {package} (.ci/run does)")
    return Path(path)


def _single_binary_image(
    tag: str, name: str, binary: Path, files: dict[str, tuple[bytes | str, int]], cfg: ImageConfig
) -> BuiltImage:
    key = sha256_file(binary)[:16]
    archive = images_dir() / f"{name}-{key}.tar"
    if archive.exists():
        return BuiltImage(tag, archive)
    layer = images_dir() / f"{name}-{key}.layer.tar"
    digest = write_layer_from_files(files, layer)
    write_archive(archive, tag, [(layer, digest)], cfg)
    layer.unlink()
    return BuiltImage(tag, archive)


def pause() -> BuiltImage:
    cat = _host_binary("catatonit", "catatonit")
    files: dict[str, tuple[bytes | str, int]] = {"catatonit": (cat.read_bytes(), 0o755)}
    return _single_binary_image(
        PAUSE_IMAGE, "pause", cat, files, ImageConfig(entrypoint=["/catatonit", "-P"])
    )


def busybox() -> BuiltImage:
    bb = _host_binary("busybox", "busybox-static")
    applets = subprocess.run([bb, "--list"], capture_output=True, text=True, check=True).stdout.split()
    files: dict[str, tuple[bytes | str, int]] = {"bin/busybox": (bb.read_bytes(), 0o755)}
    for applet in applets:
        if applet != "busybox":
            files[f"bin/{applet}"] = ("busybox", 0o777)
    files["etc/passwd"] = (
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        0o644,
    )
    files["etc/group"] = (b"root:x:0:\nnogroup:x:65534:\n", 0o644)
    files["tmp/.keep"] = (b"", 0o644)
    return _single_binary_image(
        BUSYBOX_IMAGE, "busybox", bb, files, ImageConfig(cmd=["/bin/sh"], env=["PATH=/bin"])
    )


def coredns() -> BuiltImage:
    binary = binaries.find("coredns")
    files: dict[str, tuple[bytes | str, int]] = {"coredns": (binary.read_bytes(), 0o755)}
    return _single_binary_image(
        coredns_image(), "coredns", binary, files, ImageConfig(entrypoint=["/coredns"])
    )


def system_images() -> list[BuiltImage]:
    return [pause(), busybox(), coredns()]
