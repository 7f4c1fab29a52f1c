"""Shared fixtures: a small generated world (site, plan, manifest on disk) for routing tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from control.routing.manifest import Manifest, load_manifest
from control.routing.plan import SortPlan
from harness.generate import (
    generate_manifest,
    generate_plan,
    synthetic_site,
    write_manifest_csv,
)
from harness.reference import Record, read_records
from plant.site import Site, load_site

ROOT = Path(__file__).resolve().parents[2]


@dataclass(repr=False)
class World:
    site: Site
    plan: SortPlan
    manifest: Manifest
    records: dict[str, Record]
    path: Path

    def __repr__(self) -> str:  # short: hypothesis prints the arguments of a failing example
        return f"World({self.site.name!r}, {len(self.manifest)} rows, {len(self.plan.rules)} rules)"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # hypothesis's printer, which reads dataclass fields
        p.text(repr(self))


def make_world(tmp: Path, *, n: int = 400, capacity: int = 8, chutes: int = 12, rules: int = 40, seed: int = 3) -> World:
    site = synthetic_site(chutes, capacity=capacity)
    plan = generate_plan(site, rules, seed=seed)
    table = generate_manifest(plan, n, seed=seed, mean_group=3.0, group_share=0.5, urgent_share=0.1)
    path = tmp / f"manifest-{seed}.csv"
    write_manifest_csv(table, path)
    return World(site, plan, load_manifest(path), read_records(path), path)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="session")
def example_site() -> Site:
    return load_site(ROOT / "config" / "site.yaml")
