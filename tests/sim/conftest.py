"""Shared fixtures for simulator tests: the example site and small worlds built on it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from plant.site import Site, load_site
from plc_sim.parcels import ParcelSource
from plc_sim.scenario import Arrivals, LabelMix, Scenario
from plc_sim.world import World

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def site() -> Site:
    return load_site(ROOT / "config" / "site.yaml")


WorldFactory = Callable[..., World]


@pytest.fixture
def make_world(site: Site) -> WorldFactory:
    def make(
        *,
        rate: float = 3600.0,
        count: int | None = 10,
        encoder_start: int = 0,
        layout: str = "loop",
        labels: LabelMix | None = None,
        gap_violation: float = 0.0,
        seed: int = 7,
        running: bool = True,
        from_first_run: bool = False,
    ) -> World:
        s = site
        if layout != s.sorter.layout:
            s = site.model_copy(update={"sorter": site.sorter.model_copy(update={"layout": layout})})
        sc = Scenario(
            seed=seed,
            manifest=None,
            arrivals=Arrivals(rate_per_hour=rate, count=count, gap_violation=gap_violation,
                              from_first_run=from_first_run),
            labels=labels or LabelMix(),
        )
        w = World(s, ParcelSource(sc, s.sorter.min_gap_mm, None), encoder_start=encoder_start)
        w.running = running
        return w

    return make
