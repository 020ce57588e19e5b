"""One level-triggered reconcile per kind: on resume, create, spec update and a slow timer."""

from __future__ import annotations

from typing import Any

import kopf

from hastack_common import consts
from hastack_operator import metrics
from hastack_operator.reconcile.accept import accepted_status, status_changed
from hastack_operator.resources.validation import spec_problems

RESYNC_SECONDS = 60.0


def _reconcile(plural: str, body: kopf.Body, patch: kopf.Patch) -> None:
    with metrics.observe(plural, "reconcile"):
        old = dict(body.get("status") or {})
        new = accepted_status(body.metadata.get("generation") or 0, old,
                              spec_problems(plural, dict(body.spec), body.metadata.name or ""))
        if status_changed(old, new):
            patch.status.update(new)


def _register(plural: str) -> None:
    group, version = consts.GROUP, consts.VERSION

    def reconcile(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        _reconcile(plural, body, patch)

    reconcile.__name__ = reconcile.__qualname__ = f"reconcile_{plural}"
    kopf.on.resume(group, version, plural, id="reconcile")(reconcile)
    kopf.on.create(group, version, plural, id="reconcile")(reconcile)
    kopf.on.update(group, version, plural, field="spec", id="reconcile")(reconcile)
    kopf.timer(group, version, plural, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS,
               id="resync")(reconcile)


for _plural in consts.PLURALS:
    _register(_plural)
