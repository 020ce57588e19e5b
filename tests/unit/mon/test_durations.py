from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hastack_common.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("3s", 3),
        ("1m30s", 90),
        ("1.5h", 5400),
        ("0", 0),
        ("2h45m", 9900),
        ("250us", 0.00025),
        ("10ns", 1e-8),
        (".5s", 0.5),
        ("-1s", -1),
        ("1h0m0.5s", 3600.5),
    ],
)
def test_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "3", "1d", "s", "1 s", "1.2.3s", "ms", "5sec", "+"])
def test_refused_with_an_example(text: str) -> None:
    with pytest.raises(DurationError, match="500ms"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.5, "500ms"), (90, "1m30s"), (3600, "1h"), (1.25, "1.25s"), (3661.5, "1h1m1.5s")],
)
def test_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(0, 10**9))
def test_round_trip(ms: int) -> None:
    assert parse_duration(format_duration(ms / 1000)) == pytest.approx(ms / 1000)
