"""Status is written only when it would change (no resourceVersion churn on a no-op reconcile).

The API server stores a status without its null fields (a merge patch deletes a key set to
null; inside lists, the whole list replaces the old one and nulls are dropped from its items).
A builder may leave a field null (``lastSeen`` of a member that never reported): compared as
sent, such a status would look changed on every run, and be written every time.
"""

from __future__ import annotations

import threading
from typing import Any

from hastack_operator.k8s import Kube


def _stored(value: Any) -> Any:
    """``value`` as the API server keeps it: without null fields, at any depth."""
    if isinstance(value, dict):
        return {k: _stored(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_stored(v) for v in value]
    return value


def _clean_lists(value: Any, in_list: bool = False) -> Any:
    if isinstance(value, dict):
        return {k: _clean_lists(v, in_list) for k, v in value.items() if not (in_list and v is None)}
    if isinstance(value, list):
        return [_clean_lists(v, True) for v in value]
    return value


def cleaned(new_status: dict[str, Any]) -> dict[str, Any]:
    """The status to send: nulls dropped inside lists (they mean nothing there); nulls of
    dict fields kept, since in a merge patch they delete what was stored; conditions in one
    order (by type), so that the full reconcile and the status refresh, which observe them in
    different orders, write nothing when they agree."""
    out: dict[str, Any] = _clean_lists(new_status)
    if isinstance(out.get("conditions"), list):
        out["conditions"] = sorted(out["conditions"], key=lambda c: str((c or {}).get("type", "")))
    return out


def status_changed(old_status: dict[str, Any], new_status: dict[str, Any]) -> bool:
    """A merge patch of ``new_status`` would change ``old_status`` (keys it omits are kept)."""
    return any(_stored(old_status.get(k)) != _stored(v) for k, v in new_status.items())


# (apiVersion, kind, namespace, name) -> (resourceVersion the status was computed from, status sent)
_written: dict[tuple[str, str, str, str], tuple[str, dict[str, Any]]] = {}
_lock = threading.Lock()


def write_status(kube: Kube, api_version: str, kind: str, body: dict[str, Any], new_status: dict[str, Any]) -> bool:
    """Patch ``body``'s status to ``new_status`` if that changes it; return whether it was sent.

    ``body`` may come from a watch index that has not yet seen this process's last write: a
    status already sent on top of the very same resourceVersion is not sent again."""
    meta = body["metadata"]
    key = (api_version, kind, meta["namespace"], meta["name"])
    new = cleaned(new_status)
    seen = (str(meta.get("resourceVersion") or ""), new)
    with _lock:
        if _written.get(key) == seen:
            return False
    if not status_changed(dict(body.get("status") or {}), new):
        return False
    kube.patch(api_version, kind, meta["namespace"], meta["name"], {"status": new}, subresource="status")
    with _lock:
        _written[key] = seen
    return True


def forget_status(api_version: str, kind: str, namespace: str, name: str) -> None:
    with _lock:
        _written.pop((api_version, kind, namespace, name), None)
