"""Ring arithmetic and Modbus request planning: property tests against a plain model."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from control.plc.link import Gap
from control.plc.modbus import MAX_READ, decode_columns, spans
from control.plc.rings import collect, merge_gaps, slot_runs, wanted
from plant.tagmap import RingField
from plant.words import from_words, to_words


def ring_after(pushes: int, size: int) -> dict[str, np.ndarray]:
    """What a PLC's ring arrays hold after ``pushes`` entries (tracking_id = seq * 7)."""
    seq = np.zeros(size, dtype=np.int64)
    tid = np.zeros(size, dtype=np.int64)
    for s in range(1, pushes + 1):
        seq[s % size] = s
        tid[s % size] = s * 7
    return {"seq": seq, "tracking_id": tid}


@given(size=st.integers(1, 40), pushes=st.integers(0, 200), after=st.integers(0, 200))
def test_collect_returns_exactly_the_unread_survivors_and_names_the_rest(size: int, pushes: int, after: int) -> None:
    got = collect(after, pushes, size, ring_after(pushes, size))
    if pushes < after:
        assert got.restarted and got.entries == ()
        return
    seqs = [e["seq"] for e in got.entries]
    assert seqs == list(range(max(after + 1, pushes - size + 1), pushes + 1))
    assert all(e["tracking_id"] == e["seq"] * 7 for e in got.entries)
    lost = [s for g in got.gaps for s in range(g.first, g.last + 1)]
    assert sorted(lost + seqs) == list(range(after + 1, pushes + 1))  # nothing silently dropped
    assert got.last_seq == pushes
    assert all(b.first > a.last + 1 for a, b in zip(got.gaps, got.gaps[1:], strict=False))


def test_overwritten_slot_between_head_and_slot_read_is_a_gap_not_a_wrong_entry() -> None:
    cols = ring_after(10, 8)
    cols["seq"][9 % 8] = 17  # the PLC lapped slot 1 after we read head = 10
    got = collect(8, 10, 8, cols)
    assert [e["seq"] for e in got.entries] == [10]
    assert got.gaps == (Gap(9, 9),)
    assert collect(0, 10, 8, cols).gaps == (Gap(1, 2), Gap(9, 9))
    cols["seq"][3] = 19
    assert collect(0, 10, 8, cols).gaps == (Gap(1, 3), Gap(9, 9))


@given(st.lists(st.integers(0, 100), unique=True))
def test_merge_gaps_is_a_lossless_run_length_code(seqs: list[int]) -> None:
    gaps = merge_gaps(sorted(seqs))
    assert [s for g in gaps for s in range(g.first, g.last + 1)] == sorted(seqs)
    assert all(b.first > a.last + 1 for a, b in zip(gaps, gaps[1:], strict=False))


@given(size=st.integers(1, 64), after=st.integers(0, 500), n=st.integers(0, 70))
def test_slot_runs_cover_the_wanted_slots_in_order(size: int, after: int, n: int) -> None:
    seqs, _ = wanted(after, after + n, size)
    runs = slot_runs(seqs, size)
    slots = [s for first, k in runs for s in range(first, first + k)]
    assert slots == [s % size for s in seqs]
    assert len(runs) <= 2


@given(st.lists(st.tuples(st.integers(0, 2000), st.integers(1, 300)), max_size=12))
def test_spans_cover_every_register_within_the_request_limit(ranges: list[tuple[int, int]]) -> None:
    reqs = spans(ranges)
    assert all(0 < n <= MAX_READ for _, n in reqs)
    covered = {a + i for a, n in reqs for i in range(n)}
    assert all(a + i in covered for a, n in ranges for i in range(n))


def test_registers_0_to_9_are_one_request() -> None:
    assert spans([(0, 2), (2, 2), (4, 2), (6, 1), (7, 1), (8, 2)]) == [(0, 10)]


@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(-(2**31), 2**31 - 1),
                          st.integers(0, 0xFFFF), st.integers(-0x8000, 0x7FFF)), min_size=1, max_size=20))
def test_vectorised_slot_decoding_matches_words_py(rows: list[tuple[int, int, int, int]]) -> None:
    fields = {
        "a": RingField(offset=0, type="uint32"),
        "b": RingField(offset=2, type="int32"),
        "c": RingField(offset=4, type="uint16"),
        "d": RingField(offset=5, type="int16"),
    }
    words = [to_words(a, "uint32") + to_words(b, "int32") + to_words(c, "uint16") + to_words(d, "int16")
             for a, b, c, d in rows]
    cols = decode_columns(np.array(words, dtype=np.uint16), fields)
    for i, w in enumerate(words):
        for name, f in fields.items():
            assert cols[name][i] == from_words(w, f.type, f.offset)
