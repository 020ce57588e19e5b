"""A small accumulator of metav1.Conditions (pure): add what you observed, get the list back.

``lastTransitionTime`` moves only when a condition's status changes, so re-running a
reconcile with the same observations changes nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"


@dataclass
class Conditions:
    generation: int
    previous: list[dict[str, Any]] = field(default_factory=list)
    now: dt.datetime | None = None
    _new: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, ctype: str, status: str, reason: str, message: str = "") -> Conditions:
        self._new[ctype] = {"type": ctype, "status": status, "reason": reason, "message": message}
        return self

    def success(self, ctype: str, reason: str, message: str = "") -> Conditions:
        return self.add(ctype, TRUE, reason, message)

    def error(self, ctype: str, reason: str, message: str = "") -> Conditions:
        return self.add(ctype, FALSE, reason, message)

    def unknown(self, ctype: str, reason: str, message: str = "") -> Conditions:
        return self.add(ctype, UNKNOWN, reason, message)

    def to_list(self) -> list[dict[str, Any]]:
        """Conditions in a stable order: the new ones, then previous ones not re-observed."""
        stamp = (self.now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        old = {c.get("type"): c for c in self.previous if isinstance(c, dict)}
        out = []
        for ctype, cond in self._new.items():
            prev = old.get(ctype) or {}
            moved = prev.get("status") != cond["status"]
            out.append({
                **cond,
                "observedGeneration": self.generation,
                "lastTransitionTime": stamp if moved else prev.get("lastTransitionTime", stamp),
            })
        out += [c for t, c in old.items() if t not in self._new]
        return out
