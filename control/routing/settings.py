"""Routing settings (``config/routing.yaml``): deadline margin, home country, consolidation."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from plant.site import Strict
from plant.yamlfile import load_yaml_model, yaml_model_from_text


class RoutingSettings(Strict):
    """Settings the sort plan CSV cannot express; defaults suit the example site."""

    home_country: str = Field(default="GB", description="country of an AI 420 label without AI 421")
    priority_margin_min: float = Field(
        default=60, ge=0, description="a parcel due within this many minutes goes to the priority chute"
    )
    consolidation: bool = Field(default=True, description="keep parcels of one consolidation key together")
    block: int = Field(default=65536, ge=64, description="batch block size (speed only, never results)")
    deadline_clock: Literal["wall", "manifest"] = Field(
        default="wall",
        description=(
            "what 'now' is when a service deadline is judged: 'wall' - the real clock (a live floor); "
            "'manifest' - the manifest's own time, starting at its first arrival when the service starts "
            "(replaying recorded or example data on any date)"
        ),
    )

    @field_validator("home_country")
    @classmethod
    def _iso(cls, v: str) -> str:
        v = v.strip().upper()
        if len(v) != 2 or not v.isalpha() or not v.isascii():
            raise ValueError("expected an ISO alpha-2 country code")
        return v

    @property
    def priority_margin_s(self) -> float:
        return self.priority_margin_min * 60.0


def load_settings(path: str | Path) -> RoutingSettings:
    return load_yaml_model(RoutingSettings, path)


def settings_from_text(text: str, source: str) -> RoutingSettings:
    return yaml_model_from_text(RoutingSettings, text, source)
