"""Container images without a registry: docker-archive tarballs written from directories.

A docker-archive is a tar holding `manifest.json` (RepoTags, config, layer paths), one
image config (whose `rootfs.diff_ids` are the sha256 of each uncompressed layer tar) and
the layer tars. `ctr -n k8s.io images import` reads it into a node's containerd.

Layers are built reproducibly (sorted entries, fixed mtime, root ownership) so that an
unchanged directory gives an unchanged layer digest, and each layer tar is cached by the
caller under a key of its choice.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EPOCH = 946684800  # 2000-01-01: a fixed mtime for reproducible layers


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(
        default_factory=lambda: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    )
    user: str = ""
    workdir: str = "/"
    labels: dict[str, str] = field(default_factory=dict)


def _reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _walk_sorted(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(dirnames + filenames):
            yield base / name


def write_layer(src: Path, dest: Path, keep_owner: bool = False) -> str:
    """Tar directory `src` (its contents at /) into `dest`; return the layer's sha256 hex digest."""
    tmp = dest.with_suffix(".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in _walk_sorted(src):
            arc = str(path.relative_to(src))
            info = tar.gettarinfo(str(path), arcname=arc)
            info.mtime = EPOCH
            if not keep_owner:
                _reset(info)
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    os.replace(tmp, dest)
    return sha256_file(dest)


def write_layer_from_files(files: dict[str, tuple[bytes | str, int]], dest: Path) -> str:
    """A layer from in-memory entries: {path: (content, mode)}; a str content is a symlink target."""
    tmp = dest.with_suffix(".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for name in sorted(files):
            parts = Path(name).parts[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = _reset(tarfile.TarInfo(d))
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            content, mode = files[name]
            info = _reset(tarfile.TarInfo(name))
            info.mode = mode
            if isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    os.replace(tmp, dest)
    return sha256_file(dest)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def image_config(diff_ids: list[str], cfg: ImageConfig) -> dict[str, Any]:
    """The OCI/docker image config document (pure)."""
    inner: dict[str, Any] = {"Env": cfg.env, "WorkingDir": cfg.workdir}
    if cfg.entrypoint:
        inner["Entrypoint"] = cfg.entrypoint
    if cfg.cmd:
        inner["Cmd"] = cfg.cmd
    if cfg.user:
        inner["User"] = cfg.user
    if cfg.labels:
        inner["Labels"] = cfg.labels
    return {
        "architecture": "amd64",
        "os": "linux",
        "created": "2000-01-01T00:00:00Z",
        "config": inner,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in diff_ids]},
        "history": [
            {"created": "2000-01-01T00:00:00Z", "created_by": "hastack image builder"} for _ in diff_ids
        ],
    }


def write_archive(dest: Path, tag: str, layers: list[tuple[Path, str]], cfg: ImageConfig) -> str:
    """Write a docker-archive with `layers` [(layer tar, sha256 hex)] in order; return the image id."""
    config = json.dumps(image_config([d for _, d in layers], cfg), sort_keys=True).encode()
    config_id = hashlib.sha256(config).hexdigest()
    manifest = [
        {
            "Config": f"{config_id}.json",
            "RepoTags": [tag],
            "Layers": [f"{digest}/layer.tar" for _, digest in layers],
        }
    ]
    tmp = dest.with_suffix(".tmp")
    with tarfile.open(tmp, "w") as tar:
        _add_bytes(tar, f"{config_id}.json", config)
        for path, digest in layers:
            info = _reset(tar.gettarinfo(str(path), arcname=f"{digest}/layer.tar"))
            with open(path, "rb") as f:
                tar.addfile(info, f)
        _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
    os.replace(tmp, dest)
    return config_id


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = _reset(tarfile.TarInfo(name))
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
