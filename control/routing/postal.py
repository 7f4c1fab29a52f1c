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

    Bytes must already be upper case with spaces/dashes removed; rows with other bytes or a
    postal code longer than ``MAX_POSTAL`` get -1.
    """
    c = country.astype(np.int64)
    cok = ((c >= 65) & (c <= 90)).all(axis=1)
    ci = (c[:, 0] - 65) * 26 + (c[:, 1] - 65)
    p = postal.astype(np.int64)
    inside = np.arange(MAX_POSTAL)[None, :] < postal_len[:, None]
    dig = np.where((p >= 48) & (p <= 57), p - 47, np.where((p >= 65) & (p <= 90), p - 54, -1))
    dig = np.where(inside, dig, 0)
    ok = cok & (postal_len <= MAX_POSTAL) & ~((dig < 0) & inside).any(axis=1)
    v = np.zeros(len(c), dtype=np.int64)
    for j in range(MAX_POSTAL):
        v = v * BASE + dig[:, j]
    return np.where(ok, ci * SPAN + v, NO_POSTAL)
