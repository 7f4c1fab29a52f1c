"""Scenario files and `sortctl sim` as a user runs it: endpoints first, summary, ground truth."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from plant.errors import ConfigError
from plant.site import Site
from plc_sim.belt import BeltSettings, Conformance
from plc_sim.cli import with_boot_seed
from plc_sim.parcels import ParcelSource, read_manifest
from plc_sim.plc_logic import ConveyorProgram, DiverterProgram
from plc_sim.scenario import Scenario, load_scenario
from plc_sim.world import World

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


def test_the_plc_block_selects_how_strictly_the_belt_follows_packml(tmp_path: Path, site: Site) -> None:
    p = tmp_path / "plc.yaml"
    p.write_text("arrivals:\n  rate_per_hour: 1000\nplc:\n  packml: lenient\n")
    with pytest.raises(ConfigError) as e:
        load_scenario(p)
    assert e.value.line == 4 and "packml" in e.value.field
    assert ConveyorProgram(world_of(site, load_scenario(ROOT / "config" / "scenarios" / "demo.yaml"))).settings == (
        BeltSettings(Conformance.STRICT, 0.1)
    )  # fmt: skip
    p.write_text("arrivals:\n  rate_per_hour: 1000\nplc: {packml: reset_clears_all}\n")
    assert ConveyorProgram(world_of(site, load_scenario(p))).settings == BeltSettings(Conformance.RESET_CLEARS_ALL, 0.0)
    p.write_text("arrivals:\n  rate_per_hour: 1000\nplc: {packml: strict, acting_ms: 250}\n")
    assert ConveyorProgram(world_of(site, load_scenario(p))).settings.acting_s == 0.25


def test_every_sim_process_boots_its_plcs_with_new_boot_ids_unless_given_a_seed(site: Site) -> None:
    sc = load_scenario(ROOT / "config" / "scenarios" / "demo.yaml")
    a, b = with_boot_seed(sc, None), with_boot_seed(sc, None)
    assert a.plc.boot_seed != b.plc.boot_seed  # two processes, two power-ups
    assert ConveyorProgram(world_of(site, a)).boot_id != ConveyorProgram(world_of(site, b)).boot_id
    assert with_boot_seed(sc, 5).plc.boot_seed == 5
    fixed = sc.model_copy(update={"plc": sc.plc.model_copy(update={"boot_seed": 9})})
    assert with_boot_seed(fixed, None).plc.boot_seed == 9 and with_boot_seed(fixed, 5).plc.boot_seed == 5
    # in process (tests, harness) the boot ids follow the scenario seed: the same run every time
    assert ConveyorProgram(world_of(site, sc)).boot_id == ConveyorProgram(world_of(site, sc)).boot_id
    assert DiverterProgram(world_of(site, fixed)).boot_id == DiverterProgram(world_of(site, fixed)).boot_id


def world_of(site: Site, sc: Scenario) -> World:
    return World(site, ParcelSource(sc, site.sorter.min_gap_mm, None))


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
         "--auto-start", "--no-camera", "--json", "--ground-truth", str(gt), "--boot-seed", "42"],
        cwd=ROOT, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    endpoints = json.loads(lines[0])["endpoints"]
    assert endpoints["conveyor"]["url"].startswith("opc.tcp://127.0.0.1:") and endpoints["diverter"]["port"] > 0
    summary = json.loads(lines[-1])["summary"]
    assert summary["inducted"] > 20 and summary["belt_state"] == "EXECUTE"
    assert summary["boot_seed"] == 42
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
