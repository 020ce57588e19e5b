"""Dirty bitmap (pure): one bit per 4 KiB block, set when the block may differ on a peer.

Bit ``i`` covers bytes ``[i*4096, (i+1)*4096)``; bit order within a byte is LSB first.
A write of any part of a block marks the whole block (it may differ anywhere inside it).
"""

from __future__ import annotations

from collections.abc import Iterator

from hastack_common.config_blockrepl import BLOCK


class Bitmap:
    __slots__ = ("_bits", "nbits")

    def __init__(self, nbits: int, data: bytes | bytearray | None = None) -> None:
        self.nbits = nbits
        nbytes = (nbits + 7) // 8
        self._bits = bytearray(nbytes)
        if data is not None:
            self._bits[:] = bytes(data[:nbytes]).ljust(nbytes, b"\0")
            self._mask_tail()

    @classmethod
    def for_size(cls, size: int) -> Bitmap:
        return cls(-(-size // BLOCK))

    def _mask_tail(self) -> None:
        extra = len(self._bits) * 8 - self.nbits
        if extra and self._bits:
            self._bits[-1] &= 0xFF >> extra

    def to_bytes(self) -> bytes:
        return bytes(self._bits)

    def copy(self) -> Bitmap:
        return Bitmap(self.nbits, self._bits)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Bitmap) and other.nbits == self.nbits and other._bits == self._bits

    def __hash__(self) -> int:  # mutable; identity hash is meaningless, refuse
        raise TypeError("Bitmap is unhashable")

    def get(self, bit: int) -> bool:
        return bool(self._bits[bit >> 3] >> (bit & 7) & 1)

    def set_bits(self, first: int, last: int, value: bool = True) -> None:
        """Set (or clear) bits ``first..last`` inclusive."""
        first, last = max(first, 0), min(last, self.nbits - 1)
        if first > last:
            return
        b0, b1 = (first + 7) >> 3, (last + 1) >> 3  # whole bytes [b0, b1)
        if b0 < b1:
            self._bits[b0:b1] = (b"\xff" if value else b"\0") * (b1 - b0)
            edges = list(range(first, b0 * 8)) + list(range(b1 * 8, last + 1))
        else:
            edges = list(range(first, last + 1))
        for bit in edges:
            if value:
                self._bits[bit >> 3] |= 1 << (bit & 7)
            else:
                self._bits[bit >> 3] &= ~(1 << (bit & 7)) & 0xFF

    def mark(self, offset: int, length: int) -> None:
        """Mark every block touched by the byte range (length 0 marks nothing)."""
        if length > 0:
            self.set_bits(offset // BLOCK, (offset + length - 1) // BLOCK)

    def clear(self, offset: int, length: int) -> None:
        """Clear the blocks the byte range covers (the range is block aligned in every caller)."""
        if length > 0:
            self.set_bits(offset // BLOCK, (offset + length - 1) // BLOCK, False)

    def set_all(self) -> None:
        self.set_bits(0, self.nbits - 1)

    def clear_all(self) -> None:
        self._bits[:] = bytes(len(self._bits))

    def count(self) -> int:
        return int.from_bytes(self._bits, "little").bit_count()

    def any(self) -> bool:
        return any(self._bits)

    def merge(self, other: Bitmap) -> None:
        if other.nbits != self.nbits:
            raise ValueError(f"bitmap sizes differ: {self.nbits} vs {other.nbits} bits")
        merged = int.from_bytes(self._bits, "little") | int.from_bytes(other._bits, "little")
        self._bits[:] = merged.to_bytes(len(self._bits), "little")

    def next_set(self, start: int) -> int:
        """First set bit at or after ``start``, or -1."""
        if start >= self.nbits:
            return -1
        byte = start >> 3
        first = self._bits[byte] >> (start & 7)
        if first:
            return start + ((first & -first).bit_length() - 1)
        rest = self._bits[byte + 1 :]
        stripped = rest.lstrip(b"\0")
        if not stripped:
            return -1
        idx = byte + 1 + len(rest) - len(stripped)
        val = self._bits[idx]
        bit = idx * 8 + ((val & -val).bit_length() - 1)
        return bit if bit < self.nbits else -1

    def runs(self, start: int = 0, max_bits: int = 32) -> Iterator[tuple[int, int]]:
        """``(first_bit, nbits)`` runs of set bits from ``start``, each at most ``max_bits`` long."""
        bit = self.next_set(start)
        while bit >= 0:
            n = 1
            while n < max_bits and bit + n < self.nbits and self.get(bit + n):
                n += 1
            yield bit, n
            bit = self.next_set(bit + n)

    def resize(self, nbits: int) -> Bitmap:
        return Bitmap(nbits, self._bits[: (nbits + 7) // 8])
