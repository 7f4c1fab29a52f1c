"""Check digits, id keys and postal keys: the integers routing indexes by must be exact."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from control.routing.ids import key_to_id, keys_of, parcel_key, s10_check_digit, sscc_check_digit
from control.routing.postal import normalise_postal, postal_key, prefix_interval

LETTERS = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2)


def test_s10_example_from_the_upu_standard_shape() -> None:
    assert s10_check_digit("12345678") == 5
    assert parcel_key("RR123456785CN") != 0
    assert parcel_key("RR123456784CN") == 0  # wrong check digit
    assert parcel_key("rr123456785cn") == parcel_key("RR123456785CN")


def test_sscc_check_digit_known_value() -> None:
    # GS1's worked example: 0 0614141 123456789 -> check digit 0... computed by the rule.
    body = "00614141123456789"
    assert parcel_key(body + str(sscc_check_digit(body))) != 0
    assert parcel_key(body + str((sscc_check_digit(body) + 1) % 10)) == 0


@given(LETTERS, st.integers(0, 10**8 - 1), LETTERS)
def test_s10_round_trip_and_vector_path(service: str, serial: int, country: str) -> None:
    s = f"{serial:08d}"
    pid = f"{service}{s}{s10_check_digit(s)}{country}"
    k = parcel_key(pid)
    assert k != 0 and key_to_id(k) == pid
    assert int(keys_of([pid, pid.lower(), pid[:-1]])[0]) == k
    assert keys_of([pid[:-1]])[0] == 0


@given(st.integers(1, 10**17 - 1), st.integers(1, 9))
def test_sscc_round_trip_and_single_digit_errors(body: int, delta: int) -> None:
    b = f"{body:017d}"
    pid = b + str(sscc_check_digit(b))
    assert parcel_key(pid) == int(pid) and key_to_id(parcel_key(pid)) == pid
    assert int(keys_of([pid])[0]) == int(pid)
    wrong = pid[:-1] + str((int(pid[-1]) + delta) % 10)
    assert parcel_key(wrong) == 0 and keys_of([wrong])[0] == 0


@given(st.text(max_size=20))
def test_keys_never_raise_on_garbage(text: str) -> None:
    assert int(keys_of([text])[0]) == parcel_key(text) or parcel_key(text) == 0


ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@given(st.text(alphabet=ALNUM, max_size=10), st.text(alphabet=ALNUM, max_size=10))
def test_prefix_interval_contains_exactly_the_extensions(prefix: str, code: str) -> None:
    lo, hi = prefix_interval("GB", prefix)  # type: ignore[misc]
    k = postal_key("GB", code)
    assert (lo <= k <= hi) == code.startswith(prefix)
    assert not (lo <= postal_key("FR", code) <= hi)


def test_normalise_postal() -> None:
    assert normalise_postal(" sw1a-1aa ") == "SW1A1AA"
    assert normalise_postal("") == ""
    assert normalise_postal("ÄB1") is None
    assert normalise_postal("12345678901") is None
    assert postal_key("G1", "123") == -1


def test_vector_postal_keys_match_scalar(world) -> None:  # type: ignore[no-untyped-def]
    m = world.manifest
    for row in range(0, len(m), 37):
        rec = world.records[m.parcel_id(row)]
        assert int(m.postal_key[row]) == postal_key(rec.country, rec.postal_code)
    assert np.all(m.postal_key >= -1)
