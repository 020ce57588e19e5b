"""Every alert is complete for the one paged at 3 a.m.: severity, summary and description with the
cluster and namespace, a runbook_url that resolves to docs/runbooks/<Alert>.md, a runbook with the
sections an operator needs, a row in docs/operator.md "Alerts"; and the values schema knows every
alert name (severityOverrides, disabledAlerts)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from harness.alerts_rules import CHART, DEFAULT_RUNBOOK_BASE, ROOT, RUNBOOKS, alert_names, load_rules

RULES = load_rules()
NAMES = alert_names(RULES)
SECTIONS = ("## What it means", "## Confirm", "## What to do", "## What not to do")


def rule_id(rule: dict[str, Any]) -> str:
    return rule["alert"] + ("/" + rule["labels"]["cause"] if "cause" in rule.get("labels", {}) else "")


def output_labels(expr: str) -> set[str] | None:
    """Labels of the result when the outermost aggregations say so (None: not known here)."""
    groups = [set(x.strip() for x in m.group(1).split(",")) for m in re.finditer(r"\bby\s*\(([^)]*)\)", expr)]
    if not groups:
        return None
    return set.intersection(*groups)


@pytest.mark.parametrize("rule", RULES, ids=rule_id)
def test_rule_is_complete(rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert re.fullmatch(r"(HACluster|ReplicatedVolume|ServiceMonitor|Hastack)[A-Z][A-Za-z]+", name), name
    assert rule["labels"]["severity"] in ("critical", "warning", "info")
    ann = rule["annotations"]
    assert ann["summary"] and ann["description"]
    assert ann["runbook_url"] == f"{DEFAULT_RUNBOOK_BASE}/{name}.md"
    used = set(re.findall(r"\$labels\.(\w+)", ann["summary"] + ann["description"]))
    available = output_labels(rule["expr"])
    if available is not None:
        assert used <= available, f"{name}: annotations use {used - available}, the result has only {available}"
        if "namespace" in available:
            assert "namespace" in used, f"{name}: say which namespace"
        if "hacluster" in available:
            assert "hacluster" in used, f"{name}: say which HACluster"


@pytest.mark.parametrize("name", NAMES)
def test_every_alert_has_a_runbook_with_the_needed_sections(name: str) -> None:
    path = RUNBOOKS / f"{name}.md"
    assert path.is_file(), f"write {path.relative_to(ROOT)}"
    text = path.read_text()
    assert text.startswith(f"# {name}\n")
    for section in SECTIONS:
        assert section in text, f"{path.name}: missing {section!r}"
    for rule in (r for r in RULES if r["alert"] == name):
        assert rule["labels"]["severity"] in text.split("## What it means")[0]
    for link in re.findall(r"\]\(([A-Za-z]+\.md)\)", text):
        assert (RUNBOOKS / link).is_file(), f"{path.name} links {link}, which does not exist"


def test_no_runbook_without_an_alert() -> None:
    assert sorted(p.stem for p in RUNBOOKS.glob("*.md")) == sorted(NAMES)


def test_operator_docs_list_every_alert_with_its_runbook() -> None:
    text = (ROOT / "docs" / "operator.md").read_text()
    assert "\n## Alerts\n" in text
    section = text.split("\n## Alerts\n", 1)[1].split("\n## ", 1)[0]
    for name in NAMES:
        assert f"[{name}](runbooks/{name}.md)" in section, f"docs/operator.md: no row for {name}"


def test_values_schema_knows_every_alert_name() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert sorted(schema["definitions"]["alertName"]["enum"]) == sorted(NAMES)
