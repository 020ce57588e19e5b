"""Dirty bitmap against a set-of-blocks model."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hastack_blockrepl.bitmap import Bitmap

BLOCK = 4096
NBITS = 301

ops = st.lists(
    st.tuples(st.sampled_from(["mark", "clear"]), st.integers(0, NBITS * BLOCK), st.integers(0, 40 * BLOCK)),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_bitmap_matches_model(seq: list[tuple[str, int, int]]) -> None:
    bm, model = Bitmap(NBITS), set()
    for op, off, length in seq:
        if op == "mark":
            bm.mark(off, length)
            if length:
                model |= set(range(off // BLOCK, min((off + length - 1) // BLOCK, NBITS - 1) + 1))
        else:
            start = off - off % BLOCK
            bm.clear(start, length)
            if length:
                model -= set(range(start // BLOCK, (start + length - 1) // BLOCK + 1))
    assert bm.count() == len(model)
    assert {b for b in range(NBITS) if bm.get(b)} == model
    runs = list(bm.runs(max_bits=7))
    assert {b for first, n in runs for b in range(first, first + n)} == model
    assert all(1 <= n <= 7 for _, n in runs)
    again = Bitmap(NBITS, bm.to_bytes())
    assert again == bm
    nxt = bm.next_set(0)
    assert nxt == (min(model) if model else -1)


def test_merge_set_all_resize() -> None:
    a, b = Bitmap(20), Bitmap(20)
    a.mark(0, 1)
    b.mark(19 * BLOCK, BLOCK)
    a.merge(b)
    assert a.count() == 2 and a.get(0) and a.get(19)
    a.set_all()
    assert a.count() == 20 and len(a.to_bytes()) == 3
    assert a.resize(8).count() == 8 and a.resize(40).count() == 20


def test_tail_bits_masked_on_load() -> None:
    assert Bitmap(3, b"\xff").count() == 3
