"""The sort plan: which chute(s) each destination goes to, read from the CSV planners edit.

Columns (header required, any order, ``description`` optional; ``#`` lines are comments)::

    destination_id,country,postal_prefix,chutes,priority_chute,description

A row with a ``destination_id`` is an exact-destination rule (locker bank, county centre) and
must leave country and prefix empty. Otherwise ``country`` is required and ``postal_prefix``
(any length, spaces/dashes ignored) narrows it; an empty prefix is the country default.
``chutes`` is one chute id or a pool ``3|4|5``; ``priority_chute`` is optional.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from control.routing.postal import MAX_POSTAL, country_index, normalise_postal
from plant.errors import ConfigError
from plant.site import ChuteKind, Site
from plant.yamlfile import read_text

COLUMNS = ("destination_id", "country", "postal_prefix", "chutes", "priority_chute", "description")
REQUIRED = COLUMNS[:5]
MAX_DESTINATION = 32
ROUTABLE_KINDS = (ChuteKind.NORMAL, ChuteKind.PRIORITY)
# Refused before parsing: the engine packs at most 2 M candidate chutes (3-byte rows are the
# shortest possible), and a national plan of every 5-digit postcode is about 3 MB. A 50 MB
# file is a mistake (the manifest picked instead of the plan), not a plan to spend a minute on.
MAX_PLAN_BYTES = 16 << 20
MAX_CHUTE_ID = 999  # as in the site file


@dataclass(frozen=True, slots=True)
class Rule:
    """One plan row. ``prefix`` is normalised; ``line`` is where it came from (for errors)."""

    destination_id: str
    country: str
    prefix: str
    chutes: tuple[int, ...]
    priority_chute: int | None = None
    description: str = ""
    line: int = 0

    @property
    def label(self) -> str:
        """What operators call this destination (alarms, reports)."""
        if self.description or self.destination_id:
            return self.description or self.destination_id
        return f"{self.country} {self.prefix}*" if self.prefix else self.country

    @property
    def kind(self) -> str:
        if self.destination_id:
            return "destination"
        return "prefix" if self.prefix else "country"


@dataclass(frozen=True, slots=True)
class SortPlan:
    """A validated set of rules; ``source`` names the file for messages."""

    rules: tuple[Rule, ...]
    source: str = "<plan>"

    def chute_ids(self) -> set[int]:
        out: set[int] = set()
        for r in self.rules:
            out.update(r.chutes)
            if r.priority_chute is not None:
                out.add(r.priority_chute)
        return out


def _chute_list(text: str, src: str, line: int, field: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split("|")]
    if not text.strip() or any(not _is_chute_id(p) for p in parts):
        raise ConfigError(src, line, field, f"expected chute ids (1..{MAX_CHUTE_ID}) like 3 or 3|4, got {text!r}")
    ids = tuple(int(p) for p in parts)
    if len(set(ids)) != len(ids):
        raise ConfigError(src, line, field, f"chute listed twice in {text!r}")
    return ids


def _is_chute_id(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` takes "²" and "٣", which ``int`` then refuses)."""
    return len(text) <= 4 and text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_CHUTE_ID


def _parse_row(row: dict[str, str], src: str, line: int) -> Rule:
    dest = row["destination_id"].strip()
    country = row["country"].strip().upper()
    raw_prefix = row["postal_prefix"]
    chutes = _chute_list(row["chutes"], src, line, "chutes")
    prio_text = row["priority_chute"].strip()
    prio: int | None = None
    if prio_text:
        if not _is_chute_id(prio_text):
            raise ConfigError(src, line, "priority_chute", f"expected one chute id (1..{MAX_CHUTE_ID}), got {prio_text!r}")
        prio = int(prio_text)
    desc = (row.get("description") or "").strip()
    if dest:
        if len(dest) > MAX_DESTINATION or "|" in dest:
            raise ConfigError(src, line, "destination_id", f"at most {MAX_DESTINATION} characters, no '|'")
        if country or raw_prefix.strip():
            raise ConfigError(src, line, "country", "a destination rule leaves country and postal_prefix empty")
        return Rule(dest, "", "", chutes, prio, desc, line)
    if not country:
        raise ConfigError(src, line, "country", "required unless destination_id is given")
    if country_index(country) < 0:
        raise ConfigError(src, line, "country", f"not an ISO alpha-2 code: {country!r}")
    prefix = normalise_postal(raw_prefix)
    if prefix is None:
        raise ConfigError(
            src, line, "postal_prefix", f"letters and digits only, at most {MAX_POSTAL}: {raw_prefix!r}"
        )
    return Rule("", country, prefix, chutes, prio, desc, line)


def parse_plan(text: str, source: str = "<plan>") -> SortPlan:
    """Parse plan CSV text; raises ConfigError naming source, line and column."""
    if len(text) > MAX_PLAN_BYTES:
        raise ConfigError(source, None, "", _too_large(len(text)))
    # A BOM (Excel's "CSV UTF-8") may come before a comment line as well as before the header.
    # Lines are split on line ends only (not on form feeds or U+2028, as splitlines does), so
    # line numbers are the ones an editor shows.
    lines = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    # Keep physical line numbers while skipping comments and blank lines.
    numbered = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#")]
    if not numbered:
        raise ConfigError(source, None, "", "empty sort plan (no header)")
    header_line, header = numbered[0]
    cols = [c.strip() for c in _fields(header, source, header_line)]
    missing = [c for c in REQUIRED if c not in cols]
    if missing:
        raise ConfigError(source, header_line, missing[0], "missing column in header")
    unknown = [c for c in cols if c not in COLUMNS]
    if unknown:
        raise ConfigError(source, header_line, unknown[0], f"unknown column (expected {', '.join(COLUMNS)})")
    rules: list[Rule] = []
    seen: dict[tuple[str, str, str], int] = {}
    for line, text_line in numbered[1:]:
        values = _fields(text_line, source, line)
        if len(values) != len(cols):
            raise ConfigError(source, line, "", f"expected {len(cols)} fields, found {len(values)}")
        rule = _parse_row(dict(zip(cols, values, strict=True)), source, line)
        key = (rule.destination_id, rule.country, rule.prefix)
        if key in seen:
            field = "destination_id" if rule.destination_id else "postal_prefix"
            raise ConfigError(source, line, field, f"same rule as line {seen[key]}")
        seen[key] = line
        rules.append(rule)
    if not rules:
        raise ConfigError(source, header_line, "", "sort plan has no rules")
    return SortPlan(tuple(rules), source)


def _fields(text_line: str, source: str, line: int) -> list[str]:
    """One CSV line's fields; the csv module's own complaints (a NUL byte) name the line."""
    try:
        return next(csv.reader([text_line]))
    except csv.Error as exc:
        raise ConfigError(source, line, "", f"not CSV: {exc}") from None


def _too_large(size: int) -> str:
    return f"{size / 1e6:.1f} MB is more than a sort plan can be ({MAX_PLAN_BYTES / 1e6:.0f} MB); is it the right file?"


def read_plan_text(path: str | Path) -> str:
    """A plan file's text, refused by its size before it is read (see ``MAX_PLAN_BYTES``);
    unreadable or not UTF-8 is a ConfigError naming the file (and line)."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise ConfigError(p, None, "", f"cannot read: {exc.strerror or exc}") from exc
    if size > MAX_PLAN_BYTES:
        raise ConfigError(p, None, "", _too_large(size))
    return read_text(p)


def check_against_site(plan: SortPlan, site: Site) -> None:
    """Every chute a rule names must exist and be a destination (normal/priority) chute."""
    kinds = {c.id: c.kind for c in site.chutes}
    for r in plan.rules:
        for field, ids in (("chutes", r.chutes), ("priority_chute", (r.priority_chute,) if r.priority_chute else ())):
            for cid in ids:
                if cid not in kinds:
                    raise ConfigError(plan.source, r.line, field, f"chute {cid} is not in the site")
                if kinds[cid] not in ROUTABLE_KINDS:
                    raise ConfigError(
                        plan.source, r.line, field, f"chute {cid} is a {kinds[cid].value} chute, not a destination"
                    )


def load_plan(path: str | Path, site: Site | None = None) -> SortPlan:
    """Read, parse and (given a site) check a plan file."""
    p = Path(path)
    plan = parse_plan(read_plan_text(p), str(p))
    if site is not None:
        check_against_site(plan, site)
    return plan


def write_plan(rules: Iterable[Rule], path: str | Path) -> None:
    """Write rules as plan CSV (the generator and tests use it)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rules:
        w.writerow([
            r.destination_id, r.country, r.prefix, "|".join(map(str, r.chutes)),
            "" if r.priority_chute is None else r.priority_chute, r.description,
        ])
    Path(path).write_text(buf.getvalue(), encoding="utf-8")
