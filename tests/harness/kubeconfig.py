"""Kubeconfig files (self-contained: certificates embedded) and TLS contexts for readiness probes."""

from __future__ import annotations

import base64
import ssl
import urllib.request
from pathlib import Path
from typing import Any

import yaml


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def write(
    path: Path,
    server: str,
    ca_file: Path,
    user: str,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    token: str | None = None,
    cluster: str = "hastack-test",
    namespace: str | None = None,
) -> Path:
    """Write a one-context kubeconfig for `user` authenticated by a client certificate or a token."""
    creds: dict[str, Any] = {}
    if client_cert and client_key:
        creds = {
            "client-certificate-data": _b64(client_cert),
            "client-key-data": _b64(client_key),
        }
    elif token:
        creds = {"token": token}
    else:
        raise ValueError("a kubeconfig needs a client certificate and key, or a token")
    context: dict[str, Any] = {"cluster": cluster, "user": user}
    if namespace:
        context["namespace"] = namespace
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": cluster, "cluster": {"server": server, "certificate-authority-data": _b64(ca_file)}}
        ],
        "users": [{"name": user, "user": creds}],
        "contexts": [{"name": f"{user}@{cluster}", "context": context}],
        "current-context": f"{user}@{cluster}",
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)
    return path


def tls_context(ca_file: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    if cert and key:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def http_get(url: str, ctx: ssl.SSLContext | None = None, timeout: float = 2.0) -> tuple[int, str]:
    """GET url; returns (status, body) for any HTTP answer, raises OSError when nothing answers."""
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode(errors="replace")
