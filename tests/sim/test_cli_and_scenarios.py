"""Scenario files and `sortctl sim` as a user runs it: endpoints first, summary, ground truth."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from plant.errors import ConfigError
from plc_sim.parcels import read_manifest
from plc_sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((ROOT / "config" / "scenarios").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_scenarios_load(path: Path) -> None:
    sc = load_scenario(path)
    assert sc.arrivals.rate_per_hour > 0
    if sc.manifest:
        assert (path.parent / sc.manifest).exists()


def test_a_bad_scenario_names_file_line_and_field(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\narrivals:\n  rate_per_hour: 1000\nfaults:\n  - {kind: chute_full, at_s: 3}\n")
    with pytest.raises(ConfigError) as e:
        load_scenario(p)
    assert e.value.line == 5 and "faults[0]" in e.value.field and "needs a chute" in e.value.message
    p.write_text("arrivals:\n  rate_per_hour: 1000\nlabels:\n  missing: 0.7\n  double: 0.7\n")
    with pytest.raises(ConfigError, match="more than 1"):
        load_scenario(p)


def test_manifest_header_must_be_exact(tmp_path: Path) -> None:
    p = tmp_path / "m.csv"
    p.write_text("parcel_id,country\nRR123456785CN,CN\n")
    with pytest.raises(ConfigError, match="header"):
        read_manifest(p)
    m = read_manifest(ROOT / "config" / "manifest.csv")
    assert len(m.ids) > 100 and len(m.length_mm) == len(m.ids)


def test_sortctl_sim_prints_endpoints_first_and_a_summary(tmp_path: Path) -> None:
    gt = tmp_path / "truth.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "sortctl", "sim", "--virtual", "--duration", "20", "--port-base", "0",
         "--auto-start", "--no-camera", "--json", "--ground-truth", str(gt)],
        cwd=ROOT, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    endpoints = json.loads(lines[0])["endpoints"]
    assert endpoints["conveyor"]["url"].startswith("opc.tcp://127.0.0.1:") and endpoints["diverter"]["port"] > 0
    summary = json.loads(lines[-1])["summary"]
    assert summary["inducted"] > 20 and summary["belt_state"] == "EXECUTE"
    with gt.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == summary["inducted"]
    assert {r["location"] for r in rows} == {"on_belt"}  # nobody armed anything


def test_sortctl_sim_refuses_a_bad_scenario(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("arrivals:\n  rate_per_hour: -5\n")
    proc = subprocess.run(
        [sys.executable, "-m", "sortctl", "sim", "--scenario", str(p), "--port-base", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "bad.yaml:2" in proc.stderr and "rate_per_hour" in proc.stderr
