"""Key prefixes that are not a PLC's boot id: for parcels whose tracking id repeats although the
PLC did not restart (rings back to 0 under one boot id; a finished parcel seen again)."""

from __future__ import annotations

__all__ = ["derived_boot"]


def derived_boot(boot_id: int, n: int) -> int:
    """The ``n``-th key prefix derived from ``boot_id``: a different 32-bit value for each ``n``
    (never 0), so keys made with it never repeat the PLC's own or each other."""
    return ((boot_id * 2654435761) ^ (n * 40503) ^ 0x5A5A5A5A) & 0xFFFFFFFF or 1
