"""Sort plan CSV: what planners write is read exactly, mistakes are named by line and column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control.routing.plan import Rule, SortPlan, check_against_site, load_plan, parse_plan
from control.routing.postal import postal_key
from control.routing.tables import SiteTables, compile_plan
from plant.errors import ConfigError
from plant.site import Site

ROOT = Path(__file__).resolve().parents[2]
HEAD = "destination_id,country,postal_prefix,chutes,priority_chute,description\n"


def test_example_plan_loads_against_example_site(example_site: Site) -> None:
    plan = load_plan(ROOT / "config" / "sortplan.csv", example_site)
    kinds = {r.kind for r in plan.rules}
    assert kinds == {"destination", "prefix", "country"}


def test_parse_rules_and_comments() -> None:
    plan = parse_plan(HEAD + "# comment\nLB-1,,,3|4,25,locker\n,gb,sw1 a,5,,\n,DE,,6,,\n")
    a, b, c = plan.rules
    assert (a.destination_id, a.chutes, a.priority_chute, a.line) == ("LB-1", (3, 4), 25, 3)
    assert (b.country, b.prefix, b.chutes, b.priority_chute) == ("GB", "SW1A", (5,), None)
    assert c.kind == "country"


@pytest.mark.parametrize(
    ("body", "line", "field"),
    [
        (",GB,1,x,,\n", 2, "chutes"),
        (",GB,1,3,,\n,GB,1,4,,\n", 3, "postal_prefix"),
        ("LB,GB,,3,,\n", 2, "country"),
        (",,1,3,,\n", 2, "country"),
        (",G1,1,3,,\n", 2, "country"),
        (",GB,1!,3,,\n", 2, "postal_prefix"),
        (",GB,1,3|3,,\n", 2, "chutes"),
        (",GB,1,3,a,\n", 2, "priority_chute"),
        (",GB,1,3\n", 2, ""),
    ],
)
def test_malformed_plan_names_line_and_field(body: str, line: int, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_plan(HEAD + body, "p.csv")
    assert (err.value.file, err.value.line, err.value.field) == ("p.csv", line, field)


def test_header_errors() -> None:
    with pytest.raises(ConfigError, match="missing column"):
        parse_plan("country,chutes\n,1\n")
    with pytest.raises(ConfigError, match="unknown column"):
        parse_plan(HEAD.strip() + ",colour\n,GB,,3,,,red\n")


def test_plan_chutes_must_exist_and_be_destinations(example_site: Site) -> None:
    with pytest.raises(ConfigError) as err:
        check_against_site(parse_plan(HEAD + ",GB,,3,,\n,GB,1,999,,\n", "p.csv"), example_site)
    assert (err.value.line, err.value.field) == (3, "chutes")
    with pytest.raises(ConfigError, match="reject chute"):
        check_against_site(parse_plan(HEAD + ",GB,,29,,\n", "p.csv"), example_site)


ALNUM = "0123456789AB"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["GB", "DE"]), st.text(ALNUM, max_size=4)), min_size=1, max_size=30, unique=True),
    st.lists(st.tuples(st.sampled_from(["GB", "DE", "FR"]), st.text(ALNUM, max_size=7)), min_size=1, max_size=40),
)
def test_longest_prefix_wins(example_site: Site, rules: list[tuple[str, str]], codes: list[tuple[str, str]]) -> None:
    plan = SortPlan(tuple(Rule("", c, p, (1,)) for c, p in rules))
    t = compile_plan(plan, SiteTables.from_site(example_site))
    keys = np.array([postal_key(c, p) for c, p in codes], np.int64)
    got = t.rule_for_keys(keys)
    for (c, p), g, k in zip(codes, got, keys, strict=True):
        matches = [i for i, (rc, rp) in enumerate(rules) if rc == c and p.startswith(rp)]
        want = max(matches, key=lambda i: len(rules[i][1])) if matches else -1
        assert g == want
        assert t.rule_for("", int(k)) == want
