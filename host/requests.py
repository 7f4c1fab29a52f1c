"""The host's requests, checked before the controller sees them (pure: no I/O).

A request is ``<root>/request/<kind>/<request id>`` with a JSON body (``host/schemas/
request-<kind>.json``). A plan is parsed and checked against the site, a pre-advice batch
parsed row by row, with the same code the controller uses, so a bad line is named in the nack
at once. Pre-advice is all or nothing here: a batch with a bad row is refused whole (the host
fixes it and sends it again under a new request id) rather than half-applied.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from control.routing.manifest import manifest_from_csv_text
from control.routing.plan import check_against_site, parse_plan
from control.routing.settings import settings_from_text
from host.schemacheck import errors, load_schema
from plant.errors import ConfigError
from plant.site import Site

__all__ = ["MAX_PAYLOAD", "Checked", "check_request"]

MAX_PAYLOAD = 16 * 1024 * 1024  # bytes; the controller takes at most 20 M characters of plan or pre-advice
SHOWN_ERRORS = 5
COMMANDS = {"plan": "PLAN_ACTIVATE", "manifest": "MANIFEST_ADD", "plan-rollback": "PLAN_ROLLBACK"}


@dataclass(frozen=True, slots=True)
class Checked:
    """A request that may go to the controller (``command``), or why not (``reason``)."""

    command: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.reason


def _config_error(exc: ConfigError) -> dict[str, Any]:
    return {"file": exc.file, "line": exc.line, "field": exc.field, "message": exc.message}


def _refused(reason: str, errs: list[dict[str, Any]] | None = None) -> Checked:
    return Checked(reason=reason, errors=errs or [])


def check_request(kind: str, request_id: str, payload: bytes, site: Site, max_payload: int = MAX_PAYLOAD) -> Checked:
    """Never raises for any ``payload``: a bad one comes back with its reason."""
    if len(payload) > max_payload:
        return _refused(f"payload of {len(payload):,} bytes is over the limit of {max_payload:,}")
    try:
        body = json.loads(payload.decode("utf-8")) if payload.strip() else {} if kind == "plan-rollback" else None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return _refused(f"payload is not JSON in UTF-8: {str(exc)[:200]}")
    if body is None:
        return _refused("empty payload: a JSON object is expected")
    problems = errors(load_schema(f"request-{kind}"), body)
    if problems:
        return _refused("payload does not match request-" + kind + ".json: " + "; ".join(problems[:SHOWN_ERRORS]))
    assert isinstance(body, dict)
    source = str(body.get("source") or f"{kind}-{request_id}")
    try:
        if kind == "plan":
            plan = parse_plan(body["plan_csv"], source)
            check_against_site(plan, site)
            settings = str(body.get("settings_yaml", ""))
            if settings.strip():
                settings_from_text(settings, f"{source} (routing settings)")
            return Checked(COMMANDS[kind], {"plan_csv": body["plan_csv"], "settings_yaml": settings, "source": source,
                                            "request_id": request_id})
        if kind == "manifest":
            m = manifest_from_csv_text(body["csv"], source)
            issues = m.issues(SHOWN_ERRORS)
            if issues:
                errs = [{"file": source, "line": i.line, "field": i.field, "message": i.message} for i in issues]
                first = "; ".join(i.format(source) for i in issues)
                return _refused(f"{len(m.bad_line)} bad pre-advice rows, nothing taken (first: {first})", errs)
            if len(m) == 0:
                return _refused(f"{source}: no pre-advice rows")
            return Checked(COMMANDS[kind], {"csv": body["csv"], "source": source, "request_id": request_id})
        return Checked(COMMANDS[kind], {"request_id": request_id})
    except ConfigError as exc:
        return _refused(str(exc), [_config_error(exc)])
