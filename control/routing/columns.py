"""Manifest column kernels: ids, times, countries and postal codes read as machine words.

The manifest's hot columns have fixed shapes (13- or 18-character ids, 20-character times,
2-letter countries, short postal codes), so their checks and values are computed from 2-, 4-
and 8-byte words gathered straight from an Arrow string array's data buffer (SWAR: one
integer operation checks or converts several characters), in blocks of rows that stay in the CPU cache. No string is upper-cased, trimmed or hashed on
this path. A kernel only ever *accepts* a value; rows it does not accept are handed back to the
caller, whose general (slower) text path decides them, so results are those of that path.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from control.routing.ids import S10_FLAG
from control.routing.postal import BASE, MAX_POSTAL

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
BLOCK = 1 << 16  # rows per block: a block's temporaries stay in the L2 cache

_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int64)
_ONES8 = np.uint64(0x0101010101010101)
_ZEROS8 = np.uint64(0x3030303030303030)  # eight '0' characters
_LANES = np.uint64(0x00FF00FF00FF00FF)  # even bytes as 16-bit lanes
_SUM4 = np.uint64(0x0001000100010001)  # lane sum into the top lane
_S10_EVEN = np.uint64((8 << 48) | (4 << 32) | (3 << 16) | 9)  # S10 weights of serial digits 0, 2, 4, 6
_S10_ODD = np.uint64((6 << 48) | (2 << 32) | (5 << 16) | 7)  # and of digits 1, 3, 5, 7
# A time ``YYYY-MM-DDTHH:MM:SSZ`` as five little-endian 4-byte words: the expected bytes (digits
# as '0') and a mask of the digit bytes.
_TIME_EXPECT = np.array([0x30303030, 0x2D30302D, 0x30543030, 0x30303A30, 0x5A30303A], np.uint32)
_TIME_DIGITS = np.array([0xFFFFFFFF, 0x00FFFF00, 0xFF00FFFF, 0xFFFF00FF, 0x00FFFF00], np.uint32)


def string_parts(arr: pa.Array) -> tuple[I64, npt.NDArray[np.uint8]]:
    """Offsets (n + 1, into ``data``) and data bytes of a string array, without copying the data."""
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1].astype(np.int64)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return offsets, data


def _words8(data: npt.NDArray[np.uint8]) -> U64:
    """Every 8-byte little-endian word of ``data``, one per byte offset (a strided view, no copy)."""
    n = max(len(data) - 7, 0)
    view: U64 = np.ndarray((n,), np.dtype("<u8"), data if n else None, 0, (1,))
    return view


def _words4(data: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint32]:
    """Every 4-byte little-endian word of ``data``, one per byte offset (a strided view, no copy)."""
    n = max(len(data) - 3, 0)
    view: npt.NDArray[np.uint32] = np.ndarray((n,), np.dtype("<u4"), data if n else None, 0, (1,))
    return view


def _words2(data: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint16]:
    """Every 2-byte little-endian word of ``data``, one per byte offset (a strided view, no copy)."""
    n = max(len(data) - 1, 0)
    view: npt.NDArray[np.uint16] = np.ndarray((n,), np.dtype("<u2"), data if n else None, 0, (1,))
    return view


def blocks(n: int) -> Iterator[slice]:
    """Slices of ``BLOCK`` rows covering ``range(n)``."""
    for lo in range(0, n, BLOCK):
        yield slice(lo, min(lo + BLOCK, n))


def _digits_ok(x: U64 | npt.NDArray[np.uint32], mask: int, width: int) -> npt.NDArray[np.bool_]:
    """Whether the bytes of ``x`` under ``mask`` are all <= 9 (``x`` is text XOR '0': a byte is a
    digit exactly when it is then <= 9). Adding 0x76 sets a byte's top bit when it is > 9; a
    carry out of a byte only happens when that byte's own top bit was set already."""
    t = x.dtype.type
    m = t(mask)
    top = t(int.from_bytes(b"\x80" * width, "little") & mask)
    y = (x & m) + t(int.from_bytes(b"\x76" * width, "little") & mask)
    return ((y | x) & top) == 0  # type: ignore[no-any-return]


def _parse8(x: U64) -> U64:
    """The number written by 8 digits (bytes 0..9, first digit in the lowest byte)."""
    x = (x * np.uint64(10) + (x >> np.uint64(8))) & _LANES
    x = (x * np.uint64(100) + (x >> np.uint64(16))) & np.uint64(0x0000FFFF0000FFFF)
    return (x * np.uint64(10000) + (x >> np.uint64(32))) & np.uint64(0xFFFFFFFF)


def _lane_sum(x: U64, weights: np.uint64) -> U64:
    """Weighted sum of the 16-bit lanes of ``x`` (weights in reverse lane order), via one product."""
    return (x * weights) >> np.uint64(48)


def _byte(x: U64, k: int) -> U64:
    return (x >> np.uint64(8 * k)) & np.uint64(0xFF)


def s10_keys(words: U64, starts: I64) -> U64:
    """Keys of 13-byte ids at ``starts`` that are valid upper-case S10 ids; 0 for the others."""
    out = np.zeros(len(starts), np.uint64)
    for b in blocks(len(starts)):
        s = starts[b]
        head, mid, tail = words[s], words[s + 2], words[s + 5]  # bytes 0-7, 2-9, 5-12
        letters = [_byte(head, 0), _byte(head, 1), _byte(tail, 6), _byte(tail, 7)]
        ok = np.ones(len(s), bool)
        for v in letters:
            ok &= (v - np.uint64(65)) <= np.uint64(25)
        x = mid ^ _ZEROS8
        ok &= _digits_ok(x, (1 << 64) - 1, 8)
        check = _byte(tail, 5) - np.uint64(48)
        ok &= check <= np.uint64(9)
        total = _lane_sum(x & _LANES, _S10_EVEN) + _lane_sum((x >> np.uint64(8)) & _LANES, _S10_ODD)
        chk = np.uint64(11) - total % np.uint64(11)
        chk = np.where(chk == 10, np.uint64(0), np.where(chk == 11, np.uint64(5), chk))
        ok &= chk == check
        a = np.uint64(65)
        key = ((((letters[0] - a) * np.uint64(26) + letters[1] - a) * np.uint64(1_000_000_000)
                + _parse8(x) * np.uint64(10) + check) * np.uint64(676)
               + (letters[2] - a) * np.uint64(26) + letters[3] - a) | S10_FLAG
        out[b] = np.where(ok, key, np.uint64(0))
    return out


def sscc_keys(words: U64, starts: I64) -> U64:
    """Keys of 18-byte ids at ``starts`` that are valid SSCCs (the number itself); 0 for the others."""
    out = np.zeros(len(starts), np.uint64)
    full = (1 << 64) - 1
    for b in blocks(len(starts)):
        s = starts[b]
        xa, xb, xc = words[s] ^ _ZEROS8, words[s + 8] ^ _ZEROS8, words[s + 10] ^ _ZEROS8  # bytes 0-7, 8-15, 10-17
        ok = _digits_ok(xa, full, 8) & _digits_ok(xb, full, 8) & _digits_ok(xc, full, 8)
        d16, d17 = _byte(xc, 6), _byte(xc, 7)
        even = _lane_sum(xa & _LANES, _SUM4) + _lane_sum(xb & _LANES, _SUM4) + d16
        odd = _lane_sum((xa >> np.uint64(8)) & _LANES, _SUM4) + _lane_sum((xb >> np.uint64(8)) & _LANES, _SUM4)
        ok &= (np.uint64(10) - (np.uint64(3) * even + odd) % np.uint64(10)) % np.uint64(10) == d17
        key = _parse8(xa) * np.uint64(10**10) + _parse8(xb) * np.uint64(100) + d16 * np.uint64(10) + d17
        out[b] = np.where(ok, key, np.uint64(0))
    return out


def id_keys(arr: pa.Array) -> tuple[U64, npt.NDArray[np.bool_]]:
    """Keys of the ids that are exactly a valid S10 (upper case) or SSCC, and a mask of the other
    rows (lower case, spaces, bad check digits, other lengths...), left to the general path."""
    offsets, data = string_parts(arr)
    lengths = np.diff(offsets)
    keys = np.zeros(len(arr), np.uint64)
    words = _words8(data)
    for length, kernel in ((13, s10_keys), (18, sscc_keys)):
        rows = np.flatnonzero(lengths == length)
        if len(rows):
            keys[rows] = kernel(words, offsets[rows])
    return keys, keys == 0


def country_codes(arr: pa.Array) -> tuple[I64, npt.NDArray[np.bool_]]:
    """Index 0..675 (``(first - 'A') * 26 + second - 'A'``) of the values that are exactly two
    upper-case letters, -1 for the others, and a mask of those others (padded, lower case, other
    lengths...), left to the general path."""
    offsets, data = string_parts(arr)
    lengths = np.diff(offsets)
    out = np.full(len(arr), -1, np.int64)
    rows = np.flatnonzero(lengths == 2)
    if len(rows):
        w = _words2(data)[offsets[rows]]
        a = (w & np.uint16(0xFF)) - np.uint16(65)  # wraps above 25 for bytes below 'A'
        b = (w >> np.uint16(8)) - np.uint16(65)
        ok = (a <= 25) & (b <= 25)
        out[rows] = np.where(ok, a.astype(np.int64) * 26 + b, -1)
    return out, out < 0


# Byte -> base-37 postal digit ('0'..'9' 1..10, 'A'..'Z' 11..36, as postal.postal_keys reads
# them); 255 for every other byte, NUL included (a real NUL is not padding here).
_POSTAL_DIGIT = np.full(256, 255, np.uint8)
_POSTAL_DIGIT[48:58] = np.arange(1, 11)
_POSTAL_DIGIT[65:91] = np.arange(11, 37)
_POSTAL_WORD = 8  # codes of up to 8 characters are read from one word
_LOW_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(_POSTAL_WORD + 1)], np.uint64)  # the k low bytes
# Base-37 value of k characters '0' (digit 1 each) in the first k of 8 places: a code of k
# digits reads its digit values (0-9) plus this.
_POSTAL_ONES = np.array([sum(BASE ** (_POSTAL_WORD - 1 - j) for j in range(k)) for k in range(_POSTAL_WORD + 1)],
                        np.int64)


def postal_values(arr: pa.Array) -> tuple[I64, npt.NDArray[np.bool_]]:
    """The postal part of the key (:func:`control.routing.postal.postal_keys` with country 0) of
    values that are 1-8 upper-case letters and digits, 0 for the empty value, -1 for the others,
    and a mask of those others (spaces, dashes, lower case, longer...), left to the general path.

    Each value is read as the 8-byte word that ends with it (so no read runs past the data),
    shifted down to its own bytes; values ending in the data's first 7 bytes go the general way.
    Codes of digits only (most countries') are read in 16- and 32-bit lanes, like the ids."""
    offsets, data = string_parts(arr)
    lengths = np.diff(offsets)
    out = np.full(len(arr), -1, np.int64)
    out[lengths == 0] = 0
    ends = offsets[1:]
    rows = np.flatnonzero((lengths >= 1) & (lengths <= _POSTAL_WORD) & (ends >= _POSTAL_WORD))
    if not len(rows):
        return out, out < 0
    lens = lengths[rows]
    w = _words8(data)[ends[rows] - _POSTAL_WORD] >> (np.uint64(8) * (_POSTAL_WORD - lens).astype(np.uint64))
    x = (w ^ _ZEROS8) & _LOW_BYTES[lens]  # digit values; 0 past the value's end
    digits = _digits_ok(x, (1 << 64) - 1, 8)
    # Base 37, first character most significant: pairs in 16-bit lanes, then 32, then 64.
    b1, b2, b4 = np.uint64(BASE), np.uint64(BASE**2), np.uint64(BASE**4)
    p = (x & _LANES) * b1 + ((x >> np.uint64(8)) & _LANES)
    q = (p & np.uint64(0x0000FFFF0000FFFF)) * b2 + ((p >> np.uint64(16)) & np.uint64(0x0000FFFF0000FFFF))
    v = (q & np.uint64(0xFFFFFFFF)) * b4 + (q >> np.uint64(32))
    # A digit d reads d + 1 ('0' is 1): add 1 for each of the value's characters.
    v = (v.astype(np.int64) + _POSTAL_ONES[lens]) * BASE ** (MAX_POSTAL - _POSTAL_WORD)
    out[rows] = np.where(digits, v, -1)
    other = np.flatnonzero(~digits)
    if len(other):  # letters (or anything else): byte by byte through the digit table
        d = _POSTAL_DIGIT[w[other].view(np.uint8).reshape(-1, _POSTAL_WORD)]  # zero bytes past the end read 255
        lo = lens[other]
        ok = np.ones(len(other), bool)
        val = np.zeros(len(other), np.int64)
        for j in range(_POSTAL_WORD):  # column by column; bytes past a value's end count as 0
            inside = lo > j
            ok &= ~inside | (d[:, j] != 255)
            val = val * BASE + np.where(inside, d[:, j], 0)
        out[rows[other]] = np.where(ok, val * BASE ** (MAX_POSTAL - _POSTAL_WORD), -1)
    return out, out < 0


def iso_times(arr: pa.Array) -> tuple[F64, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Epoch seconds of the values that are exactly ``YYYY-MM-DDTHH:MM:SSZ`` (NaN elsewhere), a
    mask of the values that are 20 bytes but not such a time, and a mask of the rows left to the
    general path (lengths other than 0 and 20: they may be a time once trimmed). A 20-byte value
    cannot change by trimming and still be 20 bytes, so the first two answers are final."""
    offsets, data = string_parts(arr)
    lengths = np.diff(offsets)
    secs = np.full(len(arr), np.nan)
    bad = np.zeros(len(arr), bool)
    rows = np.flatnonzero(lengths == 20)
    first = int(offsets[0])
    if int(offsets[-1]) - first == 20 * len(rows):
        # Every value is empty or 20 bytes (a clean column): those values, in row order, are the
        # data itself, read as a (rows, 5) word matrix without a gather.
        matrix = data[first : first + 20 * len(rows)].view("<u4").reshape(-1, 5)
        for b in blocks(len(rows)):
            secs[rows[b]], bad[rows[b]] = _time_block([matrix[b, k] for k in range(5)])
    else:
        words = _words4(data)
        for b in blocks(len(rows)):
            r = rows[b]
            secs[r], bad[r] = _time_block([words[offsets[r] + 4 * k] for k in range(5)])
    return secs, bad, (lengths != 20) & (lengths != 0)


def _time_block(w: list[npt.NDArray[np.uint32]]) -> tuple[F64, npt.NDArray[np.bool_]]:
    """Seconds and not-a-time mask of one block of times given as their five 4-byte words;
    strict like ``datetime.strptime`` (no 30 February, no second 60, years from 1).

    The two-digit fields are read in 32-bit lanes (one multiply-add per word gives the values
    of its digit pairs) and the date through :data:`_MONTHS` (one gather instead of the
    calendar arithmetic per row: a day's times fall in a few months)."""
    ok = np.ones(len(w[0]), bool)
    x = []
    for k in range(5):
        xk = w[k] ^ _TIME_EXPECT[k]  # digits as their values 0..9, separators 0
        ok &= (xk & ~_TIME_DIGITS[k]) == 0  # separators exactly as expected
        ok &= _digits_ok(xk, int(_TIME_DIGITS[k]), 4)
        x.append(xk)
    ten, low = np.uint32(10), np.uint32(0xFF)
    # Byte j of (x * 10 + (x >> 8)) holds digit j * 10 + digit j + 1 (at most 99: no carry).
    p = [xk * ten + (xk >> np.uint32(8)) for xk in x]
    y = (p[0] & low) * np.uint32(100) + ((p[0] >> np.uint32(16)) & low)
    mo = (p[1] >> np.uint32(8)) & low
    day = p[2] & low
    h = (x[2] >> np.uint32(24)) * ten + (x[3] & low)
    mi = (p[3] >> np.uint32(16)) & low
    sec = (p[4] >> np.uint32(8)) & low
    month = _MONTHS[(np.minimum(y, np.uint32(9999)) << np.uint32(4)) | (mo & np.uint32(15))]  # y > 9999: not digits
    ok &= (mo <= 12) & (day >= 1) & (day <= (month & 0xFF)) & (h <= 23) & (mi <= 59) & (sec <= 59)
    secs = (month >> 8) * 86400 + (day.astype(np.int64) * 86400 + h * np.uint32(3600) + mi * np.uint32(60) + sec)
    return np.where(ok, secs.astype(np.float64), np.nan), ~ok


def real_time(y: I64, mo: I64, day: I64, h: I64, mi: I64, s: I64) -> npt.NDArray[np.bool_]:
    """Whether the fields make a real time, strict like ``datetime.strptime``: no 30 February,
    no second 60, years from 1."""
    leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
    mo_c = np.clip(mo, 0, 12)
    dim = _DAYS[mo_c] + ((mo_c == 2) & leap)
    return (y >= 1) & (mo >= 1) & (mo <= 12) & (day >= 1) & (day <= dim) & (h <= 23) & (mi <= 59) & (s <= 59)  # type: ignore[no-any-return]


def epoch_seconds(y: I64, mo: I64, day: I64, h: I64, mi: I64, s: I64) -> F64:
    """Seconds since 1970-01-01 of proleptic Gregorian times (era arithmetic, 400-year cycles)."""
    yy = y - (mo <= 2)
    era = yy // 400
    yoe = yy - era * 400
    doy = (153 * np.where(mo > 2, mo - 3, mo + 9) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return (days * 86400 + h * 3600 + mi * 60 + s).astype(np.float64)  # type: ignore[no-any-return]


def _month_table() -> I64:
    """Per ``year * 16 + month`` (years 0-9999): the epoch day before the month's first day,
    shifted up 8 bits, and the month's number of days (0 for year 0 and months 0, 13-15)."""
    y, mo = np.divmod(np.arange(10000 * 16, dtype=np.int64), 16)
    real = real_time(y, mo, np.ones_like(y), *(np.zeros_like(y),) * 3)
    leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
    dim = np.where(real, _DAYS[np.clip(mo, 0, 12)] + ((mo == 2) & leap), 0)
    day0 = np.where(real, epoch_seconds(y, np.clip(mo, 1, 12), np.ones_like(y), *(np.zeros_like(y),) * 3) // 86400 - 1, 0)
    return (day0.astype(np.int64) << 8) | dim


_MONTHS = _month_table()


# Typed (Parquet) columns. A number column gives exactly what its text would (Arrow's cast); a
# timestamp column gives the instant it holds (see typed_times).
FIRST_SECOND = -62135596800  # 0001-01-01T00:00:00Z
LAST_SECOND = 253402300799  # 9999-12-31T23:59:59Z
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _one_array(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col


def is_typed_time(t: pa.DataType) -> bool:
    """A column type :func:`typed_times` reads (any other is read as text)."""
    return bool(pa.types.is_timestamp(t))


def is_typed_number(t: pa.DataType) -> bool:
    """A column type :func:`typed_numbers` reads (any other is read as text)."""
    return bool(pa.types.is_float64(t) or pa.types.is_integer(t))


def typed_times(col: pa.ChunkedArray | pa.Array) -> tuple[F64, npt.NDArray[np.bool_]] | None:
    """Seconds since the epoch (NaN when null) and not-a-time mask of a timestamp column; None
    for a column of any other type (text: the text path reads it).

    A timestamp holds its instant whatever its unit or zone (Arrow keeps UTC values and the
    zone only for display), so that instant is the time, fractions of a second included: a
    Parquet writer stores ``timestamp[s]`` as milliseconds, and a WMS exporting local times
    with their zone means those instants. A timestamp without a zone is read as UTC, as the
    manifest's times are. Years outside 1-9999 are not a time."""
    if not is_typed_time(col.type):
        return None
    arr = _one_array(col)
    v = np.asarray(pc_fill(arr.cast(pa.int64())).to_numpy(zero_copy_only=False), np.int64)
    null = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), bool)
    per_s = _PER_SECOND[col.type.unit]
    whole, frac = np.divmod(v, per_s)
    bad = ~null & ((whole < FIRST_SECOND) | (whole > LAST_SECOND))
    secs = whole.astype(np.float64) + frac.astype(np.float64) / per_s
    return np.where(null | bad, np.nan, secs), bad


def typed_numbers(col: pa.ChunkedArray | pa.Array) -> tuple[F64, npt.NDArray[np.bool_]] | None:
    """Values (NaN when null or bad) and the not-a-number->=0 mask of a float64 or integer column;
    None for other types. A float64 prints as its shortest round-trip text and an integer as its
    digits, which parse back to the same double; NaN and infinities print as words the number
    pattern refuses."""
    if not is_typed_number(col.type):
        return None
    arr = _one_array(col)
    vals = np.asarray(pc_fill(arr).to_numpy(zero_copy_only=False)).astype(np.float64)
    null = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), bool)
    with np.errstate(invalid="ignore"):
        bad = ~null & ~(np.isfinite(vals) & (vals >= 0))
    return np.where(null | bad, np.nan, vals), bad


def pc_fill(arr: pa.Array) -> pa.Array:
    """Nulls of a numeric array as 0 (masked by the caller), so it converts without a copy to object."""
    import pyarrow.compute as pc

    return pc.fill_null(arr, 0) if arr.null_count else arr
