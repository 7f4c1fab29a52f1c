"""Property tests for parcel identities: S10 and GS1 parse back exactly, and corruption is refused."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from vision.countries import ALPHA2, ALPHA2_TO_NUMERIC, NUMERIC
from vision.labels import (
    GS,
    BadRead,
    Identity,
    gs1_check_digit,
    gs1_element_string,
    gs1_hri,
    make_s10,
    make_sscc,
    parse_gs1,
    parse_identity,
    s10_check_digit,
    s10_check_digits,
)

UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
services = st.text(UPPER, min_size=2, max_size=2)
countries = st.sampled_from(sorted(ALPHA2))
serials = st.integers(0, 99_999_999)
s10_ids = st.builds(make_s10, services, serials, countries)
ssccs = st.builds(make_sscc, st.integers(0, 9), st.integers(0, 10**16 - 1))
cset82 = "!\"%&'*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
postals = st.text(cset82, min_size=1, max_size=9)
glns = st.integers(0, 10**12 - 1).map(lambda n: f"{n:012d}").map(lambda b: b + str(gs1_check_digit(b)))


def test_s10_reference_example() -> None:
    # The UPU S10 standard's own worked example.
    assert s10_check_digit("47312482") == 9  # RA473124829GB
    assert make_s10("RR", 12345678, "CN") == "RR123456785CN"
    assert parse_identity("RR123456785CN", "code128") == Identity("s10", "RR123456785CN")


def test_country_list_is_the_real_one() -> None:
    assert len(ALPHA2) == 249 and len(NUMERIC) == 249
    assert {"CN", "GB", "DE", "US", "FR", "SE"} <= ALPHA2
    assert not {"UK", "EU", "XX", "ZZ", "AA"} & ALPHA2  # common non-ISO or user-assigned codes
    assert ALPHA2_TO_NUMERIC["GB"] == "826" and ALPHA2_TO_NUMERIC["DE"] == "276"


@given(services, serials, countries)
def test_s10_round_trip(service: str, serial: int, country: str) -> None:
    text = make_s10(service, serial, country)
    got = parse_identity(text, "code128")
    assert isinstance(got, Identity)
    assert (got.kind, got.id, got.origin) == ("s10", text, country)
    assert got.id[:2] == service and int(got.id[2:10]) == serial


def _residue(serial: str) -> int:
    return sum(w * int(d) for w, d in zip((8, 6, 4, 2, 3, 5, 9, 7), serial, strict=True)) % 11


def test_s10_single_digit_substitution_exhaustively() -> None:
    """Proof by exhaustion of the S10 check digit's power against one wrong digit.

    Each weight is non-zero mod 11 and 11 is prime, so changing one serial digit by d
    (1 <= |d| <= 9) always changes the weighted sum mod 11. The check digit is a function of
    that residue r, injective except that r = 0 (11 -> 5) and r = 6 (5) share digit 5. So a
    single serial-digit substitution is caught unless it moves the residue between 0 and 6;
    a substitution of the check digit itself is always caught.
    """
    weights = (8, 6, 4, 2, 3, 5, 9, 7)
    for w, old, new in itertools.product(weights, range(10), range(10)):
        if old != new:
            assert (w * (new - old)) % 11 != 0
    digit_of = {r: s10_check_digit_from_residue(r) for r in range(11)}
    collisions = {(a, b) for a in range(11) for b in range(11) if a != b and digit_of[a] == digit_of[b]}
    assert collisions == {(0, 6), (6, 0)}
    # The blind spot is real: RR000000005CN and RR900000005CN are both valid.
    assert isinstance(parse_identity("RR000000005CN", "code128"), Identity)
    assert isinstance(parse_identity("RR900000005CN", "code128"), Identity)


def s10_check_digit_from_residue(r: int) -> int:
    c = 11 - r
    return 0 if c == 10 else 5 if c == 11 else c


@given(s10_ids, st.integers(2, 10), st.integers(1, 9))
def test_s10_digit_substitution_caught_outside_the_blind_spot(text: str, pos: int, delta: int) -> None:
    new_digit = (int(text[pos]) + delta) % 10
    changed = text[:pos] + str(new_digit) + text[pos + 1 :]
    got = parse_identity(changed, "code128")
    if pos == 10:
        assert isinstance(got, BadRead) and got.reason == "check_digit"
        return
    blind = {_residue(text[2:10]), _residue(changed[2:10])} == {0, 6}
    assert isinstance(got, BadRead) == (not blind)


@given(s10_ids, st.integers(11, 12), st.sampled_from(UPPER))
def test_s10_country_letter_change_needs_a_real_country(text: str, pos: int, letter: str) -> None:
    changed = text[:pos] + letter + text[pos + 1 :]
    got = parse_identity(changed, "code128")
    if changed[11:] in ALPHA2:
        assert isinstance(got, Identity) and got.id == changed
    else:
        assert isinstance(got, BadRead) and got.reason == "country"


@given(s10_ids, st.integers(0, 12), st.sampled_from("0123456789" + UPPER + "-a"))
def test_any_s10_substitution_never_gives_another_id_unless_valid(text: str, pos: int, ch: str) -> None:
    changed = text[:pos] + ch + text[pos + 1 :]
    assume(changed != text)
    got = parse_identity(changed, "code128")
    if isinstance(got, Identity):  # only the documented blind spots survive
        assert got.id == changed and changed[11:] in ALPHA2
        assert pos < 2 or pos >= 11 or {_residue(text[2:10]), _residue(changed[2:10])} <= {0, 6}


@given(ssccs, st.integers(0, 17), st.integers(1, 9))
def test_sscc_any_single_digit_substitution_is_caught(sscc: str, pos: int, delta: int) -> None:
    changed = sscc[:pos] + str((int(sscc[pos]) + delta) % 10) + sscc[pos + 1 :]
    got = parse_identity("]C100" + changed, "code128")
    assert isinstance(got, BadRead) and got.reason == "check_digit"


# A GS1 label: the SSCC plus some of the routing fields, in any order.
@st.composite
def gs1_labels(draw: st.DrawFn) -> list[tuple[str, str]]:
    fields = [("00", draw(ssccs))]
    if draw(st.booleans()):
        fields.append(("420", draw(postals)))
    if draw(st.booleans()):
        fields.append(("421", draw(st.sampled_from(sorted(NUMERIC))) + draw(postals)))
    if draw(st.booleans()):
        fields.append(("401", draw(st.text(cset82, min_size=1, max_size=30))))
    if draw(st.booleans()):
        fields.append(("403", draw(st.text(cset82, min_size=1, max_size=30))))
    if draw(st.booleans()):
        fields.append(("410", draw(glns)))
    return draw(st.permutations(fields))


def _expected_postal(fields: list[tuple[str, str]]) -> tuple[str | None, str | None]:
    d = dict(fields)
    if "421" in d:
        return d["421"][3:], d["421"][:3]
    return d.get("420"), None


@settings(max_examples=300)
@given(gs1_labels(), st.sampled_from([("code128", "]C1"), ("datamatrix", "]d2"), ("qr", "]Q3"), ("code128", "")]))
def test_gs1_round_trip_every_field_exact_or_withheld(
    fields: list[tuple[str, str]], sym: tuple[str, str]
) -> None:
    d = dict(fields)
    text = sym[1] + gs1_element_string(fields)
    got = parse_identity(text, sym[0])
    conflict = "420" in d and "421" in d and d["420"] != d["421"][3:]
    if conflict and isinstance(got, BadRead):
        assert got.reason == "conflict"
        return
    if isinstance(got, BadRead):  # only an SSCC possibly hidden in a run-on field is refused
        assert got.reason == "ambiguous"
        return
    assert got.kind == "sscc" and got.id == d["00"]
    # Each field is either read exactly, or withheld as uncertain; never a different value.
    assert set(got.elements) | set(got.uncertain) == set(fields)
    assert not set(got.elements) & set(got.uncertain)
    if got.postal_code is not None:
        assert got.postal_code in {d.get("420"), d.get("421", "")[3:]}
    if got.country is not None:
        assert ALPHA2_TO_NUMERIC[got.country] == d["421"][:3]


@given(gs1_labels())
@example(fields=[("00", "000000000000000000"), ("403", "0100")])  # a routing code that may hide AI 10
def test_gs1_round_trip_is_exact_when_fixed_fields_end_it(fields: list[tuple[str, str]]) -> None:
    # Our labels put variable fields first, each closed by GS, and the SSCC last. With one
    # variable field only, nothing can hide: the read is exact.
    var = [f for f in fields if f[0] in ("420", "421", "401", "403")][:1]
    fixed = [f for f in fields if f[0] in ("00", "410")]
    got = parse_identity("]C1" + gs1_element_string([*var, *fixed]), "code128")
    if not var or not _hides(*var[0]):
        assert isinstance(got, Identity) and set(got.elements) == {*var, *fixed}


def _hides(ai: str, value: str) -> bool:
    """Whether the variable field could also be read as a shorter value plus other fields."""
    return bool(parse_gs1(ai + value).uncertain)


@given(gs1_labels())
def test_gs1_hri_form_parses_to_the_same_fields(fields: list[tuple[str, str]]) -> None:
    got = parse_identity(gs1_hri(fields), "code128")
    d = dict(fields)
    if "420" in d and "421" in d and d["420"] != d["421"][3:]:
        assert isinstance(got, BadRead) and got.reason == "conflict"
    else:
        assert isinstance(got, Identity) and got.elements == tuple(fields) and got.uncertain == ()


@settings(max_examples=400)
@given(gs1_labels(), st.data())
def test_dropped_separator_never_yields_a_wrong_field(fields: list[tuple[str, str]], data: st.DataObject) -> None:
    text = gs1_element_string(fields)
    gaps = [i for i, c in enumerate(text) if c == GS]
    if not gaps:
        return
    drop = data.draw(st.sets(st.sampled_from(gaps), min_size=1))
    broken = "".join(c for i, c in enumerate(text) if i not in drop)
    got = parse_identity(broken, "code128")
    if isinstance(got, BadRead):
        return
    d = dict(fields)
    assert got.id == d["00"]
    for ai, value in got.elements:  # every trusted field is one the label really carries
        assert (ai, value) in fields
    if got.postal_code is not None:
        assert got.postal_code in {d.get("420"), d.get("421", "")[3:]}


@pytest.mark.parametrize(
    ("text", "symbology", "reason"),
    [
        ("RR123456784CN", "code128", "check_digit"),
        ("RR123456785XX", "code128", "country"),
        ("RR12345678CN", "code128", "grammar"),
        ("RR123456785CN", "ean13", "symbology"),
        ("]Q3RR123456785CN", "code128", "symbology"),
        ("]C1RR123456785CN", "code128", "unknown_ai"),  # GS1 flag on a non-GS1 content
        ("]C100123456789012345670", "code128", "check_digit"),
        ("]C14201234500123456789012345675", "code128", "grammar"),  # 420 swallowed the SSCC
        ("]C1401AB00123456789012345675", "code128", "ambiguous"),  # 401 may hide an SSCC
        ("]C14011234", "code128", "no_id"),
        ("]C100123456789012345675" + "421999ABC", "code128", "country"),
        ("]C100123456789012345675" + "00" + make_sscc(0, 1), "code128", "conflict"),
        ("]C100123456789012345675" + "4101234567890123", "code128", "check_digit"),
        ("]C19912", "code128", "unknown_ai"),
        ("]C1", "code128", "grammar"),
        ("", "qr", "grammar"),
    ],
)
def test_bad_reads_say_why(text: str, symbology: str, reason: str) -> None:
    got = parse_identity(text, symbology)
    assert isinstance(got, BadRead), got
    assert got.reason == reason and got.text == text


def test_ship_to_fields() -> None:
    got = parse_identity(
        "]d2420SW1A1AA" + GS + "403RT-7" + GS + "00" + make_sscc(3, 4012345000001), "datamatrix"
    )
    assert isinstance(got, Identity)
    assert got.postal_code == "SW1A1AA" and got.country is None
    got = parse_identity("]Q300" + make_sscc(0, 1) + "421276" + "10115", "qr")
    assert isinstance(got, Identity) and (got.country, got.postal_code) == ("DE", "10115")


@given(st.lists(st.integers(0, 99_999_999), min_size=1, max_size=50))
def test_vectorised_s10_check_digits_agree_with_the_scalar_rule(serials: list[int]) -> None:
    got = s10_check_digits(np.asarray(serials, dtype=np.int64)).tolist()
    assert got == [s10_check_digit(f"{s:08d}") for s in serials]
