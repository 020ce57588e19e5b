"""Go-style duration strings, as the CRDs carry them and CEL's ``duration()`` reads them.

``"500ms"``, ``"3s"``, ``"1m30s"``, ``"1.5h"``, ``"0"``. Units: ns, us (or µs), ms, s, m, h.
Days are refused, as they are by CEL: write ``"24h"``.
"""

from __future__ import annotations

import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


class DurationError(ValueError):
    """A duration string that does not parse; the message says what a valid one looks like."""


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration string; raises :class:`DurationError`."""
    if not isinstance(text, str):
        raise DurationError(f'duration must be a string such as "500ms" or "1m30s", got {text!r}')
    s = text.strip()
    sign = 1.0
    if s[:1] in "+-" and s:
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise DurationError(f'empty duration {text!r}; write e.g. "500ms", "3s" or "1m30s"')
    total, pos = 0.0, 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            raise DurationError(
                f"invalid duration {text!r}: expected <number><unit> parts with units ns, us, ms, s, m, h "
                '(e.g. "500ms", "1m30s")'
            )
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def format_duration(seconds: float) -> str:
    """The shortest Go-style string for ``seconds`` (millisecond precision): 90 -> "1m30s"."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    out = (f"{h}h" if h else "") + (f"{m}m" if m else "")
    if s or ms:
        out += f"{s}.{ms:03d}".rstrip("0").rstrip(".") + "s"
    return out
