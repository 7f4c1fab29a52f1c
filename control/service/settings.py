"""Service settings: the cycle, tracking margins and timeouts, validated once at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from control import tracking
from plant.opcua_settings import OpcuaSecuritySettings
from plant.site import Strict
from plant.yamlfile import load_yaml_model


class PackTagsSettings(Strict):
    """The controller's own OPC UA server for SCADA (PackML / OPC 30050 PackTags); docs/packtags.md."""

    enabled: bool = Field(default=False, description="serve PackTags over OPC UA")
    host: str = Field(default="127.0.0.1", description="bind address (loopback unless a site opens it)")
    port: int = Field(default=4841, ge=0, le=65535, description="0 = any free port (tests)")
    path: str = Field(default="/sortcentre/packtags", description="endpoint path")
    rate_hz: float = Field(default=4.0, gt=0, le=20.0, description="how often the tags are refreshed")
    commands_enabled: bool = Field(
        default=False, description="accept CntrlCmd/UnitMode writes (queued as an operator's command, user 'scada')"
    )
    tag_id: str = Field(default="sorter", description="PackML TagID of the unit")
    users_file: str | None = Field(
        default=None, description="'name:password' lines; when set, anonymous sessions are refused"
    )


class ServiceSettings(Strict):
    """Knobs of the controller that are not part of the site's physical description."""

    cycle_s: float = Field(default=0.01, gt=0, le=1.0, description="control cycle period")
    arm_horizon_mm: float = Field(default=tracking.ARM_HORIZON_MM, gt=0, description="arm when the fire point is this close")
    latency_budget_s: float = Field(
        default=tracking.LATENCY_BUDGET_S, ge=0, description="host write + PLC scan allowance before a fire is too late"
    )
    confirm_margin_mm: float = Field(default=tracking.CONFIRM_MARGIN_MM, gt=0, description="confirm overdue this far past fire")
    lost_margin_mm: float = Field(
        default=tracking.LOST_MARGIN_MM, gt=0,
        description="a parcel expected at the scanner this far ago and not seen is lost",
    )
    anchor_tolerance_mm: float = Field(default=tracking.ANCHOR_TOLERANCE_MM, gt=0, description="induct vs scan anchor disagreement")
    decode_deadline_s: float = Field(default=0.5, gt=0, description="decode must be back this soon after trigger")
    scanner_timeout_alarm: int = Field(
        default=5, ge=1, description="this many scans in a row not decoded in time raise the scanner alarm"
    )
    heartbeat_timeout_s: float = Field(default=1.0, gt=0, description="PLC heartbeat unchanged this long = lost")
    watchdog_ms: int = Field(default=1000, gt=0, description="host heartbeat timeout written to the PLC")
    encoder_max_age_s: float = Field(
        default=0.05, ge=0, le=1.0,
        description="how old the PLCs' encoder_count may be when read (their servers sample PLC memory on a cycle)",
    )
    glitch_tolerance_mm: float = Field(
        default=60.0, gt=0, description="encoder step allowed beyond what the belt speed explains"
    )
    auto_start: bool = Field(default=True, description="Reset and Start the unit once connected")
    auto_recover: bool = Field(
        default=True, description="Unhold (Held), Clear (Aborted) by itself once no fault blocks recovery"
    )
    belt_ack_timeout_s: float = Field(
        default=2.0, gt=0, description="a belt command not acknowledged this soon is sent again (new seq)"
    )
    belt_retry_max_s: float = Field(
        default=2.0, gt=0, description="a refused belt command is retried after 0.25 s, doubling up to this"
    )
    synchronous: Literal["FULL", "NORMAL"] = Field(
        default="FULL", description="SQLite fsync per commit (FULL) or per checkpoint (NORMAL: a power cut may lose the last commits)"
    )
    plc_timeout_s: float = Field(default=0.5, gt=0, description="a PLC request not answered this soon fails")
    store_busy_timeout_s: float = Field(
        default=0.05, gt=0, le=5.0,
        description="a commit waits at most this long for a lock another program holds, then fails (retried next cycle)",
    )
    capacity: int = Field(default=4096, gt=0, description="tracking table slots")
    decode_executor: Literal["thread", "process"] = Field(
        default="process",
        description="where the camera worker runs: process (frames never enter the controller's process); thread for tests",
    )
    control_nice: int | None = Field(
        default=-10, ge=-20, le=19,
        description="nice value of the control loop and its store thread (lower: more CPU priority; below the "
        "start value needs CAP_SYS_NICE); null: as started",
    )
    decode_nice: int = Field(
        default=5, ge=0, le=19,
        description="the camera worker runs this much nicer than the control loop (at -10: -5, still ahead of "
        "unrelated work at 0): decoding is budgeted work, the cycle is not",
    )
    decode_workers: int = Field(default=1, ge=1, le=16, description="decode threads in the camera worker")
    packtags: PackTagsSettings = Field(default_factory=PackTagsSettings, description="PackTags OPC UA server")
    opcua_security: OpcuaSecuritySettings = Field(
        default_factory=OpcuaSecuritySettings, description="OPC UA certificates, trust list, user login"
    )


def load_service_settings(path: str | Path) -> ServiceSettings:
    """Read a service settings file (``service.yaml``); every key is optional, unknown keys and
    bad values are refused with file, line and field."""
    return load_yaml_model(ServiceSettings, path)
