"""The pre-advice manifest as columns of numpy arrays, loaded from CSV or Parquet with pyarrow.

Bad rows are reported with their line numbers and left out; the good rows still load. Strings
that routing needs are turned into integers once here (parcel id -> 64-bit key, country +
postal code -> postal key, destination and consolidation key -> dictionary codes), so routing
never touches a Python string on its batch path.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from control.routing.columns import (
    epoch_seconds,
    id_keys,
    iso_times,
    real_time,
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
    valid = np.asarray(pc.match_substring_regex(arr, _NUMBER).to_numpy(zero_copy_only=False))
    # Trimmed like the fast path: the pattern allows spaces around the number, the cast does not.
    vals = pc.if_else(pa.array(valid), pc.utf8_trim_whitespace(arr), pa.scalar(None, pa.string())).cast(pa.float64())
    out = np.asarray(vals.to_numpy(zero_copy_only=False), dtype=np.float64)
    bad = ~empty & (~valid | ~(out >= 0))
    return np.where(empty | bad, np.nan, out), bad


_TIME_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
_TIME_SEPS = np.array([4, 7, 10, 13, 16, 19])
_TIME_SEP_BYTES = np.frombuffer(b"--T::Z", np.uint8)


def _unique_first(parse: Callable[[pa.Array], tuple[F64, npt.NDArray[np.bool_]]], arr: pa.Array) -> tuple[F64, npt.NDArray[np.bool_]]:
    """Parse each distinct value once: a day's deadlines, arrivals and sizes repeat a lot."""
    enc = pc.dictionary_encode(arr)
    if len(enc.dictionary) * 2 > len(arr):
        return parse(arr)
    vals, bad = parse(enc.dictionary)
    idx = np.asarray(enc.indices.to_numpy(zero_copy_only=False))
    return np.take(vals, idx), np.take(bad, idx)


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


def _ids(arr: pa.Array) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.bool_], I64 | None]:
    """Parcel keys (0: not a valid id), duplicates (every occurrence of a key after its first)
    and, when there are any, the row of each row's key's first occurrence. Ids written exactly
    (upper case, no spaces) are read as words; the others go through :func:`_id_keys_text`."""
    keys, rest = id_keys(arr)
    idx = np.flatnonzero(rest)
    if len(idx):
        keys[idx] = _id_keys_text(arr.take(pa.array(idx)))
    n = len(keys)
    # Usually no key repeats, which one sort shows; only then are first occurrences wanted.
    s = np.sort(keys)
    if not np.any((s[1:] == s[:-1]) & (s[1:] != 0)):
        return keys, np.zeros(n, bool), None
    del s
    # Arrow's hash encoding numbers the distinct keys in order of first appearance (linear
    # time). A row is a key's first occurrence when its code exceeds every code before it;
    # those rows, in order, are the first rows of codes 0, 1, 2, ...
    key_code = np.asarray(pc.dictionary_encode(pa.array(keys)).indices.to_numpy(zero_copy_only=False), np.int64)
    seen_max = np.maximum.accumulate(key_code)
    is_first = np.ones(n, bool)
    is_first[1:] = key_code[1:] > seen_max[:-1]
    first_of = np.take(np.flatnonzero(is_first), key_code)
    return keys, (first_of != np.arange(n)) & (keys != 0), first_of


@dataclass(frozen=True, slots=True)
class _Categories:
    """A text column as its distinct values and each row's index into them (nulls read as "")."""

    values: pa.Array  # string, no nulls; may hold a value twice or unused values
    index: npt.NDArray[np.int64]

    def per_row(self, per_value: npt.NDArray[_T]) -> npt.NDArray[_T]:
        return np.take(per_value, self.index)


def _categories(col: pa.ChunkedArray, name: str, source: str) -> _Categories:
    """Distinct values of a text column: a dictionary column (Parquet read with ``read_dictionary``)
    as it is, any other one hash-encoded."""
    if pa.types.is_dictionary(col.type) and pa.types.is_string(col.type.value_type) and col.num_chunks:
        unified = col.unify_dictionaries()
        values = pc.fill_null(unified.chunk(0).dictionary, "")
        index = np.concatenate([np.asarray(pc.fill_null(c.indices, len(values)).to_numpy(zero_copy_only=False), np.int64)
                                for c in unified.chunks])
        return _Categories(pa.concat_arrays([values, pa.array([""])]), index)
    enc = pc.dictionary_encode(_text(col, name, source))
    return _Categories(enc.dictionary, np.asarray(enc.indices.to_numpy(zero_copy_only=False), np.int64))


def _postal(country: _Categories, postal: _Categories) -> tuple[I64, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Postal keys (-1: unusable), bad countries, bad postal codes (of a good country). Both
    columns repeat a lot: each distinct value is normalised and read once."""
    cmat, clen = _byte_matrix(pc.utf8_upper(pc.utf8_trim_whitespace(country.values)), 2)
    letters = np.asarray(~((cmat < 65) | (cmat > 90)).any(axis=1), bool)
    ci = (cmat[:, 0].astype(np.int64) - 65) * 26 + (cmat[:, 1].astype(np.int64) - 65)
    words = postal.values
    pmat, plen = _byte_matrix(pc.utf8_upper(words), MAX_POSTAL)
    # Only codes with something other than letters and digits need the (slow) regex.
    odd = np.flatnonzero(~np.asarray(pc.utf8_is_alnum(words).to_numpy(zero_copy_only=False)) & (plen > 0))
    if len(odd):
        fixed = pc.utf8_upper(pc.replace_substring_regex(words.take(pa.array(odd)), r"[\s\-]", ""))
        pmat[odd], plen[odd] = _byte_matrix(fixed, MAX_POSTAL)
    # The postal part of each distinct code (country "AA": ci 0), then the country per row.
    pv = postal.per_row(postal_keys(np.full((len(words), 2), 65, np.uint8), pmat, plen))
    good = country.per_row(letters) & (pv >= 0)
    pkeys = np.where(good, country.per_row(ci) * SPAN + pv, NO_POSTAL)
    clen2 = clen == 2
    return pkeys, country.per_row(~clen2 | ~letters), (pkeys < 0) & country.per_row(clen2)


def _text_codes(cat: _Categories, limit: int) -> tuple[_Categories, npt.NDArray[np.bool_]]:
    """Trimmed text as distinct values (each once) and row indices, and the rows longer than
    ``limit`` characters."""
    enc = pc.dictionary_encode(pc.utf8_trim_whitespace(cat.values))
    trimmed = _Categories(enc.dictionary, np.take(np.asarray(enc.indices.to_numpy(zero_copy_only=False), np.int64),
                                                  cat.index))
    too_long = np.asarray(pc.greater(pc.utf8_length(enc.dictionary), limit).to_numpy(zero_copy_only=False), bool)
    return trimmed, trimmed.per_row(too_long) if too_long.any() else np.zeros(len(cat.index), bool)


def _codes(cat: _Categories, keep: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.int32], list[str]]:
    """Dictionary codes of the kept rows (-1 for empty strings), names in order of first
    appearance among them (``cat.values`` holds each value once)."""
    kept = cat.index[keep]
    re_enc = pc.dictionary_encode(pa.array(kept))  # old codes in order of first appearance
    names = [str(x) for x in cat.values.take(re_enc.dictionary).to_pylist()]
    codes = np.asarray(re_enc.indices.to_numpy(zero_copy_only=False), dtype=np.int32)
    if "" in names:
        e = names.index("")
        # Remap so that "" -> -1 and the remaining codes stay dense.
        remap = np.arange(len(names), dtype=np.int32)
        remap[e] = -1
        remap[e + 1 :] -= 1
        codes = remap[codes]
        names.pop(e)
    return codes, names


def _text(col: pa.ChunkedArray, name: str, source: str) -> pa.Array:
    """A column as one string array (nulls as ""); ConfigError when it has no text form."""
    try:
        return _strings(col)
    except pa.ArrowException as exc:  # a Parquet column of lists, structs, non-UTF-8 bytes...
        raise ConfigError(source, None, name, f"a {col.type} column cannot be read as text: {exc}") from None


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


def manifest_from_table(table: pa.Table, source: str = "<manifest>", first_line: int = 2) -> Manifest:
    """Validate a table with the manifest columns (any types) into a :class:`Manifest`.

    Every column is checked as the text it holds or reads as, so a Parquet manifest of text
    says what the same CSV would; typed number columns give what their text would without
    making it, timestamp columns the instant they hold, and dictionary text columns are read
    once per distinct value. The columns are
    checked independently, two at a time (Arrow and numpy release the GIL), and the problems
    applied in the order of ``PROBLEMS``: a row reports its first one."""
    _check_columns(table, source)
    n = table.num_rows
    col = {name: table.column(name) for name in HEADER}
    typed = {name: typed_times(col[name]) for name in _TIMES} | {name: typed_numbers(col[name]) for name in _NUMBERS}
    # Text forms in column order, so that the first unreadable column is the one named.
    text: dict[str, pa.Array] = {}
    cats: dict[str, _Categories] = {}
    for name in HEADER:
        if name in _CATEGORICAL:
            cats[name] = _categories(col[name], name, source)
        elif typed.get(name) is None:
            text[name] = _text(col[name], name, source)
    with ThreadPoolExecutor(2) as pool:
        j_ids = pool.submit(_ids, text["parcel_id"])
        j_postal = pool.submit(_postal, cats["country"], cats["postal_code"])
        j_dest = pool.submit(_text_codes, cats["destination_id"], MAX_DESTINATION)
        j_ckey = pool.submit(_text_codes, cats["consolidation_key"], MAX_KEY)
        j_vals = {name: pool.submit(_times if name in _TIMES else partial(_unique_first, _number), text[name])
                  for name in (*_TIMES, *_NUMBERS) if name in text}
        keys, dup, first_of = j_ids.result()
        pkeys, bad_country, bad_postal = j_postal.result()
        dest, dest_long = j_dest.result()
        ckey, ckey_long = j_ckey.result()
        vals = {name: j.result() for name, j in j_vals.items()} | {k: v for k, v in typed.items() if v is not None}
    (deadline, bad_deadline), (arrival, bad_arrival) = (vals[name] for name in _TIMES)
    nums = [vals[name] for name in _NUMBERS]
    problem = np.full(n, 127, np.int8)
    masks = [keys == 0, dup, bad_country, bad_postal, dest_long, ckey_long, bad_deadline | np.isnan(deadline),
             bad_arrival, *(bad for _, bad in nums)]
    for code in range(len(masks) - 1, -1, -1):  # the first problem of a row is written last
        problem[masks[code]] = code
    keep = problem == 127
    lines = np.arange(first_line, first_line + n, dtype=np.int64)
    bad_idx = np.flatnonzero(~keep)
    dest_code, dest_names = _codes(dest, keep)
    group, group_names = _codes(ckey, keep)
    dims = np.stack([v for v, _ in nums[:3]], axis=1)
    bad_code = problem[bad_idx]
    return Manifest(
        keys=keys[keep], line=lines[keep], postal_key=pkeys[keep], dest_code=dest_code,
        dest_names=dest_names, group=group, group_names=group_names, deadline=deadline[keep],
        arrival=arrival[keep], dims=dims[keep], weight=nums[3][0][keep],
        source=source, bad_line=lines[bad_idx], bad_code=bad_code,
        bad_ref=(np.where(bad_code == 1, lines[first_of[bad_idx]], 0) if first_of is not None
                 else np.zeros(len(bad_idx), np.int64)),
    )


def load_manifest(path: str | Path) -> Manifest:
    """Load a manifest CSV (exact header) or Parquet file; raises ConfigError if unreadable."""
    p = Path(path)
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            table = _read_parquet(p)
        else:
            table = pacsv.read_csv(
                p,
                read_options=pacsv.ReadOptions(block_size=1 << 24),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(HEADER, pa.string()), strings_can_be_null=False
                ),
            )
    except FileNotFoundError as exc:
        raise ConfigError(p, None, "", "no such file") from exc
    except (pa.ArrowException, OSError) as exc:
        if p.suffix.lower() in (".parquet", ".pq"):
            raise ConfigError(p, None, "", f"not a readable Parquet file: {exc}") from None
        try:
            with p.open("rb") as f:
                found = csv_problem(iter(lambda: f.readline(MAX_LINE), b""), str(p))
        except OSError:
            found = None
        raise found or ConfigError(p, _arrow_line(str(exc)), "", f"cannot read: {exc}") from None
    if p.suffix.lower() not in (".parquet", ".pq"):
        _check_csv_table(table, str(p))
    return manifest_from_table(table, str(p))


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
