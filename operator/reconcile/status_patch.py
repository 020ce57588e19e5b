"""Status is written only when it would change (no resourceVersion churn on a no-op reconcile)."""

from __future__ import annotations

from typing import Any


def status_changed(old_status: dict[str, Any], new_status: dict[str, Any]) -> bool:
    """A merge patch of ``new_status`` would change ``old_status`` (keys it omits are kept)."""
    return any(old_status.get(k) != v for k, v in new_status.items())
