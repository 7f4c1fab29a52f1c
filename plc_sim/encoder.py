"""32-bit encoder arithmetic: counts wrap at 2**32, so every comparison is modulo 2**32."""

from __future__ import annotations

WRAP = 1 << 32
MASK = WRAP - 1
HALF = 1 << 31


def wrap(count: int) -> int:
    """An unwrapped (unbounded) count as the PLC's 32-bit register shows it."""
    return count & MASK


def delta(later: int, earlier: int) -> int:
    """Signed distance from ``earlier`` to ``later`` in counts, both 32-bit wrapped values.

    Valid while the true distance is under 2**31 counts (2147 km of belt at 1 count/mm).
    """
    d = (later - earlier) & MASK
    return d - WRAP if d >= HALF else d


def unwrap_near(count: int, reference: int) -> int:
    """The unwrapped count closest to the unwrapped ``reference`` whose low 32 bits are ``count``."""
    return reference + delta(count, wrap(reference))
