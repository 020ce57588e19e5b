"""The CRD YAML is generated from one source, stays fresh, and explains every field."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

from hastack_common.crds import DEFINITIONS
from hastack_common.crds.render import OUTPUT_DIRS, filename, render

ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("out", OUTPUT_DIRS)
@pytest.mark.parametrize("plural", list(DEFINITIONS))
def test_committed_yaml_is_fresh(out: str, plural: str) -> None:
    committed = (ROOT / out / filename(plural)).read_text()
    assert committed == render(plural), f"{out}/{filename(plural)} is stale: run `make crds`"


def walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, schema)]
    for name, sub in (schema.get("properties") or {}).items():
        found += walk(sub, f"{path}.{name}")
    if "items" in schema:
        found += walk(schema["items"], f"{path}[]")
    return found


@pytest.mark.parametrize("plural", list(DEFINITIONS))
def test_every_field_is_described_and_typed(plural: str) -> None:
    root = DEFINITIONS[plural]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in walk(root):
        if path in (".metadata",) or path.endswith("[]"):
            continue
        assert node.get("description"), f"{plural}{path} has no description (kubectl explain shows it)"
        assert node.get("type") or node.get("x-kubernetes-preserve-unknown-fields"), f"{plural}{path}"


@pytest.mark.parametrize("plural", list(DEFINITIONS))
def test_names_and_subresources(plural: str) -> None:
    spec = DEFINITIONS[plural]["spec"]
    assert spec["group"] == "hastack.io"
    assert spec["names"]["categories"] == ["hastack"]
    assert spec["versions"][0]["subresources"] == {"status": {}}
    assert spec["versions"][0]["name"] == "v1alpha1"


def test_short_names() -> None:
    short = {p: DEFINITIONS[p]["spec"]["names"]["shortNames"] for p in DEFINITIONS}
    assert short == {"haclusters": ["hac"], "replicatedvolumes": ["rvol"], "servicemonitors": ["hasm"]}


def test_yaml_round_trips() -> None:
    for plural in DEFINITIONS:
        assert yaml.safe_load(render(plural)) == DEFINITIONS[plural]
