"""Sizes both sides agree on: the backing PVC of a replica = volume + blockrepl's metadata."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from hastack_common.config_blockrepl import metadata_bytes

_SUFFIXES: dict[str, int | Decimal] = {
    "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18, "m": Decimal("0.001"),
}


def quantity_bytes(quantity: str | int) -> int:
    """A Kubernetes quantity ("10Gi", "500M", "1.5Gi") in whole bytes (rounded up)."""
    text = str(quantity).strip()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if text.endswith(suffix):
            number, mult = text[: -len(suffix)], Decimal(_SUFFIXES[suffix])
            break
    else:
        number, mult = text, Decimal(1)
    try:
        value = Decimal(number) * mult
    except InvalidOperation as exc:
        raise ValueError(f"not a quantity: {quantity!r}") from exc
    if value <= 0:
        raise ValueError(f"a size must be positive: {quantity!r}")
    return int(value.to_integral_value(rounding="ROUND_CEILING"))


def pvc_bytes(volume_size: str | int) -> int:
    """The backing PVC's size: the usable volume plus internal metadata, rounded up to 1 MiB."""
    size = quantity_bytes(volume_size)
    size = -(-size // (1 << 20)) * (1 << 20)
    return size + metadata_bytes(size)


def pvc_quantity(volume_size: str | int) -> str:
    return f"{pvc_bytes(volume_size) >> 20}Mi"
