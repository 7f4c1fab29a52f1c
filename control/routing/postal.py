"""Country + postal code as one 64-bit number, so longest-prefix matching is an interval search.

A postal code is normalised (upper case, spaces and dashes removed, at most ``MAX_POSTAL``
letters/digits) and read as a base-37 number padded with zeros on the right; the country (two
letters) sits above it. Every code starting with prefix P then lies in one interval, and the
intervals of a prefix and its extensions nest, which is what the plan compiler relies on.
"""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt

MAX_POSTAL = 10
BASE = 37
SPAN = BASE**MAX_POSTAL  # keys of one country: [country * SPAN, (country + 1) * SPAN)
NO_POSTAL = -1
_VALUE = np.full(256, 255, np.uint8)  # byte -> base-37 digit: NUL 0, '0'..'9' 1..10, 'A'..'Z' 11..36
_VALUE[0] = 0
_VALUE[48:58] = np.arange(1, 11)
_VALUE[65:91] = np.arange(11, 37)
_STRIP = re.compile(r"[\s\-]")


def normalise_postal(code: str) -> str | None:
    """Upper case, no spaces or dashes; None when it is not letters/digits or too long."""
    p = _STRIP.sub("", code).upper()
    if p == "":
        return ""
    if len(p) > MAX_POSTAL or not (p.isascii() and p.isalnum()):
        return None
    return p


def country_index(country: str) -> int:
    """0..675 for an ISO alpha-2 code (two letters); -1 otherwise."""
    c = country.strip().upper()
    if len(c) != 2 or not ("A" <= c[0] <= "Z" and "A" <= c[1] <= "Z"):
        return -1
    return (ord(c[0]) - 65) * 26 + ord(c[1]) - 65


def _digit(ch: str) -> int:
    o = ord(ch)
    return o - 47 if o <= 57 else o - 54  # '0'..'9' -> 1..10, 'A'..'Z' -> 11..36


def postal_key(country: str, postal: str) -> int:
    """Key of a (country, postal code); -1 when either is malformed. Empty postal is allowed."""
    ci = country_index(country)
    p = normalise_postal(postal)
    if ci < 0 or p is None:
        return NO_POSTAL
    v = 0
    for ch in p.ljust(MAX_POSTAL, "\0"):
        v = v * BASE + (0 if ch == "\0" else _digit(ch))
    return int(ci * SPAN + v)


def prefix_interval(country: str, prefix: str) -> tuple[int, int] | None:
    """Inclusive key interval of every postal code of ``country`` starting with ``prefix``."""
    lo = postal_key(country, prefix)
    if lo < 0:
        return None
    p = normalise_postal(prefix) or ""
    return lo, lo + BASE ** (MAX_POSTAL - len(p)) - 1


def postal_keys(
    country: npt.NDArray[np.uint8], postal: npt.NDArray[np.uint8], postal_len: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Vectorised :func:`postal_key`: country as (n, 2) bytes, normalised postal as (n, 10) bytes.
    Bytes must already be upper case with spaces/dashes removed, zero padded; rows with other
    bytes or a postal code longer than ``MAX_POSTAL`` get -1.
    """
    cok = ((country - np.uint8(65)) <= 25).all(axis=1)
    ci = (country[:, 0].astype(np.int64) - 65) * 26 + (country[:, 1].astype(np.int64) - 65)
    dig = np.take(_VALUE, postal)
    # Padding reads 0; a real NUL byte inside the code does too, so count the non-zero bytes.
    ok = cok & (postal_len <= MAX_POSTAL) & (dig != 255).all(axis=1)
    ok &= np.count_nonzero(postal, axis=1) == postal_len
    v = np.zeros(len(dig), np.int64)
    for j in range(MAX_POSTAL):  # column by column: never widens the whole matrix
        v = v * BASE + dig[:, j]
    return np.where(ok, ci * SPAN + v, NO_POSTAL)
