"""The site layout: the sorter's geometry, its chutes and diverters, and where its PLCs are.

One file (``config/site.yaml``) describes the physical sorter; the controller, the simulator and
the planner all read the same object, so a diverter moved on the floor is moved everywhere.
Positions are millimetres along the belt from the induct photo-eye, in the direction of travel.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from plant.yamlfile import load_yaml_model


class Strict(BaseModel):
    """Base for config models: unknown keys are errors (a typo must not be silently ignored).
    ``.inf`` and ``.nan`` are refused too: they pass ``gt=0`` and would make a belt of
    infinite length or a timer that never fires."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ChuteKind(StrEnum):
    NORMAL = "normal"
    REJECT = "reject"
    NO_READ = "no_read"
    OVERSIZE = "oversize"
    PRIORITY = "priority"


class Sorter(Strict):
    """Belt geometry and motion. A loop sorter brings undiverted parcels back to the scanner."""

    layout: Literal["loop", "linear"] = "loop"
    length_mm: float = Field(gt=0, description="loop circumference, or belt length if linear")
    speed_mps: float = Field(default=2.0, gt=0, le=5.0)
    counts_per_mm: float = Field(default=1.0, gt=0)
    scanner_position_mm: float = Field(ge=0)
    min_gap_mm: float = Field(default=50, ge=0)
    max_parcel_length_mm: float = Field(default=800, gt=0)
    max_parcel_width_mm: float = Field(default=600, gt=0)
    max_parcel_height_mm: float = Field(default=500, gt=0)
    max_parcel_weight_kg: float = Field(default=30, gt=0)
    recirculation_limit: int = Field(default=2, ge=0, description="laps before a parcel is rejected")


class Diverter(Strict):
    """The actuator that pushes a parcel into its chute; it fires on the PLC's encoder compare."""

    position_mm: float = Field(ge=0, description="centreline of the diverter along the belt")
    window_mm: float = Field(default=120, gt=0, description="a parcel centre within +-window/2 is taken")
    actuation_ms: float = Field(default=40, ge=0, description="time from fire to full stroke")


class Chute(Strict):
    id: int = Field(ge=1, le=999)
    name: str = ""
    kind: ChuteKind = ChuteKind.NORMAL
    capacity: int = Field(gt=0, description="parcels the chute/bag holds before it reads full")
    drain_per_min: float = Field(default=30, ge=0, description="operator emptying rate")
    fallback: tuple[int, ...] = Field(default=(), description="chutes tried in order when full")
    diverter: Diverter


class OpcuaEndpoint(Strict):
    protocol: Literal["opcua"] = "opcua"
    host: str = "127.0.0.1"
    port: int = Field(default=4840, ge=0, le=65535)
    path: str = "/sortcentre/conveyor"
    security_policy: Literal["None", "Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt"] = "None"
    username: str | None = None
    password: str | None = None
    cert_dir: str | None = Field(
        default=None, description="where the client keeps its certificate (secure policies)"
    )
    tag_map: str = "tagmap.yaml"

    @property
    def url(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}{self.path}"


class ModbusEndpoint(Strict):
    protocol: Literal["modbus"] = "modbus"
    host: str = "127.0.0.1"
    port: int = Field(default=5020, ge=0, le=65535)
    device_id: int = Field(default=1, ge=0, le=247)
    tag_map: str = "tagmap.yaml"


class Camera(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=5030, ge=0, le=65535)
    width: int = Field(default=1280, gt=0)
    height: int = Field(default=1024, gt=0)


class Plcs(Strict):
    conveyor: OpcuaEndpoint = OpcuaEndpoint()
    diverter: ModbusEndpoint = ModbusEndpoint()
    camera: Camera = Camera()


class Site(Strict):
    name: str
    sorter: Sorter
    chutes: tuple[Chute, ...] = Field(min_length=1)
    plc: Plcs = Plcs()

    @model_validator(mode="after")
    def _check(self) -> Site:
        ids = [c.id for c in self.chutes]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate chute ids {sorted(dup)}")
        known = set(ids)
        for c in self.chutes:
            bad = [f for f in c.fallback if f not in known or f == c.id]
            if bad:
                raise ValueError(f"chute {c.id}: fallback names unknown or itself: {bad}")
            if c.diverter.position_mm >= self.sorter.length_mm:
                raise ValueError(f"chute {c.id}: diverter beyond the end of the belt")
            if c.diverter.position_mm <= self.sorter.scanner_position_mm:
                raise ValueError(f"chute {c.id}: diverter is upstream of the scanner")
        kinds = {c.kind for c in self.chutes}
        if ChuteKind.REJECT not in kinds:
            raise ValueError("the site needs a chute of kind 'reject'")
        return self

    def chute(self, chute_id: int) -> Chute:
        for c in self.chutes:
            if c.id == chute_id:
                return c
        raise KeyError(chute_id)

    def chutes_of_kind(self, kind: ChuteKind) -> tuple[Chute, ...]:
        return tuple(c for c in self.chutes if c.kind == kind)

    @property
    def reject_chute(self) -> Chute:
        return self.chutes_of_kind(ChuteKind.REJECT)[0]


def load_site(path: str | Path) -> Site:
    """Load and validate a site file; raises ConfigError naming file, line and field."""
    return load_yaml_model(Site, path)
