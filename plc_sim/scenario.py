"""Scenario files: what arrives at the induct, how labels look, and which faults happen when.

A scenario is data (``config/scenarios/*.yaml``), validated once with file/line/field errors;
the simulator never reads raw dicts. Fractions are of inducted parcels; times are seconds of
simulated time from the start of the run. The ``plc`` block says how strictly the simulated
conveyor PLC follows PackML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from plant.site import Strict
from plant.yamlfile import load_yaml_model

FaultKind = Literal[
    "jam",  # a parcel blocks a photo-eye: the belt stops, fault latched until Reset
    "estop",  # emergency stop pressed: belt stops, fault latched until Reset
    "chute_full",  # operators stop emptying a chute and it reads full
    "chute_disabled",  # chute switched off at the HMI: arms for it are refused
    "diverter_stuck",  # the diverter fires but does not move: parcels ride on
    "encoder_glitch",  # the encoder count jumps by `counts`
    "plc_drop",  # the PLC drops every client connection (`plc`: conveyor | diverter | both)
    "plc_restart",  # warm restart: the PLC server stops and starts again after `duration_s`; memory kept
    "plc_power_cycle",  # cold restart: the PLC is off for `duration_s`, boots with a new boot id, memory zero
    "plc_slow",  # the PLC answers late: `delay_ms` added to every response for `duration_s`
    "camera_stall",  # the camera renders nothing for `duration_s` (frames dropped)
]


class Range(Strict):
    """A uniform distribution over [min, max]."""

    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.max < self.min:
            raise ValueError("max is below min")
        return self


class LabelMix(Strict):
    """Fractions of parcels by label kind; the rest carry one good, known label."""

    missing: float = Field(default=0.0, ge=0, le=1, description="no label at all (no-read)")
    damaged: float = Field(default=0.0, ge=0, le=1, description="label torn or smeared")
    double: float = Field(default=0.0, ge=0, le=1, description="two labels of different parcels")
    unknown_id: float = Field(default=0.0, ge=0, le=1, description="a valid id not in the manifest")

    @model_validator(mode="after")
    def _sum(self) -> LabelMix:
        if self.missing + self.damaged + self.double + self.unknown_id > 1.0 + 1e-9:
            raise ValueError("label fractions add up to more than 1")
        return self


Symbology = Literal["code128", "datamatrix", "qr"]


def _code128_only() -> dict[Symbology, float]:
    return {"code128": 1.0}


class LabelQuality(Strict):
    """How hard the camera's view is: a severity in [0, 1] per parcel, drawn uniformly."""

    severity: Range = Range(min=0.0, max=0.2)
    symbology: dict[Symbology, float] = Field(default_factory=_code128_only)

    @model_validator(mode="after")
    def _weights(self) -> LabelQuality:
        if not self.symbology or sum(self.symbology.values()) <= 0:
            raise ValueError("symbology weights must be positive")
        if self.severity.min < 0 or self.severity.max > 1:
            raise ValueError("severity lies in [0, 1]")
        return self


class Arrivals(Strict):
    """The parcel stream at the induct."""

    rate_per_hour: float = Field(gt=0, le=200_000)
    process: Literal["regular", "poisson"] = "regular"
    count: int | None = Field(default=None, ge=0, description="stop inducting after this many")
    length_mm: Range = Range(min=80, max=160)
    width_mm: Range = Range(min=60, max=120)
    gap_mm: Range | None = Field(
        default=None, description="spacing the induct leaves after a parcel; default min_gap..+40"
    )
    gap_violation: float = Field(
        default=0.0, ge=0, le=1, description="fraction inducted closer than the site's min gap"
    )
    dimensions: Literal["scenario", "manifest"] = Field(
        default="scenario", description="lengths from length_mm, or from the manifest rows"
    )
    from_first_run: bool = Field(
        default=False,
        description="arrival times count from the belt's first run with the induct enabled, not from the "
        "simulator's start (parcels do not pile up while the controller starts)",
    )


class FaultSpec(Strict):
    """One scheduled fault. Which fields matter depends on `kind` (see docs/simulator.md)."""

    kind: FaultKind
    at_s: float = Field(ge=0)
    duration_s: float = Field(default=0.0, ge=0, description="0 = until cleared (or instant)")
    chute: int | None = None
    eye: Literal["induct", "scanner"] | int = "induct"  # int = chute id's entry eye
    counts: int = 0
    plc: Literal["conveyor", "diverter", "both"] = "both"
    delay_ms: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _needs(self) -> FaultSpec:
        if self.kind in ("chute_full", "chute_disabled", "diverter_stuck") and self.chute is None:
            raise ValueError(f"fault {self.kind!r} needs a chute")
        if self.kind == "encoder_glitch" and self.counts == 0:
            raise ValueError("encoder_glitch needs a non-zero counts")
        if self.kind == "plc_slow" and self.delay_ms <= 0:
            raise ValueError("plc_slow needs delay_ms > 0")
        return self


class PlcSecurity(Strict):
    """OPC UA security of the simulated conveyor PLC's server (docs/opcua-security.md, "The
    simulator"). Default: none, as before. With a mode, the server offers only that policy and
    mode, with its own certificate from ``pki_dir/own`` (``sortctl certs create --uri
    urn:sortcentre:conveyor-plc:server --dir ...``), and refuses clients whose certificate is not in
    ``pki_dir/trusted`` (saved to ``pki_dir/rejected``) - as a real PLC set up securely does."""

    mode: Literal["None", "Sign", "SignAndEncrypt"] = Field(default="None", description="message security mode")
    policy: Literal["Basic256Sha256", "Aes256_Sha256_RsaPss"] = Field(
        default="Basic256Sha256", description="security policy when mode is not None"
    )
    pki_dir: str = Field(default="var/sim-pki", description="the PLC's own/, trusted/, rejected/")
    users_file: str | None = Field(
        default=None, description="'name:password' lines; when set, only these users get a session (no anonymous)"
    )


class PlcBehaviour(Strict):
    """How the simulated conveyor PLC follows PackML (docs/simulator.md, "The belt")."""

    packml: Literal["strict", "reset_clears_all"] = Field(
        default="strict",
        description="strict: the standard's command table and acting states; reset_clears_all: "
        "Reset from any non-running state straight to Idle, clearing every latched fault",
    )
    acting_ms: float | None = Field(
        default=None, ge=0, le=60_000,
        description="how long an acting state (Starting, Holding, ...) lasts; default 100 (strict), 0 (lenient)",
    )  # fmt: skip
    boot_seed: int | None = Field(
        default=None, ge=0,
        description="seed of both PLCs' boot ids; default the scenario seed (`sortctl sim` draws a new "
        "one per process unless --boot-seed: a new process is a PLC power-up)",
    )  # fmt: skip
    opcua_security: PlcSecurity = Field(
        default_factory=PlcSecurity, description="the conveyor PLC's OPC UA security (default none)"
    )


class Scenario(Strict):
    name: str = "scenario"
    seed: int = 1
    manifest: str | None = Field(
        default="manifest.csv", description="path relative to the scenario's config folder"
    )
    arrivals: Arrivals
    labels: LabelMix = LabelMix()
    quality: LabelQuality = LabelQuality()
    auto_start: bool = Field(default=False, description="belt starts without a host command")
    plc: PlcBehaviour = PlcBehaviour()
    faults: tuple[FaultSpec, ...] = ()
    faults_from_first_run: bool = Field(
        default=False, description="fault times count from the belt's first Execute, not from the start"
    )


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate a scenario file; raises ConfigError naming file, line and field."""
    return load_yaml_model(Scenario, path)


def default_scenario(rate_per_hour: float = 40_000, seed: int = 1) -> Scenario:
    """A clean stream without a manifest file (synthetic ids): for benchmarks and tests."""
    return Scenario(name="default", seed=seed, manifest=None, arrivals=Arrivals(rate_per_hour=rate_per_hour))
