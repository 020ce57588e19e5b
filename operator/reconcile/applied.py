"""Server-side apply, skipping manifests this process has already applied unchanged.

An apply of an unchanged manifest changes nothing on the server, but it is one of the API
server's most expensive requests (decode, admission, managed-fields merge of the whole
object). Each HACluster is reconciled several times in a burst (create, its monitor, its
volume), so the operator remembers, per owner, the hash of the manifest it last applied for
each object and skips an identical one. A run with ``fresh=True`` (resume after a restart, the
periodic resync) applies everything, so an object changed or deleted behind the operator's
back is restored at the next resync, as before.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

from hastack_common import consts
from hastack_operator.k8s import Kube

Key = tuple[str, str, str, str]  # apiVersion, kind, namespace, name

_lock = threading.Lock()
_applied: dict[str, dict[Key, str]] = {}  # owner uid -> object -> manifest hash


def key(obj: dict[str, Any]) -> Key:
    meta = obj["metadata"]
    return obj["apiVersion"], obj["kind"], meta.get("namespace") or "", meta["name"]


def digest(obj: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def seen(owner: str, k: Key, value: str) -> bool:
    with _lock:
        return _applied.get(owner, {}).get(k) == value


def remember(owner: str, k: Key, value: str) -> None:
    with _lock:
        _applied.setdefault(owner, {})[k] = value


def forget(owner: str) -> None:
    with _lock:
        _applied.pop(owner, None)


def apply_all(kube: Kube, owner: str, objects: list[dict[str, Any]], fresh: bool = True) -> int:
    """Apply each object (in order) unless, without ``fresh``, its manifest is the one this
    process last applied; return how many were sent. A failed apply is not remembered."""
    sent = 0
    for obj in objects:
        k, h = key(obj), digest(obj)
        if not fresh and seen(owner, k, h):
            continue
        kube.apply(obj)
        remember(owner, k, h)
        sent += 1
    return sent


# -- the record on the anchor -------------------------------------------------------------
# The first object applied for an owner (its anchor) carries, in this annotation, every
# object applied for that owner that may still exist: written before the others are applied,
# narrowed after a prune. Pruning then deletes what the record names and the desired set does
# not, without listing every prunable kind of the namespace.

ANNOTATION_APPLIED = f"{consts.GROUP}/applied-objects"
Name = tuple[str, str, str]  # apiVersion, kind, name


def encode(names: frozenset[Name]) -> str:
    return json.dumps(sorted(list(n) for n in names), separators=(",", ":"))


def recorded_on(anchor: dict[str, Any]) -> frozenset[Name] | None:
    """The objects the anchor's record names; None when it has no (readable) record."""
    raw = ((anchor.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_APPLIED)
    try:
        items = json.loads(raw) if raw else None
    except ValueError:
        return None
    if not isinstance(items, list) or not all(isinstance(i, list) and len(i) == 3 for i in items):
        return None
    return frozenset((str(a), str(k), str(n)) for a, k, n in items)


def with_record(anchor: dict[str, Any], names: frozenset[Name]) -> dict[str, Any]:
    meta = anchor["metadata"]
    out = {**anchor, "metadata": {**meta, "annotations": {**(meta.get("annotations") or {}),
                                                          ANNOTATION_APPLIED: encode(names)}}}
    return out
