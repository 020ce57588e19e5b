"""Operator start-up: settings, login, the API client kept in memo (never at import time)."""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf
import kubernetes

from hastack_common import consts
from hastack_operator.k8s import Kube

DEFAULT_IMAGE = "hastack:0.1.0"
WORKERS = int(os.environ.get("HASTACK_OPERATOR_WORKERS", "24"))


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_via_client(**kwargs)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Our own annotation and finalizer names, not kopf's defaults.
    settings.persistence.finalizer = f"{consts.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=consts.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=consts.GROUP, key="last-handled-configuration")
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.batching.error_delays = [1, 2, 5, 10, 30, 60]
    # Handlers spend most of their time waiting for the API server (a Role or RoleBinding apply
    # waits ~0.1 s on its escalation check): enough threads to overlap them, one connection each.
    settings.execution.max_workers = WORKERS
    config = kubernetes.client.Configuration.get_default_copy()
    config.connection_pool_maxsize = WORKERS
    memo.kube = Kube(kubernetes.client.ApiClient(config))
    memo.image = os.environ.get("HASTACK_IMAGE", DEFAULT_IMAGE)
