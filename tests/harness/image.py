"""The hastack image without a registry: the same image the Dockerfile describes, built from

  layer 1  a Debian rootfs made by debootstrap with image/packages.txt (cached by that list)
  layer 2  the Python dependencies from pyproject.toml, installed with pip (cached by that list)
  layer 3  the project itself, installed with pip (rebuilt when the code changes: seconds)

and written as a docker-archive for `ctr images import` on every lab node. The layout and
entry point match the Dockerfile's `sidecar` target (tests/unit/image checks they agree).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from harness import binaries
from harness.heartbeat_gate import build_gate
from harness.ociarchive import ImageConfig, write_archive, write_layer

log = logging.getLogger("harness.image")

REPO = Path(__file__).resolve().parents[2]
PACKAGES_FILE = REPO / "image" / "packages.txt"
DOCKERFILE = REPO / "Dockerfile"
SUITE = "bookworm"
RECIPE = "2"  # bump when the rootfs recipe below changes
REPO_NAME = "hastack.local/hastack"
ENTRYPOINT = ["/usr/bin/catatonit", "--", "/usr/bin/python3", "-m", "hastack_common.cli"]
PYTHONPATH = "/opt/hastack/app:/opt/hastack/lib"
# The non-root user the operator runs as (the chart's runAsUser). It must exist in the image:
# kopf asks getpass.getuser() for its identity, which fails for a uid without a passwd entry.
NONROOT_UID = 65532
NONROOT_USER = "hastack"
# Executables the operator's pod builders name: the `hastack` command and the static start gate.
HASTACK_COMMAND = "/usr/local/bin/hastack"
GATE_PATH = "/usr/local/bin/hastack-gate"
HASTACK_WRAPPER = '#!/bin/sh\nexec /usr/bin/python3 -m hastack_common.cli "$@"\n'
PROJECT_SOURCES = ("pyproject.toml", "operator", "sidecars")
STRIP = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "var/log",
)


@dataclass(frozen=True)
class Image:
    tag: str
    archive: Path
    seconds: float


def parse_packages(text: str) -> list[str]:
    """The package list: one per line, '#' comments and blank lines ignored (pure)."""
    return [ln.split("#", 1)[0].strip() for ln in text.splitlines() if ln.split("#", 1)[0].strip()]


def packages() -> list[str]:
    return parse_packages(PACKAGES_FILE.read_text())


def dependencies() -> list[str]:
    with open(REPO / "pyproject.toml", "rb") as f:
        return list(tomllib.load(f)["project"]["dependencies"])


def image_config() -> ImageConfig:
    return ImageConfig(
        entrypoint=ENTRYPOINT,
        env=[
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            f"PYTHONPATH={PYTHONPATH}",
            "PYTHONDONTWRITEBYTECODE=1",
        ],
        labels={"org.opencontainers.image.source": "hastack"},
    )


def mirror() -> str:
    return os.environ.get("HASTACK_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def _key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _cache() -> Path:
    d = binaries.cache_root() / "images"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _cached_layer(name: str, key: str, build: object) -> tuple[Path, str]:
    """Return (layer tar, digest) from the cache, building it with `build(dir)` when absent."""
    layer = _cache() / f"{name}-{key}.layer.tar"
    digest_file = layer.with_suffix(".sha256")
    if layer.exists() and digest_file.exists():
        log.info("cache hit: %s", layer)
        layer.touch()  # most recently used: kept by _prune
        digest_file.touch()
        return layer, digest_file.read_text().strip()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"hastack-{name}-", dir=_cache()) as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        build(root)  # type: ignore[operator]
        digest = write_layer(root, layer, keep_owner=True)
    digest_file.write_text(digest)
    log.info("built layer %s in %.0fs", layer.name, time.monotonic() - t0)
    return layer, digest


def _build_rootfs(root: Path) -> None:
    include = ",".join(packages())
    res = subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={include}", SUITE, str(root), mirror()],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if res.returncode != 0:
        tail = (res.stdout + res.stderr)[-3000:]
        raise RuntimeError(f"debootstrap failed ({res.returncode}); is {mirror()} reachable?\n{tail}")
    for rel in STRIP:
        shutil.rmtree(root / rel, ignore_errors=True)
        (root / rel).mkdir(parents=True, exist_ok=True)
    with open(root / "etc/passwd", "a") as f:
        f.write(f"{NONROOT_USER}:x:{NONROOT_UID}:{NONROOT_UID}:hastack:/nonexistent:/usr/sbin/nologin\n")
    with open(root / "etc/group", "a") as f:
        f.write(f"{NONROOT_USER}:x:{NONROOT_UID}:\n")


def _pip(*args: str) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "install", "--no-compile", *args],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if res.returncode != 0:
        raise RuntimeError(f"pip install {' '.join(args)} failed:\n{res.stderr[-3000:]}")


def _build_deps(root: Path) -> None:
    _pip("--target", str(root / "opt/hastack/lib"), *dependencies())


def _project_files() -> list[Path]:
    files = []
    for src in PROJECT_SOURCES:
        p = REPO / src
        if p.is_file():
            files.append(p)
            continue
        files += sorted(
            f
            for f in p.rglob("*")
            if f.is_file() and "__pycache__" not in f.parts and not f.name.endswith((".pyc", ".egg-info", ".so"))
        )
    return files


def project_key() -> str:
    h = hashlib.sha256()
    for f in _project_files():
        h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _build_project(root: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="hastack-src-") as tmp:
        for f in _project_files():  # a clean copy: pip builds in-tree and must not touch the checkout
            dest = Path(tmp) / f.relative_to(REPO)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest)
        _pip("--no-deps", "--no-build-isolation", "--target", str(root / "opt/hastack/app"), tmp)
    shutil.rmtree(root / "opt/hastack/app/bin", ignore_errors=True)  # console scripts name the build's python
    bin_dir = root / HASTACK_COMMAND.lstrip("/")
    bin_dir.parent.mkdir(parents=True, exist_ok=True)
    bin_dir.write_text(HASTACK_WRAPPER)
    bin_dir.chmod(0o755)
    gate = root / GATE_PATH.lstrip("/")
    shutil.copy2(build_gate(), gate)
    gate.chmod(0o755)


def build(salt: str = "") -> Image:
    """Build (or take from the cache) the hastack image; returns its tag and archive.
    `salt` forces a new project layer exactly as a code change would (benchmarks)."""
    t0 = time.monotonic()
    rootfs = _cached_layer("rootfs", _key(RECIPE, SUITE, mirror(), *packages()), _build_rootfs)
    pyver = f"{sys.version_info.major}.{sys.version_info.minor}"
    deps = _cached_layer("pydeps", _key(pyver, *dependencies()), _build_deps)
    pkey = _key(project_key(), salt) if salt else project_key()
    project = _cached_layer("project", pkey, _build_project)
    tag = f"{REPO_NAME}:{_key(rootfs[1], deps[1], project[1])[:12]}"
    archive = _cache() / f"hastack-{tag.rsplit(':', 1)[1]}.tar"
    if not archive.exists():
        write_archive(archive, tag, [rootfs, deps, project], image_config())
    _prune("hastack-*.tar", keep=3)
    _prune("project-*.layer.*", keep=6)  # tar + sha256 per build
    _prune("rootfs-*.layer.*", keep=2)
    _prune("pydeps-*.layer.*", keep=4)
    return Image(tag, archive, time.monotonic() - t0)


def _prune(pattern: str, keep: int) -> None:
    """Keep the cache from growing with every code change: the newest `keep` files stay."""
    files = sorted(_cache().glob(pattern), key=lambda f: f.stat().st_mtime, reverse=True)
    for old in files[keep:]:
        old.unlink(missing_ok=True)
