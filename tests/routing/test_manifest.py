"""Manifest loading: good rows load, bad rows and duplicates are reported by line, lookups work."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control.routing.ids import keys_of, s10_check_digit
from control.routing.manifest import HEADER, load_manifest, manifest_from_table
from control.routing.postal import postal_key
from plant.errors import ConfigError

GOOD = "RR123456785CN,GB,SW1A 1AA,,ORD-1,2026-11-23T14:00:00Z,2026-11-23T08:00:00Z,300,200,100,1.5"


def sid(n: int) -> str:
    s = f"{n:08d}"
    return f"CP{s}{s10_check_digit(s)}DE"


def _write(tmp_path: Path, rows: list[str]) -> Path:
    p = tmp_path / "m.csv"
    p.write_text(",".join(HEADER) + "\n" + "\n".join(rows) + "\n")
    return p


def test_bad_rows_are_reported_and_good_rows_load(tmp_path: Path) -> None:
    rows = [
        GOOD,
        "RR123456784CN,GB,1,,,2026-11-23T14:00:00Z,,1,1,1,1",  # line 3: check digit
        "RR123456785CN,GB,1,,,2026-11-23T14:00:00Z,,1,1,1,1",  # line 4: duplicate of 2
        f"{sid(1)},G1,1,,,2026-11-23T14:00:00Z,,1,1,1,1",  # line 5: country
        f"{sid(2)},DE,1,,,23/11/2026,,1,1,1,1",  # line 6: deadline
        f"{sid(3)},DE,1,,,2026-11-23T14:00:00Z,,-1,1,1,1",  # line 7: negative length
        f"{sid(4)},DE,1,LB-9,,2026-11-23T14:00:00Z,,,,,",  # line 8: fine, dims unknown
    ]
    m = load_manifest(_write(tmp_path, rows))
    issues = {(i.line, i.field) for i in m.issues()}
    assert issues == {(3, "parcel_id"), (4, "parcel_id"), (5, "country"), (6, "deadline"), (7, "length_mm")}
    assert "first seen on line 2" in next(i.message for i in m.issues() if i.line == 4)
    assert list(m.line) == [2, 8]
    assert m.destination(1) == "LB-9" and m.destination(0) == ""
    assert np.isnan(m.dims[1]).all()
    assert m.deadline[0] == pytest.approx(1795442400.0)
    assert int(m.postal_key[0]) == postal_key("GB", "SW1A1AA")


def test_lookup_batch_and_single(world) -> None:  # type: ignore[no-untyped-def]
    m = world.manifest
    rows = np.arange(len(m))[::-1]
    ids = [m.parcel_id(int(r)) for r in rows]
    assert (m.rows_of(keys_of(ids)) == rows).all()
    assert m.row_of(ids[3]) == rows[3]
    assert m.row_of("RR123456785CN") == -1 or m.parcel_id(m.row_of("RR123456785CN")) == "RR123456785CN"
    assert m.row_of("garbage") == -1
    assert (m.rows_of(np.array([0, 12345], np.uint64)) == -1).all()


def test_expected_group_counts(world) -> None:  # type: ignore[no-untyped-def]
    m = world.manifest
    counts: dict[str, int] = {}
    for r in world.records.values():
        if r.consolidation_key:
            counts[r.consolidation_key] = counts.get(r.consolidation_key, 0) + 1
    assert {m.group_names[g]: int(c) for g, c in enumerate(m.expected)} == counts


def test_parquet_loads_like_csv(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(world.path, convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(HEADER, pa.string())))
    pq.write_table(table, tmp_path / "m.parquet")
    a = load_manifest(tmp_path / "m.parquet")
    assert (a.keys == world.manifest.keys).all() and (a.group == world.manifest.group).all()


def test_header_and_file_errors(tmp_path: Path) -> None:
    p = tmp_path / "h.csv"
    p.write_text("parcel_id,country\nRR123456785CN,GB\n")
    with pytest.raises(ConfigError) as err:
        load_manifest(p)
    assert err.value.line == 1
    with pytest.raises(ConfigError, match="no such file"):
        load_manifest(tmp_path / "nope.csv")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 10**8 - 1),
            st.sampled_from(["GB", "DE", "gb", "X", "ZZ9"]),
            st.text("0123456789AB -", max_size=12),
            st.sampled_from(["", "LB-1", "x" * 40]),
            st.one_of(st.just(""), st.floats(-5, 2000, allow_nan=False).map(lambda v: f"{v:.1f}"), st.just("abc")),
        ),
        min_size=1, max_size=25,
    )
)
def test_csv_parser_row_by_row(rows: list[tuple[int, str, str, str, str]]) -> None:
    cols: dict[str, list[str]] = {h: [] for h in HEADER}
    for serial, country, postal, dest, length in rows:
        s = f"{serial:08d}"
        cols["parcel_id"].append(f"RR{s}{s10_check_digit(s)}GB")
        cols["country"].append(country)
        cols["postal_code"].append(postal)
        cols["destination_id"].append(dest)
        cols["consolidation_key"].append("")
        cols["deadline"].append("2026-11-23T14:00:00Z")
        cols["arrival"].append("")
        for h in ("length_mm", "width_mm", "height_mm", "weight_kg"):
            cols[h].append(length)
    m = manifest_from_table(pa.table(cols))
    seen: set[int] = set()
    good_lines = []
    for i, (serial, country, postal, dest, length) in enumerate(rows):
        dup = serial in seen
        seen.add(serial)
        pk = postal_key(country, postal)
        ok_num = length in ("",) or (length != "abc" and float(length) >= 0)
        if not dup and len(country) == 2 and country.isalpha() and pk >= 0 and len(dest) <= 32 and ok_num:
            good_lines.append(i + 2)
    assert list(m.line) == good_lines
    assert len(m.bad_line) + len(m) == len(rows)


def test_times_and_numbers_are_strict_like_the_reference(tmp_path: Path) -> None:
    rows = [
        f"{sid(10)},DE,1,,,2024-02-29T23:59:59Z,,1,1,1,1e2",  # leap day, exponent: good
        f"{sid(11)},DE,1,,,2026-02-29T00:00:00Z,,1,1,1,1",  # no 29 February in 2026
        f"{sid(12)},DE,1,,,2026-11-23T14:00:60Z,,1,1,1,1",  # second 60
        f"{sid(13)},DE,1,,,2026-11-23T 4:00:00Z,,1,1,1,1",  # space-padded hour
        f"{sid(14)},DE,1,,,0000-01-01T00:00:00Z,,1,1,1,1",  # year 0
        f"{sid(15)},DE,1,,,2026-11-23T14:00:00Z,,inf,1,1,1",  # not a number
        f"{sid(16)},DE,1,,,2026-11-23T14:00:00Z,,1,nan,1,1",  # not a number
        f"{sid(17)},DE,1,,,1969-12-31T23:59:59Z,2026-13-01T00:00:00Z,1,1,1,1",  # month 13
    ]
    m = load_manifest(_write(tmp_path, rows))
    assert len(m) == 1 and float(m.deadline[0]) == 1709251199.0 and float(m.weight[0]) == 100.0
    assert [(i.line, i.field) for i in m.issues()] == [
        (3, "deadline"), (4, "deadline"), (5, "deadline"), (6, "deadline"),
        (7, "length_mm"), (8, "width_mm"), (9, "arrival"),
    ]


# The word kernels (ids, times) and the typed/dictionary column paths against the text path.

from control.routing import manifest as mf  # noqa: E402
from control.routing.ids import S10_WEIGHTS  # noqa: E402

_ID_EDITS = st.sampled_from(["", "lower", "space", "digit", "cut", "extra", "letter", "nul"])


def _s10(serial: int) -> str:
    s = f"{serial:08d}"
    return f"RR{s}{s10_check_digit(s)}GB"


def _sscc(body: int) -> str:
    b = f"{body:017d}"
    s = sum((3 if j % 2 == 0 else 1) * int(c) for j, c in enumerate(b))
    return b + str((10 - s % 10) % 10)


def _edit(text: str, edit: str, pos: int) -> str:
    i = pos % max(len(text), 1)
    return {
        "": text, "lower": text.lower(), "space": f" {text}\t", "cut": text[:-1], "extra": text + "0",
        "digit": text[:i] + str((int(text[i]) + 1) % 10 if text[i].isdigit() else 7) + text[i + 1 :],
        "letter": text[:i] + "Ä" + text[i + 1 :], "nul": text[:i] + "\0" + text[i + 1 :],
    }[edit]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 10**17 - 1), _ID_EDITS, st.integers(0, 20)), max_size=40))
def test_id_words_equal_the_text_path(ids: list[tuple[bool, int, str, int]]) -> None:
    texts = [_edit(_s10(v % 10**8) if s10 else _sscc(v), e, pos) for s10, v, e, pos in ids]
    arr = pa.array(texts, pa.string())
    keys = mf._id_keys(arr)
    ref = mf._id_keys_text(arr)
    assert keys.tolist() == ref.tolist()
    _, rest = mf.id_keys(arr)  # valid ids written exactly are taken by the word kernel itself
    assert not (rest & (ref != 0))[[e == "" for _, _, e, _ in ids]].any()
    assert len(S10_WEIGHTS) == 8


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 9999), st.integers(1, 12), st.integers(27, 31), st.integers(22, 24),
                          st.integers(58, 60), st.integers(58, 60)), min_size=1, max_size=40))
def test_time_words_at_the_limits(parts: list[tuple[int, int, int, int, int, int]]) -> None:
    texts = [f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}Z" for y, mo, d, h, mi, s in parts]
    arr = pa.array(texts, pa.string())
    secs, bad, rest = mf.iso_times(arr)
    ref_secs, ref_bad = mf._times_trimmed(arr)
    assert not rest.any()
    assert np.array_equal(secs, ref_secs, equal_nan=True) and bad.tolist() == ref_bad.tolist()


_TIME = st.builds(
    lambda y, mo, d, h, mi, s: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}Z",
    st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32), st.integers(0, 24), st.integers(0, 60), st.integers(0, 60),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_TIME, st.sampled_from(["", " ", "x", "z", "-", ":", "T", "\u00a0", "5"]), st.integers(0, 21),
                          st.booleans()), max_size=40))
def test_time_words_equal_the_text_path(times: list[tuple[str, str, int, bool]]) -> None:
    texts = [t[:i] + ch + t[i + replace :] for t, ch, i, replace in times]
    arr = pa.array(texts, pa.string())
    secs, bad = mf._times(arr)
    ref_secs, ref_bad = mf._times_trimmed(pc.utf8_trim_whitespace(arr))
    assert np.array_equal(secs, ref_secs, equal_nan=True) and bad.tolist() == ref_bad.tolist()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(), st.floats(0, 1e6), st.integers(-10, 10**6).map(float)), max_size=30),
       st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.integers(-5, 5000)), max_size=30))
def test_typed_numbers_equal_their_text(floats: list[float | None], ints: list[int | None]) -> None:
    for arr in (pa.array(floats, pa.float64()), pa.array(ints, pa.int64())):
        got = mf.typed_numbers(pa.chunked_array([arr]))
        assert got is not None
        ref = mf._number(mf._strings(arr))
        assert np.array_equal(got[0], ref[0], equal_nan=True) and got[1].tolist() == ref[1].tolist()
        assert np.signbit(got[0]).tolist() == np.signbit(ref[0]).tolist()  # -0.0 stays -0.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(-62135596800 - 5, 253402300799 + 5), st.integers(-(2**40), 2**40)),
                max_size=30),
       st.sampled_from([("s", None), ("s", "UTC"), ("s", "Etc/UTC"), ("s", "+00:00"), ("s", "Europe/Berlin"),
                        ("ms", "UTC"), ("us", None), ("ns", "America/New_York")]),
       st.integers(0, 999))
def test_a_typed_time_is_the_instant_it_holds(values: list[int | None], unit_tz: tuple[str, str | None],
                                              millis: int) -> None:
    """Whatever the unit or zone (Parquet writers store seconds as milliseconds; a WMS may
    export local times with their zone): the time is the instant, fractions kept; a zone-less
    timestamp is UTC. Whole UTC seconds read exactly as their ISO text does."""
    unit, tz = unit_tz
    scale = {"s": 1, "ms": 1000, "us": 10**6, "ns": 10**9}[unit]
    extra = millis * scale // 1000  # a fraction of a second where the unit has one
    in_ns_range = [v for v in values if v is None or abs(v) < 9 * 10**9]  # ns timestamps span 1677-2262
    values = in_ns_range if unit == "ns" else values
    col = pa.chunked_array([pa.array([None if v is None else v * scale + extra for v in values], pa.timestamp(unit, tz))])
    got = mf.typed_times(col)
    assert got is not None
    secs, bad = got
    for v, s_, b in zip(values, secs.tolist(), bad.tolist(), strict=True):
        if v is None:
            assert math.isnan(s_) and not b
        elif -62135596800 <= v <= 253402300799:
            assert not b and s_ == pytest.approx(v + extra / scale, abs=1e-6)
        else:
            assert b and math.isnan(s_)
    if unit == "s" and tz != "Europe/Berlin":  # whole UTC seconds: exactly what the ISO text says
        ref = mf._times(mf._strings(col))
        assert np.array_equal(secs, ref[0], equal_nan=True) and bad.tolist() == ref[1].tolist()
    table = pa.table({h: pa.array(["x"] * len(values)) for h in HEADER}).set_column(HEADER.index("deadline"), "deadline", col)
    assert len(manifest_from_table(table)) == 0  # ids "x": every row bad, no crash


def test_a_parquet_manifest_with_millisecond_timestamps_loads(tmp_path: Path) -> None:
    """pyarrow (and most writers) store timestamp[s] in Parquet as milliseconds: such a file must
    load with its times, not refuse every row."""
    deadline = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    arrival = datetime(2026, 11, 23, 9, 30, 15, 250000, tzinfo=ZoneInfo("Europe/Berlin"))
    table = pa.table({
        "parcel_id": [f"RR12345678{s10_check_digit('12345678')}DE"], "country": ["DE"], "postal_code": ["10115"], "destination_id": [""],
        "consolidation_key": [""], "deadline": pa.array([deadline], pa.timestamp("s", "UTC")),
        "arrival": pa.array([arrival], pa.timestamp("ms", "Europe/Berlin")),
        "length_mm": [300], "width_mm": [200], "height_mm": [100], "weight_kg": [1.5],
    })
    pq.write_table(table, tmp_path / "m.parquet")
    m = load_manifest(tmp_path / "m.parquet")
    assert m.issues() == [] and len(m) == 1
    assert m.deadline[0] == deadline.timestamp() and m.arrival[0] == pytest.approx(arrival.timestamp())


def test_wms_typed_parquet_loads_like_csv(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Integer sizes, double weights and dictionary-encoded text, with nulls and repeated and
    padded values, load exactly like the same text."""
    import pyarrow.csv as pacsv

    from benchmarks.routing import wms_table

    text = pacsv.read_csv(world.path, convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(HEADER, pa.string())))
    n = text.num_rows
    dest = text.column("destination_id").to_pylist()
    dest[::7] = [f" {d} " for d in dest[::7]]
    dest[3::11] = [None] * len(dest[3::11])
    text = text.set_column(HEADER.index("destination_id"), "destination_id", pa.array(dest, pa.string()))
    weight = text.column("weight_kg").to_pylist()
    weight[::13] = [None] * len(weight[::13])
    weight[5::17] = ["-1"] * len(weight[5::17])
    text = text.set_column(HEADER.index("weight_kg"), "weight_kg", pa.array(weight, pa.string()))
    pq.write_table(wms_table(text), tmp_path / "typed.parquet", row_group_size=max(n // 3, 1))
    pq.write_table(text, tmp_path / "text.parquet", row_group_size=max(n // 3, 1))
    typed, plain = load_manifest(tmp_path / "typed.parquet"), load_manifest(tmp_path / "text.parquet")
    ref = manifest_from_table(text)
    for m in (typed, plain):
        for name in ("keys", "line", "postal_key", "dest_code", "group", "deadline", "arrival", "dims", "weight",
                     "bad_line", "bad_code", "bad_ref"):
            assert np.array_equal(getattr(m, name), getattr(ref, name), equal_nan=True), name
        assert (m.dest_names, m.group_names) == (ref.dest_names, ref.group_names)
    assert len(ref.bad_line) > 0


# Country and postal code words, pieces of rows and dictionary columns against the text path.

_POSTAL_CHARS = "0123456789" * 3 + "ABCDEFGHIJKLMNOPQRSTUVWXYZ" + "ab -\t\0é٣/"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(_POSTAL_CHARS, max_size=12), max_size=60), st.integers(0, 5))
def test_postal_words_equal_the_text_path(codes: list[str], skip: int) -> None:
    """Codes of digits and capitals are read from words; every other spelling (spaces, dashes,
    lower case, NUL, non-ASCII, too long) gives what the text path gives, also in a slice
    (data before the first value) and for the values at the start of the data."""
    arr = pa.array(codes, pa.string()).slice(min(skip, len(codes)))
    assert mf._postal_values(arr).tolist() == mf._postal_values_text(arr).tolist()
    pv, rest = mf.postal_values(arr)
    assert (pv[~rest] == mf._postal_values_text(arr)[~rest]).all()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text("ABGDEZgb 1\tÄ", max_size=4), max_size=60), st.integers(0, 5))
def test_country_words_equal_the_text_path(countries: list[str], skip: int) -> None:
    arr = pa.array(countries, pa.string()).slice(min(skip, len(countries)))
    assert mf._country_codes(arr).tolist() == mf._country_codes_text(arr).tolist()


def _rechunk(col: pa.ChunkedArray, sizes: list[int]) -> pa.ChunkedArray:
    whole = col.combine_chunks()
    cuts = np.cumsum([0, *sizes])
    return pa.chunked_array([whole.slice(int(a), int(b - a)) for a, b in zip(cuts[:-1], cuts[1:], strict=True)], col.type)


def _same(a: object, b: object) -> None:
    for name in ("keys", "line", "postal_key", "dest_code", "group", "deadline", "arrival", "dims", "weight",
                 "bad_line", "bad_code", "bad_ref"):
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name
    assert (a.dest_names, a.group_names) == (b.dest_names, b.group_names)  # type: ignore[attr-defined]


def test_pieces_and_dictionaries_give_the_one_chunk_result(world, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Columns chunked differently (pieces end at every column's chunk boundary), dictionary
    columns whose chunks have their own or a shared dictionary, nulls: the same manifest as the
    plain text in one chunk, bad rows (duplicates, bad countries, long keys) included."""
    import pyarrow.csv as pacsv

    text = pacsv.read_csv(world.path, convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(HEADER, pa.string())))
    n = text.num_rows
    cols = {name: text.column(name).to_pylist() for name in HEADER}
    cols["parcel_id"][5] = cols["parcel_id"][1]
    cols["country"][7], cols["country"][8], cols["country"][9] = "gb ", "G1", None
    cols["postal_code"][10], cols["postal_code"][11] = "sw1a 1aa", None
    cols["consolidation_key"][12], cols["consolidation_key"][13] = "K" * 65, " ORD-1 "
    cols["destination_id"][14], cols["destination_id"][15] = " " + "D" * 32, "D" * 33  # fine once trimmed; too long
    plain = pa.table({name: pa.array(v, pa.string()) for name, v in cols.items()})
    ref = manifest_from_table(plain)
    assert len(ref.bad_line) == 5
    monkeypatch.setattr(mf, "PIECE", 7)  # many pieces
    sizes = [[n], [3, n - 3], [1] * 5 + [n - 5], [n // 2, n - n // 2]]
    odd = pa.table({name: _rechunk(plain.column(name), sizes[i % len(sizes)]) for i, name in enumerate(HEADER)})
    _same(manifest_from_table(odd), ref)
    dicts = odd
    for name in ("country", "postal_code", "destination_id", "consolidation_key"):
        col = odd.column(name)
        shared = pc.dictionary_encode(col.combine_chunks()).dictionary
        chunks = [pc.dictionary_encode(c) if i % 2 else
                  pa.DictionaryArray.from_arrays(pc.index_in(c, shared), shared) for i, c in enumerate(col.chunks)]
        dicts = dicts.set_column(HEADER.index(name), name, pa.chunked_array(chunks))
    _same(manifest_from_table(dicts), ref)


def test_a_csv_of_other_utf8_text_loads_and_bytes_that_are_not_utf8_are_named(tmp_path: Path) -> None:
    """Columns are read as bytes and taken as text when they are ASCII; other UTF-8 text loads
    the same, and a byte that is not UTF-8 still names line and column."""
    good = _write(tmp_path, [GOOD.replace("ORD-1", "ÖRD-1"), GOOD.replace("RR123456785CN", "RR123456785CÄ")])
    m = load_manifest(good)
    assert m.group_names == ["ÖRD-1"] and [(i.line, i.field) for i in m.issues()] == [(3, "parcel_id")]
    bad = tmp_path / "bad.csv"
    bad.write_bytes(good.read_bytes().replace("ÖRD".encode(), b"\xd6RD"))
    with pytest.raises(ConfigError) as err:
        load_manifest(bad)
    assert (err.value.line, err.value.field) == (2, "consolidation_key") and "not UTF-8" in err.value.message


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 6), max_size=80))
def test_duplicates_name_every_later_row_and_its_first(values: list[int]) -> None:
    keys = np.array(values, np.uint64)  # 0: no id, never a duplicate
    rows, first = mf._duplicates(keys)
    seen: dict[int, int] = {}
    ref_rows, ref_first = [], []
    for i, k in enumerate(values):
        if k and k in seen:
            ref_rows.append(i)
            ref_first.append(seen[k])
        seen.setdefault(k, i)
    assert rows.tolist() == ref_rows and first.tolist() == ref_first


_NUMBER_TEXT = st.one_of(
    st.text("0123456789.", max_size=6),
    st.sampled_from(["", " ", "abc", " 12 ", "+5", "-1", "1e2", "1E+05", "inf", "nan", "-0", ".", "5.", ".5", "1.2.3",
                     "٣", "1e999", "0x10", "\t7"]),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_NUMBER_TEXT, max_size=40))
def test_numbers_check_the_pattern_only_where_it_can_differ(texts: list[str]) -> None:
    """A piece with a value the cast refuses reads every value as the number pattern says:
    digits with one point are taken without the regex, the others through it."""
    arr = pa.array([*texts, "abc"], pa.string())  # "abc": the cast of the piece fails
    vals, bad = mf._number_fast(arr)
    valid = np.asarray(pc.match_substring_regex(arr, mf._NUMBER).to_numpy(zero_copy_only=False), bool)
    for t, v, b, ok in zip(arr.to_pylist(), vals.tolist(), bad.tolist(), valid.tolist(), strict=True):
        if t.strip() == "":
            assert math.isnan(v) and not b
        elif not ok:
            assert b and math.isnan(v)
        else:
            assert b == (not float(t.strip()) >= 0)
            assert b or v == float(t.strip())
