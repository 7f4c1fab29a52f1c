"""Manifest loading: good rows load, bad rows and duplicates are reported by line, lookups work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
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
