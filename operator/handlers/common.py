"""What every kind's handlers share: metrics around the call, status written only on change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kopf

from hastack_operator import metrics
from hastack_operator.k8s import ApiError
from hastack_operator.reconcile.status_patch import cleaned, status_changed


def run(plural: str, handler: str, body: kopf.Body, patch: kopf.Patch,
        fn: Callable[[], dict[str, Any]]) -> None:
    with metrics.observe(plural, handler):
        try:
            new = cleaned(fn())
        except ApiError as exc:
            if exc.status in (409, 429) or exc.status >= 500:
                raise kopf.TemporaryError(f"API server: {exc}", delay=5) from exc
            raise
        if status_changed(dict(body.get("status") or {}), new):
            patch.status.update(new)
