"""The chart's alerting rules for tests: load them, render them through helm, read their PromQL.

``selectors`` and ``grouping`` are a small reader of the PromQL the rules use (metric selectors,
matchers, ``by``/``on`` clauses), enough for the contract test between the rules and the metrics
the components export; promtool itself checks the syntax.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

import yaml

from harness import binaries
from harness.procs import run

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "hastack"
ALERTS_FILE = CHART / "files" / "alerts.yaml"
RUNBOOKS = ROOT / "docs" / "runbooks"
DEFAULT_RUNBOOK_BASE = "https://hastack.io/docs/runbooks"
MONITORING_APIS = ("monitoring.coreos.com/v1/PrometheusRule", "monitoring.coreos.com/v1/PodMonitor")

# PromQL words that are not metric names
KEYWORDS = frozenset({"sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
    "unless", "bool", "offset", "rate", "irate", "increase", "delta", "idelta", "deriv", "absent",
    "absent_over_time", "changes", "resets", "avg_over_time", "max_over_time", "min_over_time",
    "sum_over_time", "count_over_time", "last_over_time", "histogram_quantile", "label_replace",
    "label_join", "round", "clamp_min", "clamp_max", "time", "vector", "scalar"})


def load_rules(path: pathlib.Path = ALERTS_FILE) -> list[dict[str, Any]]:
    doc = yaml.safe_load(path.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alert_names(rules: list[dict[str, Any]] | None = None) -> list[str]:
    """Distinct alert names, in file order."""
    seen: dict[str, None] = {}
    for rule in rules if rules is not None else load_rules():
        seen.setdefault(rule["alert"], None)
    return list(seen)


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        raise RuntimeError("promtool not found: apt-get install prometheus (Debian ships it as /usr/bin/promtool)")
    return path


def helm_template(values: dict[str, Any] | None = None, api_versions: tuple[str, ...] = MONITORING_APIS,
                  show_only: str | None = None) -> list[dict[str, Any]]:
    """Render the chart as `helm install` would on a cluster serving ``api_versions``."""
    argv = [str(binaries.find("helm")), "template", "hastack", str(CHART), "--namespace", "hastack-system",
            "--kube-version", binaries.versions()["K8S_VERSION"]]
    for api in api_versions:
        argv += ["--api-versions", api]
    if show_only:
        argv += ["--show-only", show_only]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump(values or {}, f)
        f.flush()
        out = run([*argv, "-f", f.name], check=False)
    if out.returncode != 0:
        if "could not find template" in out.stderr:
            return []
        raise RuntimeError(f"helm template failed: {out.stderr}")
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


# ---- reading PromQL ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Matcher:
    label: str
    op: str  # =, !=, =~, !~
    value: str


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[Matcher, ...]
    in_range_function: bool  # inside rate(), increase(), delta() ...


_MATCHER = re.compile(r'([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_IDENT = re.compile(r"(?<![\w:.])([a-zA-Z_:][\w:]*)\s*(\{[^}]*\})?")
_CLAUSE = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_RANGE_FUNCS = ("rate", "irate", "increase", "delta", "idelta", "deriv", "changes", "resets")


def _blank_strings_and_ranges(expr: str) -> str:
    """Same length, with range/offset durations and clause labels blanked, matchers kept."""
    expr = re.sub(r"\[[^\]]*\]", lambda m: " " * len(m.group()), expr)
    expr = re.sub(r"\boffset\s+\w+", lambda m: " " * len(m.group()), expr)
    return _CLAUSE.sub(lambda m: m.group(1) + " " * (len(m.group()) - len(m.group(1))), expr)


def selectors(expr: str) -> list[Selector]:
    text = _blank_strings_and_ranges(expr)
    out = []
    for m in _IDENT.finditer(text):
        name = m.group(1)
        if name in KEYWORDS or re.fullmatch(r"[0-9.e+-]+", name):
            continue
        following = text[m.end():].lstrip()
        if m.group(2) is None and following.startswith("("):
            continue  # a function call
        matchers = tuple(Matcher(*mm.groups()) for mm in _MATCHER.finditer(m.group(2) or ""))
        before = text[: m.start()]
        in_range = any(re.search(rf"\b{f}\s*\(\s*$", before) for f in _RANGE_FUNCS)
        out.append(Selector(name, matchers, in_range))
    return out


def _argument(expr: str, start: int) -> str:
    """The balanced parenthesised text starting at ``expr[start] == '('``."""
    depth = 0
    for i in range(start, len(expr)):
        if expr[i] == "(":
            depth += 1
        elif expr[i] == ")":
            depth -= 1
            if depth == 0:
                return expr[start + 1: i]
    raise ValueError(f"unbalanced parentheses in {expr!r}")


def grouping(expr: str) -> list[tuple[str, tuple[str, ...], list[str]]]:
    """Each ``by``/``without``/``on``/``ignoring`` clause: (keyword, labels, metrics it applies to).

    ``by``/``without`` apply to the metrics of the aggregation's argument; ``on``/``ignoring`` to
    both sides of the binary operation (here: every metric of the expression).
    """
    out = []
    everything = [s.metric for s in selectors(expr)]
    for m in _CLAUSE.finditer(expr):
        kind, labels = m.group(1), tuple(x.strip() for x in m.group(2).split(",") if x.strip())
        if kind in ("group_left", "group_right"):
            continue
        if kind in ("by", "without"):
            rest = expr[m.end():]
            offset = m.end() + (len(rest) - len(rest.lstrip()))
            if expr[offset:offset + 1] != "(":
                raise ValueError(f"write `agg by (...) (expr)` in {expr!r}")
            metrics = [s.metric for s in selectors(_argument(expr, offset))]
        else:
            metrics = everything
        out.append((kind, labels, metrics))
    return out
