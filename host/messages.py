"""The JSON payloads the relay publishes, built from store rows (pure: no I/O).

Every payload carries ``event_id``, stable across re-sends (``<sorter>:pe:<row id>`` for a
parcel event, ``<sorter>:ue:<row id>`` for a unit event, ...), so a host that stores by event
id is idempotent under MQTT's at-least-once delivery. The shapes are the JSON Schemas in
``host/schemas/`` (docs/host-interface.md shows an example of each).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FINAL_KINDS",
    "ParcelEvent",
    "UnitEvent",
    "confirmation",
    "counters",
    "encode",
    "iso",
    "recirculation",
    "response",
    "status",
    "unit_message",
]

SCHEMA_VERSION = 1
FINAL_KINDS = ("sorted", "rejected", "lost", "missorted")  # one confirmation per parcel, at its final outcome
STATE_KINDS = ("state", "mode")
ALARM_KINDS = ("alarm", "alarm_clear")


@dataclass(frozen=True, slots=True)
class ParcelEvent:
    """A row of ``parcel_events``."""

    id: int
    t: float
    tracking_id: int
    kind: str
    lap: int
    chute: int
    reason: str
    identity: str
    detail: str
    boot_id: int
    plan_version: int


@dataclass(frozen=True, slots=True)
class UnitEvent:
    """A row of ``unit_events`` (with the alarm's severity and id looked up for alarm rows)."""

    id: int
    t: float
    kind: str
    name: str
    code: int
    detail: str
    severity: str = ""
    alarm_id: int | None = None


def iso(t: float) -> str:
    """UTC ISO 8601 with milliseconds: what a host's database parses without asking."""
    ms = int(round((t % 1) * 1000))
    if ms == 1000:
        t, ms = float(int(t) + 1), 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{ms:03d}Z"


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _head(sorter: str, event_id: str, kind: str, t: float) -> dict[str, Any]:
    return {"schema": SCHEMA_VERSION, "type": kind, "event_id": event_id, "sorter": sorter, "t": round(t, 3),
            "time": iso(t)}


def _parcel(sorter: str, e: ParcelEvent, kind: str) -> dict[str, Any]:
    return {
        **_head(sorter, f"{sorter}:pe:{e.id}", kind, e.t),
        "parcel_id": e.identity,
        "tracking_id": e.tracking_id,
        "boot_id": e.boot_id,
        "chute": e.chute if e.chute else None,
        "reason": e.reason,
        "laps": e.lap,
        "plan_version": e.plan_version,
    }


def confirmation(sorter: str, e: ParcelEvent) -> dict[str, Any]:
    """A parcel's final outcome: sorted to ``chute``, rejected to an exception chute for
    ``reason``, lost (no outcome the sorter could see), or missorted. ``recirculated`` says it
    went round the loop at least once first."""
    assert e.kind in FINAL_KINDS
    return {**_parcel(sorter, e, "confirmation"), "disposition": e.kind, "recirculated": e.lap > 0}


def recirculation(sorter: str, e: ParcelEvent) -> dict[str, Any]:
    """A parcel that missed its chute (full, not armed in time, ...) and goes round again: not
    final; its confirmation follows."""
    return {**_parcel(sorter, e, "recirculation"), "disposition": "recirculated", "detail": e.detail[:500]}


def unit_message(sorter: str, e: UnitEvent) -> tuple[str, dict[str, Any]]:
    """``(category, payload)``: category ``state`` (PackML state or unit mode), ``alarm``
    (raised/cleared) or ``event`` (operator commands, service start/stop, plans, chutes,
    pre-advice)."""
    head = _head(sorter, f"{sorter}:ue:{e.id}", "", e.t)
    if e.kind in STATE_KINDS:
        head["type"] = "state"
        return "state", {**head, "what": e.kind, "name": e.name, "code": e.code, "detail": e.detail[:500]}
    if e.kind in ALARM_KINDS:
        head["type"] = "alarm"
        return "alarm", {**head, "action": "raised" if e.kind == "alarm" else "cleared", "name": e.name,
                         "code": e.code, "severity": e.severity, "alarm_id": e.alarm_id, "detail": e.detail[:500]}
    head["type"] = "event"
    return "event", {**head, "kind": e.kind, "name": e.name, "code": e.code, "detail": e.detail[:1000]}


def counters(sorter: str, t: float, since: float, totals: dict[str, int], by_reason: dict[str, int],
             by_chute: dict[str, int], health: dict[str, Any]) -> dict[str, Any]:
    """Periodic totals of the outcomes published so far (counted by the relay as it publishes
    them, kept in its state file) and the controller's last health record."""
    return {
        **_head(sorter, f"{sorter}:counters:{int(t * 1000)}", "counters", t),
        "since": round(since, 3),
        "totals": totals,
        "by_reason": by_reason,
        "by_chute": by_chute,
        "health": _health(health),
    }


_HEALTH_KEYS = ("t", "unit", "mode", "in_flight", "faults", "links", "speed_mps", "plan_version", "lag_p99_ms",
                "decision_p99_ms", "commit_p99_ms", "outcomes", "rss_mb")


def _health(h: dict[str, Any]) -> dict[str, Any]:
    """The figures a host wants from the controller's health record (not its histograms)."""
    return {k: h[k] for k in _HEALTH_KEYS if k in h}


def status(sorter: str, online: bool, t: float, reason: str, relay_id: str) -> dict[str, Any]:
    """Birth (``online``) and death (``offline``) of the sorter's link to the host; retained."""
    return {**_head(sorter, f"{sorter}:status:{relay_id}:{'on' if online else 'off'}", "status", t),
            "state": "online" if online else "offline", "reason": reason, "relay": relay_id}


def response(sorter: str, request_id: str, kind: str, t: float, *, accepted: bool, stage: str, result: str,
             errors: list[dict[str, Any]] | None = None, command_id: int | None = None) -> dict[str, Any]:
    """The answer to one host request: ``stage`` says who decided (``relay``: the request
    never reached the controller; ``controller``: the running controller's own answer)."""
    return {
        **_head(sorter, f"{sorter}:response:{request_id}", "response", t),
        "request_id": request_id,
        "request": kind,
        "accepted": accepted,
        "stage": stage,
        "result": result[:4000],
        "errors": errors or [],
        "command_id": command_id,
    }
