"""The CustomResourceDefinitions, defined once in Python and rendered to ``crds/*.yaml``."""

from __future__ import annotations

from typing import Any

from hastack_common.crds import hacluster, replicatedvolume, servicemonitor

DEFINITIONS: dict[str, dict[str, Any]] = {
    "haclusters": hacluster.DEFINITION,
    "replicatedvolumes": replicatedvolume.DEFINITION,
    "servicemonitors": servicemonitor.DEFINITION,
}
