"""ServiceMonitors read from the Kubernetes API, for mon run standalone without the operator.

Level-triggered: the list is read again every poll interval (a missed change is picked up on
the next read, as after a restart). An object mon cannot use is skipped with the reason logged
and kept in :attr:`ApiSource.errors`; the others keep running. Needs RBAC ``get``/``list`` on
``servicemonitors.hastack.io`` in the watched namespace(s).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any

from pydantic import ValidationError

from hastack_common.config_mon import MonitorConfig, monitor_from_object
from hastack_common.consts import GROUP, SERVICEMONITORS, VERSION
from hastack_common.logs import kv
from hastack_mon.k8s import api_client

log = logging.getLogger(__name__)


def monitors_from_items(items: list[dict[str, Any]]) -> tuple[list[MonitorConfig], dict[str, str]]:
    """Usable monitors, and the reason for each object that is not (by "namespace/name")."""
    good: list[MonitorConfig] = []
    errors: dict[str, str] = {}
    for item in sorted(items, key=lambda i: (i["metadata"]["namespace"], i["metadata"]["name"])):
        meta = item["metadata"]
        name = f"{meta['namespace']}/{meta['name']}"
        if meta.get("deletionTimestamp"):
            continue
        try:
            good.append(monitor_from_object(item))
        except ValidationError as exc:
            errors[name] = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return good, errors


class ApiSource:
    def __init__(self, namespace: str | None) -> None:
        self.namespace = namespace  # None: every namespace
        self.errors: dict[str, str] = {}
        self._api: Any = None

    def _client(self) -> Any:
        if self._api is None:
            from kubernetes import client

            self._api = client.CustomObjectsApi(api_client())
        return self._api

    def _list(self) -> list[dict[str, Any]]:
        api = self._client()
        if self.namespace:
            out = api.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, SERVICEMONITORS, _request_timeout=10
            )
        else:
            out = api.list_cluster_custom_object(GROUP, VERSION, SERVICEMONITORS, _request_timeout=10)
        return list(out.get("items", []))

    async def read(self) -> tuple[list[MonitorConfig], str]:
        """The usable monitors and a digest of them; raises on API errors (the caller keeps the
        running set)."""
        items = await asyncio.to_thread(self._list)
        good, errors = monitors_from_items(items)
        for name, why in errors.items():
            if self.errors.get(name) != why:
                log.error("ServiceMonitor refused", extra=kv(servicemonitor=name, error=why))
        self.errors = errors
        text = json.dumps([m.model_dump(by_alias=True) for m in good], sort_keys=True)
        return good, hashlib.sha256(text.encode()).hexdigest()
