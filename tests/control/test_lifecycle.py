"""Parcel lifecycle matrix: legal paths pass, illegal moves are refused, vectorised."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from control.lifecycle import ALLOWED, FINAL, ParcelState, check

P = ParcelState


def test_happy_path_and_recirculation() -> None:
    path = [P.FREE, P.INDUCTED, P.SCANNED, P.ROUTED, P.ARMED, P.MISSED, P.RECIRCULATED, P.SCANNED,
            P.ROUTED, P.ARMED, P.SORTED, P.FREE]
    for a, b in zip(path, path[1:], strict=False):
        assert ALLOWED[a, b], (a, b)


def test_illegal_moves_refused() -> None:
    cur = np.array([P.INDUCTED, P.SORTED, P.FREE, P.ARMED], dtype=np.uint8)
    req = np.array([P.ARMED, P.ROUTED, P.SORTED, P.SORTED], dtype=np.uint8)
    assert check(cur, req).tolist() == [False, False, False, True]


def test_final_states_only_free() -> None:
    for f in (P.SORTED, P.REJECTED, P.MISSORTED):
        assert np.flatnonzero(ALLOWED[f]).tolist() == [P.FREE]
    assert P.LOST in FINAL


@given(st.lists(st.integers(-3, 20), min_size=1, max_size=50), st.integers(-3, 20))
def test_check_matches_matrix_and_rejects_bad_codes(cur: list[int], req: int) -> None:
    cur_a = np.array(cur, dtype=np.int64)
    got = check(cur_a, req)  # type: ignore[arg-type]
    for c, g in zip(cur, got.tolist(), strict=True):
        valid = 0 <= c < len(P) and 0 <= req < len(P)
        assert g == (valid and bool(ALLOWED[c, req]))
