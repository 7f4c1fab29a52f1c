"""Sort plan CSV, manifest CSV (text, files of any bytes) and Parquet (bytes and odd tables):
a valid object or a ConfigError naming source and line; a manifest never drops a row silently."""

from __future__ import annotations

import io
import random
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from control.routing.engine import RoutingEngine
from control.routing.manifest import (
    HEADER,
    Manifest,
    load_manifest,
    manifest_from_csv_text,
    manifest_from_table,
)
from control.routing.plan import SortPlan, check_against_site, parse_plan
from plant.errors import ConfigError
from plant.site import load_site
from tests.fuzz.conftest import ANY_TEXT, CONFIG, FEW, FUZZ, check_config_error, mutate

pytestmark = pytest.mark.timeout(60)

SITE = load_site(CONFIG / "site.yaml")
PLAN_TEXT = (CONFIG / "sortplan.csv").read_text(encoding="utf-8")
MANIFEST_LINES = (CONFIG / "manifest.csv").read_text(encoding="utf-8").splitlines()[:40]
MANIFEST_TEXT = "\n".join(MANIFEST_LINES) + "\n"
SMALL_MANIFEST = load_manifest(CONFIG / "manifest.csv")

# CSV built from plausible and odd cells, so the fuzz gets past the header often.
CELL = st.one_of(
    st.sampled_from(["", "DE", "GB", "de", "X1", "10115", "SW1A 1AA", "3", "3|4", "4|4", "0", "1000", "²", "٣",
                     "LB-00002", '"q"', '"a,b"', "#", " ", "\ufeff", "1e9", "-1", "inf", "nan"]),
    st.text(max_size=12),
)
ROW = st.lists(CELL, min_size=0, max_size=8).map(",".join)


def _plan_property(text: str) -> None:
    try:
        plan = parse_plan(text, "plan.csv")
    except ConfigError as exc:
        check_config_error(exc, "plan.csv", None)
        if exc.line is None:  # only whole-file problems have no line
            assert exc.message.startswith(("empty sort plan", "the text is")) or "MB is more than" in exc.message
        return
    assert isinstance(plan, SortPlan) and plan.rules
    assert all(1 <= r.line <= text.count("\n") + text.count("\r") + 1 for r in plan.rules)
    try:
        check_against_site(plan, SITE)
    except ConfigError as exc:
        check_config_error(exc, "plan.csv", text)


@FUZZ
@given(text=ANY_TEXT)
def test_plan_from_any_text(text: str) -> None:
    _plan_property(text)


@FUZZ
@given(rows=st.lists(ROW, max_size=6), header=st.sampled_from([
    "destination_id,country,postal_prefix,chutes,priority_chute",
    "destination_id,country,postal_prefix,chutes,priority_chute,description",
    "\ufeffcountry,destination_id,chutes,postal_prefix,priority_chute",
    "# comment\ndestination_id,country,postal_prefix,chutes,priority_chute",
]))
def test_plan_from_csv_like_rows(header: str, rows: list[str]) -> None:
    _plan_property("\n".join([header, *rows]))


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), edits=st.integers(1, 8))
def test_plan_mutated_example(seed: int, edits: int) -> None:
    _plan_property(mutate(PLAN_TEXT, random.Random(seed), edits))


@FEW
@given(seed=st.integers(0, 2**32 - 1), edits=st.integers(1, 4))
def test_mutated_plan_compiles_or_is_refused(seed: int, edits: int) -> None:
    """A plan that parses and fits the site also compiles: the engine has no errors of its own
    left for a planner's file, except the too-large ConfigError."""
    try:
        plan = parse_plan(mutate(PLAN_TEXT, random.Random(seed), edits), "plan.csv")
        RoutingEngine(SITE, plan, SMALL_MANIFEST)
    except ConfigError as exc:
        check_config_error(exc, "plan.csv", None)


def _manifest_property(m: Manifest, rows: int | None) -> None:
    assert len(m.keys) == len(m.line) == len(m.deadline) == len(m.dims) == len(m.weight)
    if rows is not None:  # every row is either loaded or reported, never silently dropped
        assert len(m) + len(m.bad_line) == rows
    for issue in m.issues(limit=5):
        assert issue.line >= 2 and issue.field in HEADER


@FUZZ
@given(text=ANY_TEXT)
def test_manifest_from_any_text(text: str) -> None:
    try:
        _manifest_property(manifest_from_csv_text(text, "upload.csv"), None)
    except ConfigError as exc:
        check_config_error(exc, "upload.csv", text)


@FUZZ
@given(rows=st.lists(st.lists(CELL, min_size=11, max_size=11).map(",".join), max_size=6))
def test_manifest_rows_are_loaded_or_reported(rows: list[str]) -> None:
    text = "\n".join([",".join(HEADER), *rows]) + "\n"
    try:
        m = manifest_from_csv_text(text, "upload.csv")
    except ConfigError as exc:
        check_config_error(exc, "upload.csv", text)
        return
    _manifest_property(m, sum(1 for r in rows if r.strip()))


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), edits=st.integers(1, 8))
def test_manifest_mutated_example(seed: int, edits: int) -> None:
    text = mutate(MANIFEST_TEXT, random.Random(seed), edits)
    try:
        _manifest_property(manifest_from_csv_text(text, "upload.csv"), None)
    except ConfigError as exc:
        check_config_error(exc, "upload.csv", text)


def _load_file(name: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            _manifest_property(load_manifest(path), None)
        except ConfigError as exc:
            check_config_error(exc, path, data if name.endswith(".csv") else None)


@FUZZ
@given(data=st.binary(max_size=600), head=st.booleans())
def test_manifest_csv_file_of_any_bytes(data: bytes, head: bool) -> None:
    _load_file("m.csv", (MANIFEST_LINES[0].encode() + b"\n" if head else b"") + data)


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


VALID_PARQUET = _parquet(pa.table({h: pa.array([ln.split(",")[i] for ln in MANIFEST_LINES[1:]])
                                   for i, h in enumerate(HEADER)}))


@FUZZ
@given(data=st.binary(max_size=600))
def test_parquet_of_any_bytes(data: bytes) -> None:
    _load_file("m.parquet", data)


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, len(VALID_PARQUET) - 1), st.integers(0, 255)), min_size=1, max_size=8),
       cut=st.integers(0, len(VALID_PARQUET)))
def test_parquet_damaged(flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(VALID_PARQUET)
    for i, b in flips:
        data[i] = b
    _load_file("m.parquet", bytes(data[: max(cut, len(data) - 64)]))


COLUMN = st.sampled_from([
    lambda n: pa.array(["x"] * n), lambda n: pa.array(list(range(n)), pa.int64()),
    lambda n: pa.array([1.5] * n), lambda n: pa.array([None] * n, pa.null()),
    lambda n: pa.array([b"\xff\xfe"] * n, pa.binary()), lambda n: pa.array([[1, 2]] * n),
    lambda n: pa.array([{"a": 1}] * n), lambda n: pa.array([True] * n),
    lambda n: pa.array(["x"] * n).dictionary_encode(), lambda n: pa.array(["EE609515251CN"] * n, pa.large_string()),
    lambda n: pa.array([0] * n, pa.timestamp("s")),
])


@FUZZ
@given(cols=st.lists(COLUMN, min_size=len(HEADER), max_size=len(HEADER)), n=st.integers(0, 4),
       dup=st.booleans())
def test_manifest_from_tables_of_any_column_types(cols: list, n: int, dup: bool) -> None:  # type: ignore[type-arg]
    names = list(HEADER) + (["parcel_id"] if dup else [])
    arrays = [c(n) for c in cols] + ([pa.array(["x"] * n)] if dup else [])
    table = pa.Table.from_arrays(arrays, names=names)
    try:
        _manifest_property(manifest_from_table(table, "t.parquet"), n)
    except ConfigError as exc:
        check_config_error(exc, "t.parquet", None)
