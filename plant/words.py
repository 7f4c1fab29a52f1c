"""Modbus register words <-> integers, in the one word order the tag map documents.

32-bit values are two registers, high word first (pymodbus's default, stated in the tag map
because common masters default to the other order). Pure Python: these run per value, not
per parcel array, and a struct round-trip is slower than the shifts.
"""

from __future__ import annotations

from collections.abc import Sequence

from plant.tagmap import WORDS


def to_words(value: int, type_: str) -> list[int]:
    """Encode ``value`` as registers; out-of-range values raise instead of wrapping silently."""
    if type_ == "uint16":
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"{value} out of range for uint16")
        return [value]
    if type_ == "int16":
        if not -0x8000 <= value <= 0x7FFF:
            raise ValueError(f"{value} out of range for int16")
        return [value & 0xFFFF]
    if type_ == "uint32":
        if not 0 <= value <= 0xFFFFFFFF:
            raise ValueError(f"{value} out of range for uint32")
        return [(value >> 16) & 0xFFFF, value & 0xFFFF]
    if type_ == "int32":
        if not -0x80000000 <= value <= 0x7FFFFFFF:
            raise ValueError(f"{value} out of range for int32")
        v = value & 0xFFFFFFFF
        return [(v >> 16) & 0xFFFF, v & 0xFFFF]
    raise ValueError(f"unknown register type {type_!r}")


def from_words(words: Sequence[int], type_: str, offset: int = 0) -> int:
    """Decode the value of ``type_`` starting at ``words[offset]``."""
    n = WORDS[type_]
    if offset + n > len(words):
        raise ValueError(f"need {n} words at offset {offset}, have {len(words)}")
    if n == 1:
        v = words[offset] & 0xFFFF
        return v - 0x10000 if type_ == "int16" and v & 0x8000 else v
    v = ((words[offset] & 0xFFFF) << 16) | (words[offset + 1] & 0xFFFF)
    return v - 0x100000000 if type_ == "int32" and v & 0x80000000 else v
