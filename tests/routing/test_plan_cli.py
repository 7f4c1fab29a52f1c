"""`sortctl plan` end to end on the example data: report, JSON, chart, and bad input -> exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sortctl.cli import main

ROOT = Path(__file__).resolve().parents[2]
ARGS = [
    "plan", "--site", str(ROOT / "config/site.yaml"), "--plan", str(ROOT / "config/sortplan.csv"),
    "--manifest", str(ROOT / "config/manifest.csv"), "--settings", str(ROOT / "config/routing.yaml"),
]


def test_json_report_accounts_for_every_parcel(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main([*ARGS, "--json", "--drain-rate", "0.5", "--chart", str(tmp_path / "fill.png")]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["parcels"] == 5000 == sum(rep["reasons"].values())
    assert sum(c["parcels"] for c in rep["chutes"]) == 5000
    assert rep["overflow_events"] == rep["reasons"].get("FALLBACK_FULL", 0) > 0
    assert all(c["peak_fill"] <= c["capacity"] for c in rep["chutes"] if c["kind"] != "reject")
    assert (tmp_path / "fill.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_plan_exits_2_naming_line_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "plan.csv"
    bad.write_text("destination_id,country,postal_prefix,chutes,priority_chute\n,GB,,3|99,\n")
    args = [*ARGS]
    args[args.index("--plan") + 1] = str(bad)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "plan.csv:2" in err and "chutes" in err


def test_every_split_group_has_a_cause(capsys: pytest.CaptureFixture[str]) -> None:
    # Default drain rates: no chute fills, yet groups split; each split names its cause
    # (a member due for the priority chute, or an exception such as oversize).
    assert main([*ARGS, "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["overflow_events"] == 0
    groups = rep["groups"]
    assert groups["split"] > 0
    assert "other" not in groups["split_because"] and "chute_full_or_unavailable" not in groups["split_because"]
    causes = groups["split_because"]
    assert max(causes.values()) <= groups["split"] <= sum(causes.values())
