"""The pre-advice manifest as columns of numpy arrays, loaded from CSV or Parquet with pyarrow.

Bad rows are reported with their line numbers and left out; the good rows still load. Strings
that routing needs are turned into integers once here (parcel id -> 64-bit key, country +
postal code -> postal key, destination and consolidation key -> dictionary codes), so routing
never touches a Python string on its batch path.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from control.routing.columns import (
    country_codes,
    epoch_seconds,
    id_keys,
    is_typed_number,
    is_typed_time,
    iso_times,
    postal_values,
    real_time,
    string_parts,
    typed_numbers,
    typed_times,
)
from control.routing.idindex import IdIndex
from control.routing.ids import key_to_id, parcel_key, parcel_keys
from control.routing.plan import MAX_DESTINATION
from control.routing.postal import MAX_POSTAL, NO_POSTAL, SPAN, postal_keys
from plant.errors import ConfigError

HEADER = (
    "parcel_id", "country", "postal_code", "destination_id", "consolidation_key", "deadline",
    "arrival", "length_mm", "width_mm", "height_mm", "weight_kg",
)
MAX_KEY = 64
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_NUMBER = r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$"
# Problems, by code, in the order they are checked (a row reports its first one).
PROBLEMS = (
    ("parcel_id", "not a valid S10 or SSCC id (check digit, format)"),
    ("parcel_id", "duplicate id"),
    ("country", "not an ISO alpha-2 country code"),
    ("postal_code", f"letters and digits only, at most {MAX_POSTAL}"),
    ("destination_id", f"longer than {MAX_DESTINATION} characters"),
    ("consolidation_key", f"longer than {MAX_KEY} characters"),
    ("deadline", "not an ISO 8601 UTC time like 2026-11-23T14:00:00Z"),
    ("arrival", "not an ISO 8601 UTC time like 2026-11-23T14:00:00Z"),
    ("length_mm", "not a number >= 0"),
    ("width_mm", "not a number >= 0"),
    ("height_mm", "not a number >= 0"),
    ("weight_kg", "not a number >= 0"),
)
F64 = npt.NDArray[np.float64]
_T = TypeVar("_T", bound=np.generic)
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class ManifestIssue:
    line: int
    field: str
    message: str

    def format(self, source: str) -> str:
        return f"{source}:{self.line}: {self.field}: {self.message}"


@dataclass(slots=True)
class Manifest:
    """Good manifest rows as columns; row i of every array is the same parcel."""

    keys: npt.NDArray[np.uint64]
    line: npt.NDArray[np.int64]  # line in the source file (header is line 1)
    postal_key: npt.NDArray[np.int64]  # -1 when country/postal unusable (destination rules only)
    dest_code: npt.NDArray[np.int32]  # index into dest_names, -1 when empty
    dest_names: list[str]
    group: npt.NDArray[np.int32]  # consolidation group, index into group_names, -1 when none
    group_names: list[str]
    deadline: F64  # seconds since the Unix epoch
    arrival: F64  # NaN when not given
    dims: npt.NDArray[np.float64]  # (n, 3) length, width, height in mm; NaN = unknown
    weight: F64  # kg, NaN = unknown
    source: str = "<manifest>"
    bad_line: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    bad_code: npt.NDArray[np.int8] = field(default_factory=lambda: np.zeros(0, np.int8))
    bad_ref: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    _index: IdIndex | None = None

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def expected(self) -> npt.NDArray[np.int64]:
        """Expected parcel count of each consolidation group (its number of manifest rows)."""
        g = self.group[self.group >= 0]
        return np.bincount(g, minlength=len(self.group_names)).astype(np.int64)

    @property
    def index(self) -> IdIndex:
        if self._index is None:
            self._index = IdIndex(self.keys)
        return self._index

    def rows_of(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """Manifest row of each parcel key; -1 when not in the manifest."""
        return self.index.lookup(keys)

    def row_of(self, parcel_id: str) -> int:
        """Manifest row of one parcel id (live path); -1 when unknown or not a valid id."""
        k = parcel_key(parcel_id)
        return self.index.lookup_one(k) if k else -1

    def parcel_id(self, row: int) -> str:
        return key_to_id(int(self.keys[row]))

    def destination(self, row: int) -> str:
        d = int(self.dest_code[row])
        return self.dest_names[d] if d >= 0 else ""

    def issues(self, limit: int | None = None) -> list[ManifestIssue]:
        """Bad rows, in file order (the first ``limit`` of them)."""
        out = []
        for ln, code, ref in zip(
            self.bad_line[:limit].tolist(), self.bad_code[:limit].tolist(), self.bad_ref[:limit].tolist(),
            strict=True,
        ):
            fld, msg = PROBLEMS[code]
            out.append(ManifestIssue(ln, fld, f"{msg} (first seen on line {ref})" if ref else msg))
        return out


def _strings(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_timestamp(arr.type):
        arr = pc.strftime(arr, format=TIME_FORMAT)
    elif not pa.types.is_string(arr.type):
        arr = arr.cast(pa.string())
    return pc.fill_null(arr, "")


def _byte_matrix(arr: pa.Array, width: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Fixed-width (n, width) bytes of a string array (zero padded) and each string's length."""
    n = len(arr)
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int32)[arr.offset : arr.offset + n + 1].astype(np.int64)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(1, np.uint8)
    if len(data) == 0:
        data = np.zeros(1, np.uint8)
    lengths = np.diff(offsets)
    out = np.zeros((n, width), np.uint8)
    if n == 0:
        return out, lengths
    counts = np.bincount(np.minimum(lengths, width + 1), minlength=width + 2)
    for k in (np.flatnonzero(counts[1 : width + 1]) + 1).tolist():
        if counts[k] + counts[0] == n and int(offsets[-1] - offsets[0]) == counts[k] * k:
            # Every non-empty string has length k (ids, timestamps): the data is the matrix.
            block = data[offsets[0] : offsets[0] + counts[k] * k].reshape(-1, k)
            if counts[k] == n:
                out[:, :k] = block
            else:
                out[lengths == k, :k] = block
            return out, lengths
        # Rows of one length at a time: a gather of exactly their bytes, no padding to mask,
        # as rows of a (strided, not copied) view of every k-byte window of the data.
        rows = np.flatnonzero(lengths == k)
        windows = np.lib.stride_tricks.sliding_window_view(data, k) if len(data) >= k else np.zeros((0, k), np.uint8)
        out[rows, :k] = windows[offsets[rows]]
    return out, lengths


def _number(arr: pa.Array) -> tuple[F64, npt.NDArray[np.bool_]]:
    """Parsed floats (NaN when empty) and a mask of values that are not numbers >= 0.

    Arrow's cast parses the column in one go; it accepts nothing the ``_NUMBER`` pattern
    rejects except NaN and infinity spellings, so only non-finite results are checked against
    the pattern. If the cast refuses the column (some value is not a number), every value is.
    """
    trimmed = pc.utf8_trim_whitespace(arr)
    empty_a = pc.equal(trimmed, "")
    empty = np.asarray(empty_a.to_numpy(zero_copy_only=False))
    try:
        vals = pc.cast(pc.if_else(empty_a, pa.scalar(None, pa.string()), trimmed), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _number_slow(arr, empty)
    out = np.asarray(vals.to_numpy(zero_copy_only=False), dtype=np.float64)
    valid = np.ones(len(out), bool)
    odd = np.flatnonzero(~empty & ~np.isfinite(out))
    if len(odd):
        valid[odd] = np.asarray(pc.match_substring_regex(arr.take(pa.array(odd)), _NUMBER).to_numpy(zero_copy_only=False))
    bad = ~empty & (~valid | ~(out >= 0))
    return np.where(empty | bad, np.nan, out), bad


def _number_slow(arr: pa.Array, empty: npt.NDArray[np.bool_]) -> tuple[F64, npt.NDArray[np.bool_]]:
    # Digits with at most one point (and a digit) match the pattern: only the others need the
    # regex, which costs ten times as much (a piece of 65,536 rows with a few bad values).
    valid = _plain_decimals(arr)
    odd = np.flatnonzero(~valid)
    if len(odd):
        valid[odd] = np.asarray(pc.match_substring_regex(arr.take(pa.array(odd)), _NUMBER).to_numpy(zero_copy_only=False))
    # Trimmed like the fast path: the pattern allows spaces around the number, the cast does not.
    vals = pc.if_else(pa.array(valid), pc.utf8_trim_whitespace(arr), pa.scalar(None, pa.string())).cast(pa.float64())
    out = np.asarray(vals.to_numpy(zero_copy_only=False), dtype=np.float64)
    bad = ~empty & (~valid | ~(out >= 0))
    return np.where(empty | bad, np.nan, out), bad


_TIME_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
_TIME_SEPS = np.array([4, 7, 10, 13, 16, 19])
_TIME_SEP_BYTES = np.frombuffer(b"--T::Z", np.uint8)


def _times(arr: pa.Array) -> tuple[F64, npt.NDArray[np.bool_]]:
    """Epoch seconds of a text time column (NaN when empty) and a mask of values that are not a
    time: exact 20-byte values from their bytes as words (:func:`iso_times`), the rest (which may
    be a time once trimmed) trimmed and parsed by :func:`_times_trimmed`."""
    secs, bad, rest = iso_times(arr)
    idx = np.flatnonzero(rest)
    if len(idx):
        secs[idx], bad[idx] = _times_trimmed(pc.utf8_trim_whitespace(arr.take(pa.array(idx))))
    return secs, bad


def _times_trimmed(arr: pa.Array) -> tuple[F64, npt.NDArray[np.bool_]]:
    """Epoch seconds of ``YYYY-MM-DDTHH:MM:SSZ`` values (NaN when empty) and a mask of values
    that are not such a time. Parsed as fixed-width bytes with numpy; strict like Python's
    ``datetime.strptime`` (no 30 February, no second 60, years from 1)."""
    mat, lens = _byte_matrix(arr, 20)
    empty = lens == 0
    d = [mat[:, j] - np.uint8(48) for j in _TIME_DIGITS]  # digits 0..9; anything else wraps to > 9
    ok = lens == 20
    for dj in d:
        ok &= dj <= 9
    for j, sep in zip(_TIME_SEPS.tolist(), _TIME_SEP_BYTES.tolist(), strict=True):
        ok &= mat[:, j] == sep

    def num(first: int, n_digits: int) -> I64:
        v = d[first].astype(np.int64)
        for j in range(first + 1, first + n_digits):
            v = v * 10 + d[j]
        return v

    y, mo, day, h, mi, s = num(0, 4), num(4, 2), num(6, 2), num(8, 2), num(10, 2), num(12, 2)
    ok &= real_time(y, mo, day, h, mi, s)
    return np.where(ok, epoch_seconds(y, mo, day, h, mi, s), np.nan), ~ok & ~empty


def _id_keys_text(arr: pa.Array) -> npt.NDArray[np.uint64]:
    """Parcel keys of ids in any spelling (spaces around, lower case); 0 when not valid."""
    ids = pc.utf8_upper(pc.utf8_trim_whitespace(arr))
    mat, lens = _byte_matrix(ids, 18)
    return parcel_keys(mat, np.where(lens > 18, 0, lens))


def _id_keys(arr: pa.Array) -> npt.NDArray[np.uint64]:
    """Parcel keys (0: not a valid id). Ids written exactly (upper case, no spaces) are read as
    words; the others go through :func:`_id_keys_text`."""
    keys, rest = id_keys(arr)
    idx = np.flatnonzero(rest)
    if len(idx):
        keys[idx] = _id_keys_text(arr.take(pa.array(idx)))
    return keys


def _duplicates(keys: npt.NDArray[np.uint64]) -> tuple[I64, I64]:
    """Rows whose (valid) key occurred on an earlier row, in row order, and the row of that
    key's first occurrence for each.

    Usually no key repeats, which one sort shows. Otherwise only the rows of the repeated keys
    (found by a binary search of each key among them) are sorted by key to find the first row
    of each: a hash encoding of every key took five times as long."""
    s = np.sort(keys)
    same = (s[1:] == s[:-1]) & (s[1:] != 0)
    if not same.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    repeated = np.unique(s[1:][same])
    del s, same
    at = np.minimum(np.searchsorted(repeated, keys), len(repeated) - 1)
    rows = np.flatnonzero(repeated[at] == keys)  # every row of a repeated key
    by_key = rows[np.argsort(keys[rows], kind="stable")]  # the rows of a key together, in row order
    k = keys[by_key]
    first = np.ones(len(k), bool)
    first[1:] = k[1:] != k[:-1]
    first_row = by_key[np.maximum.accumulate(np.where(first, np.arange(len(k)), 0))]
    order = np.argsort(by_key[~first])
    return by_key[~first][order], first_row[~first][order]


def _number_fast(arr: pa.Array) -> tuple[F64, npt.NDArray[np.bool_]]:
    """:func:`_number` of a text piece, without its trimming and null passes when every value is
    spelled as a number Arrow reads (no spaces, none empty: the usual case); otherwise that.
    (Arrow's cast parses about 10 ns a value here; reading digits from words is slower.)"""
    try:
        vals = pc.cast(arr, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _number_mixed(arr)
    out = np.asarray(vals.to_numpy(zero_copy_only=False), dtype=np.float64)
    bad = ~(out >= 0)
    odd = np.flatnonzero(~np.isfinite(out))
    if len(odd):  # NaN and infinity spellings: a number only if the pattern says so
        bad[odd] |= ~np.asarray(pc.match_substring_regex(arr.take(pa.array(odd)), _NUMBER).to_numpy(zero_copy_only=False))
    return np.where(bad, np.nan, out), bad


def _plain_decimals(arr: pa.Array) -> npt.NDArray[np.bool_]:
    """Values of digits with at most one point and at least one digit: the number pattern
    matches them and Arrow's cast reads them (the point may come first or last)."""
    return np.asarray(pc.ascii_is_decimal(pc.replace_substring(arr, ".", "", max_replacements=1))
                      .to_numpy(zero_copy_only=False), bool)


def _number_mixed(arr: pa.Array) -> tuple[F64, npt.NDArray[np.bool_]]:
    """:func:`_number` of a piece the cast refused: its plain decimals cast as they are (a value
    of digits is never bad), only the other values through :func:`_number`."""
    plain = _plain_decimals(arr)
    out = np.full(len(arr), np.nan)
    bad = np.zeros(len(arr), bool)
    at = np.flatnonzero(plain)
    out[at] = np.asarray(pc.cast(arr.filter(pa.array(plain)), pa.float64()).to_numpy(zero_copy_only=False), np.float64)
    other = np.flatnonzero(~plain)
    out[other], bad[other] = _number(arr.take(pa.array(other)))
    return out, bad


_Read = Callable[[pa.Array], I64]


def _with_fallback(fast: Callable[[pa.Array], tuple[I64, npt.NDArray[np.bool_]]], slow: _Read, arr: pa.Array) -> I64:
    """``fast`` on every value, ``slow`` (the general text path) on those ``fast`` leaves, once per
    distinct value when they are many."""
    out, rest = fast(arr)
    idx = np.flatnonzero(rest)
    if len(idx) > 64:
        enc = pc.dictionary_encode(arr.take(pa.array(idx)))
        out[idx] = np.take(slow(enc.dictionary), np.asarray(enc.indices.to_numpy(zero_copy_only=False), np.int64))
    elif len(idx):
        out[idx] = slow(arr.take(pa.array(idx)))
    return out


def _country_codes_text(values: pa.Array) -> I64:
    """Country index 0..675 of values that are two letters once trimmed and upper-cased; -1 otherwise."""
    cmat, clen = _byte_matrix(pc.utf8_upper(pc.utf8_trim_whitespace(values)), 2)
    letters = ~((cmat < 65) | (cmat > 90)).any(axis=1)
    ci = (cmat[:, 0].astype(np.int64) - 65) * 26 + (cmat[:, 1].astype(np.int64) - 65)
    return np.where(letters & (clen == 2), ci, -1)


def _postal_values_text(words: pa.Array) -> I64:
    """The postal part of the key (country 0) of codes in any spelling (lower case, spaces and
    dashes); -1 when not letters and digits or too long."""
    pmat, plen = _byte_matrix(pc.utf8_upper(words), MAX_POSTAL)
    # Only codes with something other than letters and digits need the (slow) regex.
    odd = np.flatnonzero(~np.asarray(pc.utf8_is_alnum(words).to_numpy(zero_copy_only=False)) & (plen > 0))
    if len(odd):
        fixed = pc.utf8_upper(pc.replace_substring_regex(words.take(pa.array(odd)), r"[\s\-]", ""))
        pmat[odd], plen[odd] = _byte_matrix(fixed, MAX_POSTAL)
    return postal_keys(np.full((len(words), 2), 65, np.uint8), pmat, plen)


def _country_codes(arr: pa.Array) -> I64:
    return _with_fallback(country_codes, _country_codes_text, arr)


def _postal_values(arr: pa.Array) -> I64:
    return _with_fallback(postal_values, _postal_values_text, arr)


@dataclass(frozen=True, slots=True)
class _Categories:
    """A text column as its distinct values and each row's index into them (nulls read as "")."""

    values: pa.Array  # string, no nulls; may hold a value twice or unused values
    index: npt.NDArray[np.int32] | None  # per row; None for a dictionary column, whose rows read ``tables``
    ordered: bool = False  # values numbered in order of first appearance among the rows
    column: pa.ChunkedArray | None = None  # the dictionary column
    tables: dict[tuple[int, int, int, int], I64] = field(default_factory=dict)  # its dictionaries -> values

    def rows(self, lo: int, hi: int) -> npt.NDArray[np.int32] | I64:
        """Each row's index into ``values`` (rows ``lo:hi``, a piece of one chunk)."""
        if self.index is not None:
            return self.index[lo:hi]
        assert self.column is not None
        piece = _piece(self.column, lo, hi)
        table = self.tables[_dictionary_key(piece.dictionary)]
        return np.take(table, np.asarray(pc.fill_null(piece.indices, len(table) - 1).to_numpy(zero_copy_only=False)))


def _categories(col: pa.ChunkedArray, name: str, source: str) -> _Categories:
    """Distinct values of a text column: a dictionary column (Parquet read with ``read_dictionary``)
    as it is, any other one hash-encoded. Only non-empty values are hashed: most rows of an
    optional column (destination, consolidation key) are empty, and they all read the last value, ""."""
    if pa.types.is_dictionary(col.type) and pa.types.is_string(col.type.value_type) and col.num_chunks:
        return _dictionary_categories(col)
    text = _text_column(col, name, source)
    filled = np.concatenate([np.diff(string_parts(c)[0]) > 0 for c in text.chunks]) if text.num_chunks else np.zeros(0, bool)
    rows = np.flatnonzero(filled)
    enc = pc.dictionary_encode(pc.filter(text, pa.array(filled)))
    chunks = [c for c in enc.chunks if len(c)]
    values = chunks[0].dictionary if chunks else pa.array([], pa.string())
    index = np.full(len(text), len(values), np.int32)
    if chunks:
        index[rows] = np.concatenate([np.asarray(c.indices.to_numpy(zero_copy_only=False)) for c in chunks])
    # Arrow numbers distinct values in order of first appearance; "" (appended) only matters as
    # no name, so the order of the names among the rows is that of the values.
    return _Categories(pa.concat_arrays([values, pa.array([""])]), index, ordered=True)


def _dictionary_key(d: pa.Array) -> tuple[int, int, int, int]:
    """Identity of a dictionary's values (its buffers and slice): chunks that share it share the key."""
    bufs = d.buffers()
    return (bufs[1].address if bufs[1] is not None else 0, bufs[2].address if bufs[2] is not None else 0,
            d.offset, len(d))


def _dictionary_categories(col: pa.ChunkedArray) -> _Categories:
    """One set of values for a dictionary column's chunks, nulls read as "".

    The chunks read from one Parquet row group share one dictionary: each distinct dictionary
    is hash-encoded once into the common values, and a piece of rows reads its indices through
    that dictionary's table. (Arrow's ``unify_dictionaries`` goes through every chunk's
    dictionary and makes new indices for every row: 0.6 s for the postal codes of 10 M rows
    against 0.1 s.)"""
    keys: dict[tuple[int, int, int, int], None] = {}
    dicts: list[pa.Array] = []
    for chunk in col.chunks:
        key = _dictionary_key(chunk.dictionary)
        if key not in keys:
            keys[key] = None
            dicts.append(pc.fill_null(chunk.dictionary, ""))
    enc = pc.dictionary_encode(pa.concat_arrays(dicts))
    values = pa.concat_arrays([enc.dictionary, pa.array([""], pa.string())])
    code = np.asarray(enc.indices.to_numpy(zero_copy_only=False), np.int64)
    starts = np.concatenate([[0], np.cumsum([len(d) for d in dicts])]).tolist()
    # Per dictionary: its entries' values, then the null rows' value ("", appended last).
    tables = {key: np.append(code[starts[i] : starts[i + 1]], len(values) - 1) for i, key in enumerate(keys)}
    return _Categories(values, None, column=col, tables=tables)


@dataclass(frozen=True, slots=True)
class _Names:
    """Destination or consolidation key: the distinct trimmed names, each value's code into
    them (-1 when empty once trimmed) and whether it is too long, and each row's value."""

    names: pa.Array  # distinct trimmed values, "" left out
    code: npt.NDArray[np.int32]  # per value of the categories
    too_long: npt.NDArray[np.bool_]  # per value of the categories
    cat: _Categories  # the rows' values
    ordered: bool  # names numbered in order of first appearance among all rows


def _names(cat: _Categories, limit: int) -> _Names:
    """Trimmed text as distinct names, each value's code into them and its length check, all
    per distinct value (the rows read them through ``cat.rows``)."""
    enc = pc.dictionary_encode(pc.utf8_trim_whitespace(cat.values))
    names = enc.dictionary
    code = np.asarray(enc.indices.to_numpy(zero_copy_only=False), np.int64)
    long_name = np.asarray(pc.greater(pc.utf8_length(names), limit).to_numpy(zero_copy_only=False), bool)
    # Trimming keeps the order of first appearance (a name first appears with its first value).
    empty = np.flatnonzero(np.asarray(pc.equal(names, "").to_numpy(zero_copy_only=False), bool))
    rank = np.arange(len(names), dtype=np.int32)
    if len(empty):
        rank[empty[0]] = -1
        rank[empty[0] + 1 :] -= 1
        names = pc.filter(names, pc.not_equal(names, ""))
    return _Names(names, rank[code], long_name[code], cat, cat.ordered)


def _first_codes(names: _Names, row_code: npt.NDArray[np.int32],
                 keep: npt.NDArray[np.bool_] | None) -> tuple[npt.NDArray[np.int32], list[str]]:
    """Codes of the kept rows (-1 for empty), the names numbered in order of first appearance
    among them (as they are when every row is kept and they were numbered so)."""
    if keep is None and names.ordered:
        return row_code, [str(x) for x in names.names.to_pylist()]
    kept = row_code if keep is None else row_code[keep]
    m = len(names.names)
    first = np.full(m + 1, len(kept), np.int64)  # slot m (index -1) collects the empty rows
    np.minimum.at(first, kept, np.arange(len(kept)))
    present = np.flatnonzero(first[:m] < len(kept))
    order = present[np.argsort(first[present], kind="stable")]
    rank = np.full(m + 1, -1, np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    return rank[kept], [str(x) for x in names.names.take(pa.array(order, pa.int64())).to_pylist()]


def _text(col: pa.ChunkedArray, name: str, source: str) -> pa.Array:
    """A column as one string array (nulls as ""); ConfigError when it has no text form."""
    try:
        return _strings(col)
    except pa.ArrowException as exc:  # a Parquet column of lists, structs, non-UTF-8 bytes...
        raise ConfigError(source, None, name, f"a {col.type} column cannot be read as text: {exc}") from None


def _text_column(col: pa.ChunkedArray, name: str, source: str) -> pa.ChunkedArray:
    """A column as string chunks, nulls as "": a string column keeps its chunks (no copy into
    one), any other type is turned into text as a whole by :func:`_text`."""
    if col.type == pa.string():
        if col.null_count == 0:
            return col
        return pa.chunked_array([pc.fill_null(c, "") for c in col.chunks], pa.string())
    return pa.chunked_array([_text(col, name, source)])


def _check_columns(table: pa.Table, source: str) -> None:
    try:
        names = table.column_names
    except UnicodeDecodeError:
        raise ConfigError(source, None, "", "column names are not UTF-8 text") from None
    missing = [c for c in HEADER if c not in names]
    if missing:
        raise ConfigError(source, 1, missing[0], "missing column in manifest header")
    twice = sorted({c for c in table.column_names if table.column_names.count(c) > 1} & set(HEADER))
    if twice:
        raise ConfigError(source, 1, twice[0], "column given twice")


_TIMES = ("deadline", "arrival")
_NUMBERS = ("length_mm", "width_mm", "height_mm", "weight_kg")
_CATEGORICAL = ("country", "postal_code", "destination_id", "consolidation_key")  # few distinct values
PIECE = 1 << 16  # rows checked together: a piece's temporaries stay in the CPU cache


def _piece_bounds(cols: list[pa.ChunkedArray], n: int) -> list[int]:
    """Row boundaries, at most ``PIECE`` rows apart, at which no column changes chunk (so a piece
    of a column is a slice of one chunk, not a copy)."""
    cuts = {0, n}
    for c in cols:
        at = 0
        for chunk in c.chunks:
            at += len(chunk)
            cuts.add(at)
    out = [0]
    for hi in sorted(cuts)[1:]:
        lo = out[-1]
        k = -(-(hi - lo) // PIECE)
        out.extend(lo + (hi - lo) * j // k for j in range(1, k + 1))
    return out


def _piece(col: pa.ChunkedArray, lo: int, hi: int) -> pa.Array:
    chunks = [c for c in col.slice(lo, hi - lo).chunks if len(c)]
    if len(chunks) == 1:
        return chunks[0]
    return pa.concat_arrays(chunks) if chunks else pa.array([], col.type)


@dataclass(frozen=True, slots=True)
class _CountryOrPostal:
    """Country or postal code: a text column read piece by piece (words, the odd values through
    the text path), a dictionary column once per value, its rows gathering the results."""

    text: pa.ChunkedArray | None
    per_value: I64 | None = None
    cat: _Categories | None = None

    @classmethod
    def of(cls, col: pa.ChunkedArray, name: str, source: str, read: _Read) -> _CountryOrPostal:
        if pa.types.is_dictionary(col.type):
            cat = _categories(col, name, source)
            return cls(None, read(cat.values), cat)
        return cls(_text_column(col, name, source))

    def rows(self, lo: int, hi: int, read: _Read) -> I64:
        if self.per_value is not None and self.cat is not None:
            return np.take(self.per_value, self.cat.rows(lo, hi))
        assert self.text is not None
        return read(_piece(self.text, lo, hi))


@dataclass(slots=True)
class _Rows:
    """The per-row results, filled piece by piece."""

    keys: npt.NDArray[np.uint64]
    problem: npt.NDArray[np.int8]  # first problem of the row's own values (127: none), ids aside
    postal_key: I64
    deadline: F64
    arrival: F64
    dims: F64
    weight: F64


_CODE = {name: i for i, (name, _) in reversed(list(enumerate(PROBLEMS)))}  # column -> its first code


def manifest_from_table(table: pa.Table, source: str = "<manifest>", first_line: int = 2) -> Manifest:
    """Validate a table with the manifest columns (any types) into a :class:`Manifest`.

    Every column is checked as the text it holds or reads as, so a Parquet manifest of text
    says what the same CSV would; typed number columns give what their text would without
    making it, timestamp columns the instant they hold, and dictionary text columns are read
    once per distinct value. Rows are checked in pieces of ``PIECE`` rows (slices of the
    columns' chunks, so nothing is copied into one array and a piece's temporaries stay in
    the cache) on two threads (Arrow and numpy release the GIL), next to the hash encoding of
    destinations and consolidation keys; the problems are applied in the order of
    ``PROBLEMS``: a row reports its first one."""
    _check_columns(table, source)
    n = table.num_rows
    col = {name: table.column(name) for name in HEADER}
    # The columns typed_times and typed_numbers read (other types are read as text).
    typed = {name: is_typed_time(col[name].type) for name in _TIMES}
    typed |= {name: is_typed_number(col[name].type) for name in _NUMBERS}
    # Text forms in column order, so that the first unreadable column is the one named.
    text: dict[str, pa.ChunkedArray] = {}
    country = postal = None
    cats: dict[str, _Categories] = {}
    for name in HEADER:
        if name == "country":
            country = _CountryOrPostal.of(col[name], name, source, _country_codes)
        elif name == "postal_code":
            postal = _CountryOrPostal.of(col[name], name, source, _postal_values)
        elif name in _CATEGORICAL:
            if not pa.types.is_dictionary(col[name].type):
                text[name] = _text_column(col[name], name, source)  # hashed below, on a thread
            else:
                cats[name] = _categories(col[name], name, source)
        elif not typed.get(name):
            text[name] = _text_column(col[name], name, source)
    assert country is not None and postal is not None
    rows = _Rows(np.zeros(n, np.uint64), np.full(n, 127, np.int8), np.full(n, NO_POSTAL, np.int64),
                 np.full(n, np.nan), np.full(n, np.nan), np.full((n, 3), np.nan), np.full(n, np.nan))
    bounds = _piece_bounds([col[name] for name in HEADER], n)
    pieces = list(zip(bounds[:-1], bounds[1:], strict=True))

    def id_piece(lo: int, hi: int) -> None:
        rows.keys[lo:hi] = _id_keys(_piece(text["parcel_id"], lo, hi))

    def value_piece(lo: int, hi: int) -> None:
        checks: list[tuple[int, npt.NDArray[np.bool_]]] = []
        ci = country.rows(lo, hi, _country_codes)
        pv = postal.rows(lo, hi, _postal_values)
        good = (ci >= 0) & (pv >= 0)
        rows.postal_key[lo:hi] = np.where(good, ci * SPAN + pv, NO_POSTAL)
        checks += [(_CODE["country"], ci < 0), (_CODE["postal_code"], ~good)]
        outs = {"deadline": rows.deadline[lo:hi], "arrival": rows.arrival[lo:hi], "length_mm": rows.dims[lo:hi, 0],
                "width_mm": rows.dims[lo:hi, 1], "height_mm": rows.dims[lo:hi, 2], "weight_kg": rows.weight[lo:hi]}
        for name in (*_TIMES, *_NUMBERS):
            if typed[name]:
                got = (typed_times if name in _TIMES else typed_numbers)(_piece(col[name], lo, hi))
                assert got is not None
                vals, bad = got
            else:
                vals, bad = (_times if name in _TIMES else _number_fast)(_piece(text[name], lo, hi))
            outs[name][:] = vals
            checks.append((_CODE[name], bad | np.isnan(vals) if name == "deadline" else bad))
        problem = rows.problem[lo:hi]
        for code, mask in reversed(checks):  # the first problem of a row is written last
            problem[mask] = code

    with ThreadPoolExecutor(2) as pool:
        def names_of(name: str) -> _Names:
            cat = cats[name] if name in cats else _categories(text[name], name, source)
            return _names(cat, MAX_DESTINATION if name == "destination_id" else MAX_KEY)

        # The long hash encodings first, so the pieces fill the other thread meanwhile.
        j_names = {name: pool.submit(names_of, name) for name in ("consolidation_key", "destination_id")}
        j_ids = [pool.submit(id_piece, lo, hi) for lo, hi in pieces]
        j_dup = pool.submit(lambda: (wait(j_ids), _duplicates(rows.keys))[1])
        j_vals = [pool.submit(value_piece, lo, hi) for lo, hi in pieces]
        names = {name: j.result() for name, j in j_names.items()}
        row_code = {name: np.empty(n, np.int32) for name in names}
        too_long = {name: bool(nm.too_long.any()) for name, nm in names.items()}
        long_rows = {name: np.zeros(n, bool) for name, long_any in too_long.items() if long_any}

        def name_piece(lo: int, hi: int) -> None:
            for name, nm in names.items():
                idx = nm.cat.rows(lo, hi)
                row_code[name][lo:hi] = np.take(nm.code, idx)
                if name in long_rows:
                    long_rows[name][lo:hi] = np.take(nm.too_long, idx)

        for j in [pool.submit(name_piece, lo, hi) for lo, hi in pieces] + j_ids + j_vals:
            j.result()
        dup_rows, dup_first = j_dup.result()
    problem = rows.problem
    problem[rows.keys == 0] = _CODE["parcel_id"]
    for code, at in ((1, dup_rows), *((_CODE[name], np.flatnonzero(m)) for name, m in long_rows.items())):
        problem[at] = np.minimum(problem[at], code)
    bad_idx = np.flatnonzero(problem != 127)
    keep = None
    if len(bad_idx):
        keep = np.ones(n, bool)
        keep[bad_idx] = False
    dest_code, dest_names = _first_codes(names["destination_id"], row_code["destination_id"], keep)
    group, group_names = _first_codes(names["consolidation_key"], row_code["consolidation_key"], keep)
    lines = np.arange(first_line, first_line + n, dtype=np.int64)
    bad_code = problem[bad_idx]
    bad_ref = np.zeros(len(bad_idx), np.int64)
    is_dup = np.flatnonzero(bad_code == 1)  # rows whose first problem is a repeated id
    bad_ref[is_dup] = lines[dup_first[np.searchsorted(dup_rows, bad_idx[is_dup])]]

    def kept(a: npt.NDArray[_T]) -> npt.NDArray[_T]:
        return a if keep is None else a[keep]

    return Manifest(
        keys=kept(rows.keys), line=kept(lines), postal_key=kept(rows.postal_key), dest_code=dest_code,
        dest_names=dest_names, group=group, group_names=group_names, deadline=kept(rows.deadline),
        arrival=kept(rows.arrival), dims=kept(rows.dims), weight=kept(rows.weight),
        source=source, bad_line=lines[bad_idx], bad_code=bad_code, bad_ref=bad_ref,
    )


def load_manifest(path: str | Path) -> Manifest:
    """Load a manifest CSV (exact header) or Parquet file; raises ConfigError if unreadable."""
    p = Path(path)
    parquet = p.suffix.lower() in (".parquet", ".pq")
    try:
        if parquet:
            table = _read_parquet(p)
        else:
            table = _as_text(pacsv.read_csv(
                p,
                read_options=pacsv.ReadOptions(block_size=1 << 24),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(HEADER, pa.binary()), strings_can_be_null=False
                ),
            ))
    except FileNotFoundError as exc:
        raise ConfigError(p, None, "", "no such file") from exc
    except (pa.ArrowException, OSError) as exc:
        if parquet:
            raise ConfigError(p, None, "", f"not a readable Parquet file: {exc}") from None
        try:
            with p.open("rb") as f:
                found = csv_problem(iter(lambda: f.readline(MAX_LINE), b""), str(p))
        except OSError:
            found = None
        raise found or ConfigError(p, _arrow_line(str(exc)), "", f"cannot read: {exc}") from None
    if not parquet:
        _check_csv_table(table, str(p))
    return manifest_from_table(table, str(p))


def _as_text(table: pa.Table) -> pa.Table:
    """The manifest columns of a CSV read as bytes, as text; ArrowInvalid when one is not UTF-8.

    Arrow's UTF-8 check of every value as it reads costs about a fifth of the read, while a
    manifest is almost always plain ASCII, which one scan of a chunk's bytes shows: then its
    bytes are its text as they are (a view, no copy). A chunk with other bytes is checked and
    converted by Arrow's cast, so a file that is not UTF-8 fails as it did when read as text.
    Columns with other names (inferred by Arrow, never checked as text) stay as they are."""
    for i in range(table.num_columns):
        try:
            name = table.schema.field(i).name
        except UnicodeDecodeError:  # not a manifest column; the header check names the problem
            continue
        col = table.column(i)
        if name in HEADER and col.type == pa.binary():
            text = [c.view(pa.string()) if _ascii(c) else c.cast(pa.string()) for c in col.chunks]
            table = table.set_column(i, pa.field(name, pa.string()), pa.chunked_array(text, pa.string()))
    return table


def _ascii(chunk: pa.Array) -> bool:
    """Whether every byte of a binary array's values is below 0x80."""
    bufs = chunk.buffers()
    if len(chunk) == 0 or bufs[2] is None:
        return True
    offsets = np.frombuffer(bufs[1], np.int32)[chunk.offset : chunk.offset + len(chunk) + 1]
    data = np.frombuffer(bufs[2], np.uint8)[offsets[0] : offsets[-1]]
    return len(data) == 0 or int(data.max()) < 0x80


def _read_parquet(path: Path) -> pa.Table:
    """A Parquet manifest, its text columns of few distinct values read as dictionaries: Parquet
    stores them dictionary-encoded, so the reader hands over each distinct value once instead of
    writing out (and the checks hashing back) every row's copy."""
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    names = schema.names
    # Not the consolidation key: about one value per four rows, so the row groups' dictionaries
    # are large and unifying them costs more than hashing the text (3.8 s against 0.7 s, 10 M rows).
    as_dict = [c for c in ("country", "postal_code", "destination_id")
               if names.count(c) == 1 and pa.types.is_string(schema.field(c).type)]
    return pq.read_table(path, read_dictionary=as_dict)


def _has_line_end(col: pa.ChunkedArray) -> bool:
    """Whether any byte of a string column's data is CR or LF (may say True for bytes outside
    the column's slice: only a pre-filter for the exact, slower check)."""
    for chunk in col.chunks:
        bufs = chunk.buffers()
        if len(bufs) > 2 and bufs[2] is not None and bufs[2].size:
            data = np.frombuffer(bufs[2], np.uint8)
            if bool((data == 10).any()) or bool((data == 13).any()):
                return True
    return False


def _check_csv_table(table: pa.Table, source: str) -> None:
    """What Arrow lets through a CSV that is still wrong: a header that is not UTF-8 or not the
    manifest's, and a value that runs over line ends (a stray quote: Arrow then swallows the
    following rows into one value, ``newlines_in_values`` notwithstanding, and every later
    line number would be off). The first row with a line end in a value is where it began."""
    try:
        header = table.column_names
    except UnicodeDecodeError as exc:
        raise ConfigError(source, 1, "", f"the header is not UTF-8 text (byte {exc.start + 1})") from None
    if tuple(header) != HEADER:
        extra = [c for c in header if c not in HEADER]
        raise ConfigError(source, 1, (extra or [c for c in HEADER if c not in header] or [""])[0],
                          f"manifest header must be exactly {','.join(HEADER)}")
    first: tuple[int, str] | None = None
    for name in HEADER:
        if not _has_line_end(table.column(name)):  # a scan of the bytes: 10 M rows in well under a second
            continue
        hits = pc.match_substring_regex(table.column(name), r"[\r\n]")
        if pc.any(hits).as_py():
            row = int(pc.index(hits, True).as_py())
            if first is None or row < first[0]:
                first = (row, name)
    if first is not None:
        raise ConfigError(source, first[0] + 2, first[1], "unterminated quote: the value runs on over the next lines")


def _arrow_line(msg: str) -> int | None:
    # pyarrow says "CSV parse error: Row #12: Expected 11 columns, got 3"; Row counts from 1
    # including the header, which matches file lines when values hold no newlines.
    import re

    m = re.search(r"Row #(\d+)", msg)
    return int(m.group(1)) if m else None


MAX_LINE = 1 << 20  # a manifest line is ~120 bytes; a megabyte without a line end is not CSV


def csv_problem(lines: Iterator[bytes], source: str) -> ConfigError | None:
    """The first line Arrow could not read and why, found again line by line.

    Arrow's CSV reader says "Expected 11 columns, got 12" or "invalid UTF8 data" without a
    line number (and quotes the raw bytes); this pass, run only after Arrow failed, finds the
    line and the column and says what to do. None when it finds nothing (Arrow's own message
    is used then). Values may not span lines (Arrow's ``newlines_in_values`` is off), so a
    line with an odd number of quotes has an unterminated one.
    """
    header: list[str] = []
    for n, raw in enumerate(lines, start=1):
        if n == 1 and raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            return ConfigError(source, 1, "", "UTF-16 text: save the manifest as UTF-8 (\"CSV UTF-8\")")
        if len(raw) >= MAX_LINE and not raw.endswith(b"\n"):
            return ConfigError(source, n, "", f"a line longer than {MAX_LINE >> 20} MB: not a manifest CSV")
        if b"\x00" in raw:
            at = raw.index(b"\x00")
            return ConfigError(source, n, _column(header, raw[:at].count(b",")), f"binary data (NUL byte at byte {at + 1} of the line)")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return ConfigError(source, n, _column(header, raw[: exc.start].count(b",")),
                               f"not UTF-8 text (byte {exc.start + 1} of the line): save the manifest as UTF-8")
        body = text.removeprefix("\ufeff") if n == 1 else text
        body = body.rstrip("\r\n")
        if not body:
            continue
        if body.count('"') % 2:
            return ConfigError(source, n, _column(header, body[: body.index('"')].count(",")),
                               "unterminated quote (a value cannot span lines)")
        if "\r" in body:  # Arrow ends lines there too; our line count would be off from here
            return ConfigError(source, n, "", "a carriage return inside the line: save the file with LF or CRLF line ends")
        try:
            fields = next(csv.reader([body]))
        except csv.Error as exc:
            return ConfigError(source, n, "", f"not CSV: {exc}")
        if not header:
            header = [c.strip() for c in fields]
            continue
        if len(fields) != len(header):
            more = len(fields) > len(header)
            return ConfigError(source, n, _column(header, len(header) if more else len(fields)),
                               f"{len(fields)} values where the header has {len(header)} columns")
    if tuple(header) != HEADER:  # nothing else wrong: Arrow could not even take the header
        extra = [c for c in header if c not in HEADER]
        return ConfigError(source, 1, (extra or [c for c in HEADER if c not in header] or [""])[0],
                           f"manifest header must be exactly {','.join(HEADER)}")
    return None


def _column(header: list[str], index: int) -> str:
    """The name of column ``index`` (0-based) for messages; past the header, its number."""
    return header[index] if index < len(header) else f"column {index + 1}"


def manifest_from_csv_text(text: str, source: str) -> Manifest:
    """Pre-advice rows that came as text (a host message, an upload): the same header and the
    same row checks as a manifest file."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate, e.g. from a JSON "\ud800" escape
        line = text[: exc.start].count("\n") + 1
        raise ConfigError(source, line, "", f"not text: lone surrogate U+{ord(text[exc.start]):04X}") from None
    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(HEADER, pa.string()),
                                                 strings_can_be_null=False),
        )
    except pa.ArrowException as exc:
        found = csv_problem(iter(data.splitlines(keepends=True)), source)
        raise found or ConfigError(source, _arrow_line(str(exc)), "", f"cannot read: {exc}") from None
    _check_csv_table(table, source)
    return manifest_from_table(table, source)


def _remap(names: list[str], known: dict[str, int], codes: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    """Codes into ``names`` as codes into ``known`` (names it lacks are appended to it)."""
    table = np.array([known.setdefault(n, len(known)) for n in names] + [-1], dtype=np.int32)
    return table[codes]  # code -1 reads the trailing -1


def merge_manifests(base: Manifest, more: Manifest) -> tuple[Manifest, npt.NDArray[np.int64]]:
    """``base`` with the rows of ``more`` whose parcel ids it does not have yet, appended: row
    numbers, destination and group codes of ``base`` are unchanged, so state kept per row or
    per group stays valid. Returns the merged manifest and the lines of ``more`` refused
    because their parcel is already pre-advised."""
    known = base.rows_of(more.keys) >= 0
    add = ~known
    dests = {n: i for i, n in enumerate(base.dest_names)}
    groups = {n: i for i, n in enumerate(base.group_names)}
    dest_code = _remap(more.dest_names, dests, more.dest_code[add])
    group = _remap(more.group_names, groups, more.group[add])
    merged = Manifest(
        keys=np.concatenate([base.keys, more.keys[add]]), line=np.concatenate([base.line, more.line[add]]),
        postal_key=np.concatenate([base.postal_key, more.postal_key[add]]),
        dest_code=np.concatenate([base.dest_code, dest_code]).astype(np.int32), dest_names=list(dests),
        group=np.concatenate([base.group, group]).astype(np.int32), group_names=list(groups),
        deadline=np.concatenate([base.deadline, more.deadline[add]]),
        arrival=np.concatenate([base.arrival, more.arrival[add]]),
        dims=np.concatenate([base.dims, more.dims[add]]), weight=np.concatenate([base.weight, more.weight[add]]),
        source=base.source, bad_line=base.bad_line, bad_code=base.bad_code, bad_ref=base.bad_ref,
    )
    return merged, more.line[known]
