"""Parcel label identities: UPU S10 item ids and GS1 element strings, validated or refused.

A barcode read is only a parcel identity when its symbology, grammar and check digits all
agree; anything else is a `BadRead` with a reason, counted and logged, never routed. The
functions here are pure so that they can be property-tested exhaustively.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from vision.countries import ALPHA2, NUMERIC, NUMERIC_TO_ALPHA2

GS = "\x1d"  # ASCII group separator: how decoders render a GS1 FNC1 inside the data

IdentityKind = Literal["s10", "sscc"]
Symbology = Literal["code128", "datamatrix", "qr"]
SYMBOLOGIES: tuple[Symbology, ...] = ("code128", "datamatrix", "qr")
BadReason = Literal[
    "symbology",  # not a symbology parcel labels use, or symbology and content disagree
    "grammar",  # not an S10 id nor a well-formed GS1 element string
    "check_digit",  # well formed, but a check digit does not match
    "country",  # not an ISO 3166 country
    "unknown_ai",  # a GS1 AI we do not know the length of: the rest cannot be split safely
    "ambiguous",  # a variable-length field may have swallowed a separator and an SSCC
    "no_id",  # valid GS1 but carries no SSCC (AI 00)
    "conflict",  # the same AI twice with different values, or 420 vs 421 disagree
]


@dataclass(frozen=True, slots=True)
class Identity:
    """A parcel identity fit to route on; `id` is the manifest key."""

    kind: IdentityKind
    id: str  # S10: 13 characters; SSCC: 18 digits
    postal_code: str | None = None  # ship-to postal code, AI 420 (or the postal part of 421)
    country: str | None = None  # ship-to country (alpha-2) from AI 421
    elements: tuple[tuple[str, str], ...] = ()  # GS1 (AI, value) pairs, label order, trusted
    # Variable fields left out because a dropped separator could have merged them with others:
    # kept for the log, never used for routing (a missing postal code beats a wrong one).
    uncertain: tuple[tuple[str, str], ...] = ()

    @property
    def origin(self) -> str | None:
        """The S10 country of origin (the id's last two letters)."""
        return self.id[-2:] if self.kind == "s10" else None


@dataclass(frozen=True, slots=True)
class BadRead:
    """A decoded string that is not an identity, and why; logged and counted, never routed."""

    text: str
    symbology: str
    reason: BadReason
    detail: str = ""


# ---------------------------------------------------------------------------------- S10

_S10_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)
_S10_RE = re.compile(r"[A-Z]{2}[0-9]{9}[A-Z]{2}")


def s10_check_digit(serial: str) -> int:
    """UPU S10 check digit of an 8-digit serial: C = 11 - (sum w*d mod 11); 10 -> 0, 11 -> 5."""
    if len(serial) != 8 or not serial.isascii() or not serial.isdigit():
        raise ValueError(f"S10 serial must be 8 digits, got {serial!r}")
    c = 11 - sum(w * int(d) for w, d in zip(_S10_WEIGHTS, serial, strict=True)) % 11
    return 0 if c == 10 else 5 if c == 11 else c


def s10_check_digits(serials: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The S10 check digit of many 8-digit serials at once (generators of test and sim ids)."""
    sn = np.asarray(serials, dtype=np.int64)
    if sn.size and (sn.min() < 0 or sn.max() > 99_999_999):
        raise ValueError("S10 serials are 8 digits")
    digits = (sn[:, None] // 10 ** np.arange(7, -1, -1, dtype=np.int64)) % 10
    c = 11 - (digits @ np.asarray(_S10_WEIGHTS, dtype=np.int64)) % 11
    return np.where(c == 10, 0, np.where(c == 11, 5, c)).astype(np.int64)


def make_s10(service: str, serial: int | str, country: str) -> str:
    """Build a valid S10 id, e.g. make_s10("RR", 12345678, "CN") == "RR123456785CN"."""
    s = f"{int(serial):08d}" if isinstance(serial, int) else serial
    if not re.fullmatch(r"[A-Z]{2}", service):
        raise ValueError(f"service indicator must be two capital letters, got {service!r}")
    if country not in ALPHA2:
        raise ValueError(f"{country!r} is not an ISO 3166 alpha-2 country")
    return f"{service}{s}{s10_check_digit(s)}{country}"


def parse_s10(text: str, symbology: str = "code128") -> Identity | BadRead:
    if not _S10_RE.fullmatch(text):
        return BadRead(text, symbology, "grammar", "not AA999999999AA")
    if text[11:] not in ALPHA2:
        return BadRead(text, symbology, "country", f"{text[11:]} is not ISO 3166")
    if s10_check_digit(text[2:10]) != int(text[10]):
        return BadRead(text, symbology, "check_digit", "S10 mod-11 check digit")
    return Identity("s10", text)


# ---------------------------------------------------------------------------------- GS1


def gs1_check_digit(body: str) -> int:
    """GS1 mod-10 check digit of the digits before it (weights 3,1,3,... from the right)."""
    if not body.isascii() or not body.isdigit():
        raise ValueError(f"GS1 check digit needs digits, got {body!r}")
    s = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - s % 10) % 10


def make_sscc(extension: int, company_and_serial: int | str) -> str:
    """Build a valid 18-digit SSCC from its extension digit and 16 following digits."""
    body = f"{extension:d}{int(company_and_serial):016d}"
    if len(body) != 17:
        raise ValueError("SSCC body must be 17 digits")
    return body + str(gs1_check_digit(body))


@dataclass(frozen=True, slots=True)
class _AI:
    fixed: int | None  # exact value length, or None if variable
    max_len: int
    numeric: bool
    check: bool = False  # value ends in a GS1 mod-10 check digit
    prefix_digits: int = 0  # leading digits of a variable field (421: country)


# GS1 General Specifications, AI table (subset a parcel label carries). A label with any other
# AI is refused: without its length the rest of the string cannot be split safely.
_AIS: dict[str, _AI] = {
    "00": _AI(18, 18, True, check=True),  # SSCC
    "01": _AI(14, 14, True, check=True),  # GTIN
    "02": _AI(14, 14, True, check=True),  # GTIN of contained items
    "10": _AI(None, 20, False),  # batch / lot
    "11": _AI(6, 6, True),  # production date YYMMDD
    "13": _AI(6, 6, True),  # packaging date
    "15": _AI(6, 6, True),  # best before
    "17": _AI(6, 6, True),  # expiry
    "21": _AI(None, 20, False),  # serial
    "37": _AI(None, 8, True),  # count of contained items
    **{f"330{n}": _AI(6, 6, True) for n in range(6)},  # logistic weight, kg
    "400": _AI(None, 30, False),  # customer's order number
    "401": _AI(None, 30, False),  # GINC consignment
    "402": _AI(17, 17, True, check=True),  # GSIN shipment
    "403": _AI(None, 30, False),  # routing code
    "410": _AI(13, 13, True, check=True),  # ship-to GLN
    "411": _AI(13, 13, True, check=True),  # bill-to GLN
    "413": _AI(13, 13, True, check=True),  # ship-for GLN
    "420": _AI(None, 20, False),  # ship-to postal code
    "421": _AI(None, 12, False, prefix_digits=3),  # ISO 3166 numeric country + postal code
}
# GS1 AI encodable character set 82.
_CSET82 = re.compile(r"[!\"%&'()*+,\-./0-9:;<=>?A-Z_a-z]+")
_AIM_GS1 = {"]C1": "code128", "]d2": "datamatrix", "]Q3": "qr", "]e0": "databar", "]J1": "dotcode"}
_AIM_RE = re.compile(r"\][A-Za-z][0-9A-Za-z]")


class GS1Error(ValueError):
    """An element string that is not valid GS1; `reason` says which kind of failure."""

    def __init__(self, reason: BadReason, detail: str) -> None:
        super().__init__(detail)
        self.reason: BadReason = reason
        self.detail = detail


def _match_ai(s: str, i: int) -> str:
    for n in (2, 3, 4):
        if s[i : i + n] in _AIS:
            return s[i : i + n]
    raise GS1Error("unknown_ai", f"unknown AI at {s[i : i + 4]!r}")


def _check_value(ai: str, value: str) -> None:
    spec = _AIS[ai]
    if not value or len(value) > spec.max_len or (spec.fixed and len(value) != spec.fixed):
        raise GS1Error("grammar", f"AI {ai}: bad length {len(value)}")
    if spec.numeric:
        if not (value.isascii() and value.isdigit()):
            raise GS1Error("grammar", f"AI {ai}: not numeric")
    elif not _CSET82.fullmatch(value):
        raise GS1Error("grammar", f"AI {ai}: character outside GS1 set 82")
    if spec.prefix_digits:
        head, tail = value[: spec.prefix_digits], value[spec.prefix_digits :]
        if not head.isdigit() or len(head) < spec.prefix_digits:
            raise GS1Error("grammar", f"AI {ai}: needs {spec.prefix_digits} leading digits")
        if not tail:
            raise GS1Error("grammar", f"AI {ai}: empty postal code")
        if head not in NUMERIC:
            raise GS1Error("country", f"AI {ai}: {head} is not an ISO 3166 numeric country")
    if ai in ("11", "13", "15", "17") and not (1 <= int(value[2:4]) <= 12 and int(value[4:]) <= 31):
        raise GS1Error("grammar", f"AI {ai}: not a date")
    if spec.check and gs1_check_digit(value[:-1]) != int(value[-1]):
        raise GS1Error("check_digit", f"AI {ai}: mod-10 check digit")


def _parse_raw(s: str) -> list[tuple[str, str, bool]]:
    """(AI, value, terminated) for each element; variable fields end at GS or at the end."""
    out: list[tuple[str, str, bool]] = []
    i = 0
    while i < len(s):
        ai = _match_ai(s, i)
        i += len(ai)
        spec = _AIS[ai]
        if spec.fixed is not None:
            value = s[i : i + spec.fixed]
            i += spec.fixed
            _check_value(ai, value)
            # A separator after a fixed field is redundant (or required by AIs outside the
            # predefined-length table, like 402); either way the length fixes the boundary,
            # so a dropped one cannot move it.
            if i < len(s) and s[i] == GS:
                i += 1
            out.append((ai, value, True))
        else:
            end = s.find(GS, i)
            terminated = end >= 0
            end = end if terminated else len(s)
            value = s[i:end]
            _check_value(ai, value)
            i = end + 1 if terminated else end
            out.append((ai, value, terminated))
    return out


def _hidden_elements(ai: str, value: str) -> list[tuple[str, str]] | None:
    """Elements a variable value could hide if a decoder dropped the GS inside it, or None.

    Such a value cannot be trusted: it may be the real value, or a shorter value followed by
    other fields. Returns the first alternative found (for the log).
    """
    spec = _AIS[ai]
    for k in range(spec.prefix_digits + 1, len(value)):
        try:
            _check_value(ai, value[:k])
            return [(a, v) for a, v, _ in _parse_raw(value[k:])]
        except GS1Error:
            continue
    return None


def _parse_hri(s: str) -> list[tuple[str, str]]:
    if not re.fullmatch(r"(\([0-9]{2,4}\)[^()]+)+", s):
        raise GS1Error("grammar", "not a bracketed element string")
    out: list[tuple[str, str]] = []
    for ai, value in re.findall(r"\(([0-9]{2,4})\)([^()]+)", s):
        if ai not in _AIS:
            raise GS1Error("unknown_ai", f"unknown AI ({ai})")
        _check_value(ai, value)
        out.append((ai, value))
    return out


@dataclass(frozen=True, slots=True)
class GS1Elements:
    """A parsed element string: the fields to trust, and the AIs whose value cannot be."""

    elements: tuple[tuple[str, str], ...]
    uncertain: tuple[tuple[str, str], ...] = ()  # variable fields that may hide a lost GS


def parse_gs1(text: str) -> GS1Elements:
    """Split a GS1 element string into (AI, value) pairs, checking every field; GS1Error if not.

    Accepts the raw form with GS separators (a leading symbology identifier or FNC1/GS is
    stripped) and the human-readable "(00)...(420)..." form, whose brackets delimit fields.
    A variable-length value that could also be read as a shorter value followed by valid
    fields (what a decoder that drops a separator produces) goes to `uncertain`, never to
    `elements`; if the hidden fields would include an SSCC the whole string is refused.
    """
    s = text
    if s[:3] in _AIM_GS1:
        s = s[3:]
    uncertain: list[tuple[str, str]] = []
    if s.startswith("("):
        pairs = _parse_hri(s)
    else:
        s = s.removeprefix(GS).removesuffix(GS)
        if not s:
            raise GS1Error("grammar", "empty element string")
        pairs = []
        for ai, value, _ in _parse_raw(s):
            if _AIS[ai].fixed is None and (hidden := _hidden_elements(ai, value)) is not None:
                if any(a == "00" for a, _ in hidden):
                    raise GS1Error("ambiguous", f"AI {ai} value {value!r} may hide an SSCC")
                uncertain.append((ai, value))
            else:
                pairs.append((ai, value))
    seen: dict[str, str] = {}
    for ai, value in [*pairs, *uncertain]:
        if seen.setdefault(ai, value) != value:
            raise GS1Error("conflict", f"AI {ai} twice with different values")
    return GS1Elements(tuple(pairs), tuple(uncertain))


def gs1_element_string(elements: Sequence[tuple[str, str]]) -> str:
    """Raw element string (no leading FNC1): GS after every variable field but the last."""
    out: list[str] = []
    for n, (ai, value) in enumerate(elements):
        if ai not in _AIS:
            raise ValueError(f"unknown AI {ai}")
        _check_value(ai, value)
        out.append(ai + value)
        if n < len(elements) - 1 and _AIS[ai].fixed is None:
            out.append(GS)
    return "".join(out)


def gs1_hri(elements: Sequence[tuple[str, str]]) -> str:
    """Human-readable form "(00)123...(420)12345", as printed under a label and fed to writers."""
    return "".join(f"({ai}){value}" for ai, value in elements)


# ---------------------------------------------------------------------------------- both


def _gs1_identity(body: str, text: str, symbology: str) -> Identity | BadRead:
    try:
        parsed = parse_gs1(body)
    except GS1Error as exc:
        return BadRead(text, symbology, exc.reason, exc.detail)
    d = dict(parsed.elements)
    if "00" not in d:
        return BadRead(text, symbology, "no_id", "GS1 string without AI 00 (SSCC)")
    postal, country = d.get("420"), None
    if "421" in d:
        country = NUMERIC_TO_ALPHA2[d["421"][:3]]
        if postal is not None and postal != d["421"][3:]:
            return BadRead(text, symbology, "conflict", "AI 420 and AI 421 postal codes differ")
        postal = d["421"][3:]
    return Identity(
        "sscc",
        d["00"],
        postal_code=postal,
        country=country,
        elements=parsed.elements,
        uncertain=parsed.uncertain,
    )


def parse_identity(text: str, symbology: str, gs1: bool | None = None) -> Identity | BadRead:
    """Turn one decoded string into a parcel identity, or say why it is not one.

    `symbology` is "code128", "datamatrix" or "qr"; `gs1` is True when the decoder saw FNC1
    in first position (symbology identifier ]C1/]d2/]Q3), False when it saw a plain symbol,
    None when the decoder cannot tell (pyzbar). A leading AIM symbology identifier in `text`
    decides `gs1` and must agree with `symbology`.
    """
    if symbology not in SYMBOLOGIES:
        return BadRead(text, symbology, "symbology", "parcel labels use Code 128, DataMatrix or QR")
    body = text
    if _AIM_RE.match(text):
        aim, body = text[:3], text[3:]
        expected = {"code128": "]C", "datamatrix": "]d", "qr": "]Q"}[symbology]
        if aim[:2] != expected:
            return BadRead(text, symbology, "symbology", f"identifier {aim} on {symbology}")
        gs1 = aim in _AIM_GS1
    if not gs1 and _S10_RE.fullmatch(body):
        return parse_s10(body, symbology)
    if not gs1 and not body[:1].isdigit() and body[:1] not in ("(", GS):
        return BadRead(text, symbology, "grammar", "neither an S10 id nor a GS1 element string")
    # A GS1-flagged symbol must hold an element string. A plain one may too: pyzbar cannot
    # report the flag, and being stricter with zxing-cpp would only make the engines disagree.
    return _gs1_identity(body, text, symbology)
