"""PVC size = volume + blockrepl's metadata, by the one shared function."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hastack_common.config_blockrepl import metadata_bytes
from hastack_common.sizing import pvc_bytes, pvc_quantity, quantity_bytes


@pytest.mark.parametrize(("text", "expected"), [
    ("1Gi", 1 << 30), ("500M", 500_000_000), ("1.5Gi", 3 << 29), ("4096", 4096), ("2Ti", 2 << 40),
])
def test_quantities(text: str, expected: int) -> None:
    assert quantity_bytes(text) == expected


@pytest.mark.parametrize("bad", ["", "abc", "0", "-1Gi", "1Qi"])
def test_bad_quantities(bad: str) -> None:
    with pytest.raises(ValueError):
        quantity_bytes(bad)


@given(st.integers(min_value=1, max_value=1 << 44))
def test_pvc_holds_volume_and_metadata(size: int) -> None:
    total = pvc_bytes(size)
    usable = -(-size // (1 << 20)) * (1 << 20)
    assert total == usable + metadata_bytes(usable)
    assert total % (1 << 20) == 0
    assert pvc_quantity(size) == f"{total >> 20}Mi"
