"""mon's alert rules as a pure function: ``evaluate(state, rule, ok, now, deps) -> (state, actions)``.

One :class:`ProbeState` per probe carries everything the decision needs; the clock is passed in.
Semantics (mon.cf names in brackets):

- **after** [alertafter N]: the alert condition holds after N consecutive failures, or, with
  **failuresWithin** M and **within** T [alertafter M T], after M failures within the last T
  seconds. Counting starts at start-up, so nothing fires before that many failures have been
  seen by this process (no storm).
- **every** [alertevery]: while the condition holds, a fired alert is repeated once per period
  (on the next failed result after the period has elapsed); without it (0), once per outage.
- **upAlert** [upalert]: when a fired alert's condition clears, an ``upalert`` is sent as well
  as the ``resolve`` (which always follows a fired alert, for Alertmanager).
- **dependsOn** [depend]: while a dependency is down (its latest result failed) or not yet
  probed, the child's alert is *suppressed*: it fires when the dependency is up again and the
  child is still failing. A dependency this process does not run is ignored (and said so).

Every evaluation leaves a human-readable ``reason`` in the state, and every action carries one.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from hastack_common.config_mon import Alert
from hastack_common.durations import format_duration, parse_duration

AlertState = Literal["ok", "pending", "alerting", "suppressed"]
ActionKind = Literal["alert", "realert", "upalert", "resolve"]


class DepState(enum.Enum):
    UP = "up"
    DOWN = "down"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Rule:
    after: int = 1
    within: float | None = None
    failures_within: int = 1
    every: float | None = None
    up_alert: bool = False
    depends_on: tuple[str, ...] = ()

    @classmethod
    def from_spec(cls, spec: Alert) -> Rule:
        every = parse_duration(spec.every)
        return cls(
            after=spec.after,
            within=parse_duration(spec.within) if spec.within else None,
            failures_within=spec.failures_within or 1,
            every=every if every > 0 else None,
            up_alert=spec.up_alert,
            depends_on=tuple(spec.depends_on),
        )


@dataclass(frozen=True)
class ProbeState:
    last_result: bool | None = None  # None: never probed since start-up
    consecutive_failures: int = 0
    failure_times: tuple[float, ...] = ()  # within the window, only when the rule has one
    last_change: float | None = None
    alert: AlertState = "ok"
    alerted_at: float | None = None  # last alert or re-alert sent in the current outage
    alerts_sent: int = 0
    reason: str = "not probed yet"


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    reason: str
    at: float
    consecutive_failures: int = 0
    details: dict[str, str] = field(default_factory=dict)


def monitor_state(states: Iterable[ProbeState]) -> DepState:
    """A ServiceMonitor as a dependency: down if any probe's latest result failed."""
    result = DepState.UP
    for s in states:
        if s.last_result is False:
            return DepState.DOWN
        if s.last_result is None:
            result = DepState.UNKNOWN
    return result


def _fmt(seconds: float) -> str:
    return format_duration(seconds)


def evaluate(
    state: ProbeState,
    rule: Rule,
    ok: bool,
    now: float,
    *,
    deps: Mapping[str, DepState] | None = None,
    may_alert: bool = True,
) -> tuple[ProbeState, list[Action]]:
    """Fold one probe result into the state; return the new state and the alerts to send.

    ``deps`` maps dependency names to their state; ``may_alert=False`` (a standby member)
    evaluates as usual but suppresses new alerts, with the reason recorded.
    """
    deps = deps or {}
    changed = state.last_result is not ok
    times = state.failure_times if rule.within is not None else ()
    if rule.within is not None:
        times = tuple(t for t in times if t > now - rule.within)
        if not ok:
            times = (*times, now)[-rule.failures_within :]
    cf = 0 if ok else state.consecutive_failures + 1
    base = replace(
        state,
        last_result=ok,
        consecutive_failures=cf,
        failure_times=times,
        last_change=now if changed else state.last_change,
    )
    by_count = cf >= rule.after
    by_window = rule.within is not None and len(times) >= rule.failures_within
    if by_count:
        why = f"{cf} consecutive failures (after={rule.after})"
    elif by_window:
        why = f"{len(times)} failures within {_fmt(rule.within or 0)} (failuresWithin={rule.failures_within})"
    else:
        why = ""

    if not why:  # the alert condition does not hold
        if state.alert == "alerting" and not ok:  # only a success recovers a fired alert
            return replace(base, reason=f"still failing ({cf} in a row, below the rule now); alert kept"), []
        if state.alert == "alerting":
            reason = f"recovered; condition cleared after {state.alerts_sent} alert(s)"
            actions = [Action("resolve", reason, now, state.consecutive_failures)]
            if rule.up_alert:
                actions.append(Action("upalert", reason, now, state.consecutive_failures))
            return replace(base, alert="ok", alerted_at=None, alerts_sent=0, reason=reason), actions
        if ok:
            reason = "success"
            if state.alert == "suppressed":
                reason = "success; the suppressed alert never fired"
            elif state.alert == "pending":
                reason = f"success after {state.consecutive_failures} failure(s), below after={rule.after}"
            return replace(base, alert="ok", alerted_at=None, alerts_sent=0, reason=reason), []
        counted = f"{len(times)} failure(s) within {_fmt(rule.within)}" if rule.within is not None else ""
        reason = f"{cf} of {rule.after} consecutive failures" + (f"; {counted}" if counted else "")
        return replace(base, alert="pending", reason=f"pending: {reason}"), []

    if ok:  # the window still holds enough failures: alerts are only sent on failed results
        return replace(base, reason=f"success, but {why}: alert state {state.alert} kept"), []

    blocked = [d for d in rule.depends_on if deps.get(d) in (DepState.DOWN, DepState.UNKNOWN)]
    ignored = [d for d in rule.depends_on if d not in deps]
    note = f"; dependency {', '.join(ignored)} not run here, ignored" if ignored else ""

    if state.alert == "alerting":
        assert state.alerted_at is not None
        if rule.every is None:
            return replace(base, reason=f"still down ({why}); alerted once, no every period{note}"), []
        due = state.alerted_at + rule.every
        if now < due:
            return replace(base, reason=f"still down ({why}); next re-alert at {due:.3f}{note}"), []
        if blocked:
            states = ", ".join(f"{d} {deps[d].value}" for d in blocked)
            return replace(base, reason=f"still down ({why}); re-alert suppressed: dependency {states}"), []
        if not may_alert:
            return replace(base, reason=f"still down ({why}); re-alert suppressed: this member is a standby"), []
        reason = f"still down: {why}; re-alert every {_fmt(rule.every)}{note}"
        new = replace(base, alerted_at=now, alerts_sent=state.alerts_sent + 1, reason=reason)
        return new, [Action("realert", reason, now, cf)]

    if blocked:
        states = ", ".join(f"{d} {deps[d].value}" for d in blocked)
        return replace(base, alert="suppressed", reason=f"suppressed: {why}, but dependency {states}"), []
    if not may_alert:
        reason = f"suppressed: {why}, but this member is a standby (only the active member alerts)"
        return replace(base, alert="suppressed", reason=reason), []
    reason = f"alert: {why}{note}"
    new = replace(base, alert="alerting", alerted_at=now, alerts_sent=1, reason=reason)
    return new, [Action("alert", reason, now, cf)]
