"""The alert engine, table-driven and property-based (mon's alertafter/alertevery/upalert/depend)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hastack_mon.alerts import DepState, ProbeState, Rule, evaluate, monitor_state


def run(
    results: str,
    rule: Rule,
    step: float = 1.0,
    deps: Mapping[int, Mapping[str, DepState]] | None = None,
    standby_until: int = -1,
) -> tuple[list[tuple[int, str]], ProbeState]:
    """Feed a string of results ('F' failure, 'S' success), one per ``step`` seconds."""
    state = ProbeState()
    out: list[tuple[int, str]] = []
    current: Mapping[str, DepState] = {}
    for i, c in enumerate(results):
        if deps and i in deps:
            current = deps[i]
        state, actions = evaluate(state, rule, c == "S", i * step, deps=current, may_alert=i > standby_until)
        out += [(i, a.kind) for a in actions]
    return out, state


UP, DOWN, UNKNOWN = DepState.UP, DepState.DOWN, DepState.UNKNOWN

TABLE = [
    # (id, results, rule, expected actions)
    ("first failure alerts by default", "FS", Rule(), [(0, "alert"), (1, "resolve")]),
    ("after=3 needs three in a row", "FFSFFFS", Rule(after=3), [(5, "alert"), (6, "resolve")]),
    ("never reaching after: silence", "FFSFFSFF", Rule(after=3), []),
    ("one alert per outage without every", "FFFFFFF", Rule(after=2), [(1, "alert")]),
    (
        "upalert on recovery",
        "FFS",
        Rule(after=2, up_alert=True),
        [(1, "alert"), (2, "resolve"), (2, "upalert")],
    ),
    ("no upalert without a fired alert", "FSFS", Rule(after=2, up_alert=True), []),
    ("no upalert at start-up", "SSS", Rule(up_alert=True), []),
    (
        "every repeats",
        "FFFFFFS",
        Rule(after=1, every=2.0),
        [(0, "alert"), (2, "realert"), (4, "realert"), (6, "resolve")],
    ),
    ("every counted from the last alert", "FFFFFF", Rule(after=2, every=3.0), [(1, "alert"), (4, "realert")]),
    ("two outages, two alerts", "FFSFF", Rule(after=2), [(1, "alert"), (2, "resolve"), (4, "alert")]),
    ("window: 3 of the last 5s", "FSFSF", Rule(after=9, within=5.0, failures_within=3), [(4, "alert")]),
    ("window: too spread out", "FSSSSSFSSSSSF", Rule(after=9, within=5.0, failures_within=3), []),
    (
        "window keeps firing while it holds",
        "FSFSFSSSSSS",
        Rule(after=9, within=6.0, failures_within=3),
        [(4, "alert"), (6, "resolve")],
    ),
]


@pytest.mark.parametrize(("results", "rule", "expected"), [t[1:] for t in TABLE], ids=[t[0] for t in TABLE])
def test_sequences(results: str, rule: Rule, expected: list[tuple[int, str]]) -> None:
    assert run(results, rule)[0] == expected


def test_dependency_down_suppresses_then_fires_when_it_recovers() -> None:
    rule = Rule(after=2, depends_on=("db",))
    actions, state = run("FFFF", rule, deps={0: {"db": DOWN}, 3: {"db": UP}})
    assert actions == [(3, "alert")]
    assert state.alert == "alerting"


def test_dependency_reason_is_recorded() -> None:
    rule = Rule(after=1, depends_on=("db",))
    _, state = run("F", rule, deps={0: {"db": DOWN}})
    assert state.alert == "suppressed"
    assert "dependency db down" in state.reason


def test_unknown_dependency_suppresses_at_start_up() -> None:
    actions, state = run("FF", Rule(after=1, depends_on=("db",)), deps={0: {"db": UNKNOWN}})
    assert actions == [] and "db unknown" in state.reason


def test_dependency_not_run_here_is_ignored_and_said() -> None:
    actions, state = run("F", Rule(after=1, depends_on=("elsewhere",)))
    assert actions == [(0, "alert")]
    assert "elsewhere not run here" in state.reason


def test_suppressed_alert_recovering_sends_nothing() -> None:
    actions, state = run("FFS", Rule(after=1, up_alert=True, depends_on=("db",)), deps={0: {"db": DOWN}})
    assert actions == [] and state.alert == "ok"


def test_dependency_down_suppresses_realert() -> None:
    rule = Rule(after=1, every=1.0, depends_on=("db",))
    actions, state = run("FFFF", rule, deps={0: {"db": UP}, 2: {"db": DOWN}})
    assert actions == [(0, "alert"), (1, "realert")]
    assert "re-alert suppressed" in state.reason


def test_standby_evaluates_but_does_not_alert_then_alerts_once_active() -> None:
    actions, state = run("FFFF", Rule(after=2), standby_until=2)
    assert actions == [(3, "alert")]
    assert state.alert == "alerting"
    _, standby = run("FF", Rule(after=2), standby_until=5)
    assert "standby" in standby.reason


def test_state_fields() -> None:
    _, s = run("SSFF", Rule(after=5), step=2.0)
    assert s.last_result is False and s.consecutive_failures == 2
    assert s.last_change == 4.0 and s.alert == "pending"
    assert s.reason == "pending: 2 of 5 consecutive failures"


def test_monitor_state() -> None:
    assert monitor_state([]) is UP
    assert monitor_state([ProbeState()]) is UNKNOWN
    failed, ok = ProbeState(last_result=False), ProbeState(last_result=True)
    assert monitor_state([ok, failed, ProbeState()]) is DOWN
    assert monitor_state([ok, ok]) is UP


rules = st.builds(
    Rule,
    after=st.integers(1, 5),
    within=st.one_of(st.none(), st.floats(1, 10)),
    failures_within=st.integers(1, 5),
    every=st.one_of(st.none(), st.floats(0.5, 10)),
    up_alert=st.booleans(),
)
sequences = st.text(alphabet="SF", max_size=60)


@settings(max_examples=400, deadline=None)
@given(rule=rules, results=sequences, step=st.floats(0.1, 3))
def test_properties(rule: Rule, results: str, step: float) -> None:
    state = ProbeState()
    firing = False
    failures = 0
    last_alert = -1e9
    for i, c in enumerate(results):
        now = i * step
        ok = c == "S"
        failures += not ok
        state, actions = evaluate(state, rule, ok, now)
        for a in actions:
            assert a.reason
            if a.kind == "alert":
                # never before `after` failures since start-up, only on a failed result
                needed = min(rule.after, rule.failures_within) if rule.within else rule.after
                assert not firing and failures >= needed and not ok
                firing, last_alert = True, now
            elif a.kind == "realert":
                assert firing and rule.every is not None and now - last_alert >= rule.every - 1e-9
                last_alert = now
            elif a.kind == "resolve":
                assert firing and ok  # only a success recovers
                firing = False
            elif a.kind == "upalert":
                assert rule.up_alert and any(b.kind == "resolve" for b in actions)
        assert (state.alert == "alerting") == firing
        assert state.consecutive_failures == (0 if ok else state.consecutive_failures)
        assert state.reason


@settings(max_examples=200, deadline=None)
@given(rule=rules, results=sequences, dep_down=st.lists(st.booleans(), min_size=60, max_size=60))
def test_no_alert_while_dependency_down(rule: Rule, results: str, dep_down: list[bool]) -> None:
    rule = Rule(rule.after, rule.within, rule.failures_within, rule.every, rule.up_alert, ("db",))
    state = ProbeState()
    for i, c in enumerate(results):
        deps = {"db": DOWN if dep_down[i] else UP}
        state, actions = evaluate(state, rule, c == "S", float(i), deps=deps)
        if dep_down[i]:
            assert not [a for a in actions if a.kind in ("alert", "realert")]


@settings(max_examples=200, deadline=None)
@given(rule=rules, results=sequences)
def test_without_every_one_alert_per_outage(rule: Rule, results: str) -> None:
    rule = Rule(rule.after, None, 1, None, rule.up_alert)
    actions, _ = run(results, rule)
    outages = [run_ for run_ in results.split("S") if len(run_) >= rule.after]
    assert [k for _, k in actions if k == "alert"] == ["alert"] * len(outages)
    assert not [k for _, k in actions if k == "realert"]


def test_a_demoted_member_stops_re_alerting_but_still_resolves_its_alert() -> None:
    rule = Rule(after=1, every=1.0, up_alert=True)
    state, actions = evaluate(ProbeState(), rule, False, 0.0)
    assert [a.kind for a in actions] == ["alert"]
    state, actions = evaluate(state, rule, False, 5.0, may_alert=False)  # demoted to standby
    assert actions == [] and "re-alert suppressed: this member is a standby" in state.reason
    state, actions = evaluate(state, rule, True, 6.0, may_alert=False)
    assert [a.kind for a in actions] == ["resolve", "upalert"]  # it closes the alert it opened


def test_a_window_alert_recovers_on_a_success_only() -> None:
    rule = Rule(after=9, within=1.0, failures_within=3)
    state, kinds = ProbeState(), []
    for t, ok in ((0.0, False), (0.1, False), (0.2, False), (2.0, False), (2.1, True)):
        state, actions = evaluate(state, rule, ok, t)
        kinds += [(t, a.kind) for a in actions]
        if t == 2.0:  # the window holds 1 failure now, but this result failed: the alert stays
            assert state.alert == "alerting" and "alert kept" in state.reason
    assert kinds == [(0.2, "alert"), (2.1, "resolve")]
