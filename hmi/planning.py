"""Sort plan uploads: validate in the HMI first, then a what-if replay of the manifest.

An engineer sees what is wrong with a plan (file, line, field) and what it would do to the
chutes before the service is asked to take it. The checks are the service's own
(`parse_plan`, `check_against_site`, the routing settings model) and the preview is
`control.routing.replay`, as `sortctl plan` runs it, so the HMI cannot disagree with either.
The service still validates a plan itself when it activates it: this is advice, not the gate.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from control.routing.engine import RoutingEngine
from control.routing.manifest import Manifest, load_manifest, manifest_from_csv_text
from control.routing.plan import SortPlan, check_against_site, parse_plan
from control.routing.replay import SPLIT_CAUSES, ReplayResult, replay
from control.routing.settings import RoutingSettings, load_settings
from plant.errors import ConfigError
from plant.site import Site
from plant.yamlfile import yaml_model_from_text

__all__ = [
    "ManifestCache",
    "compare_summary",
    "current_settings",
    "error_json",
    "file_name",
    "plan_in_force",
    "preview",
    "validate_manifest",
    "validate_plan",
]

MAX_SERIES_POINTS = 240
TOP_CHUTES = 10


def file_name(name: str | None, default: str) -> str:
    """An uploaded file's base name, safe to show and store (the browser may send a path)."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[^A-Za-z0-9._ -]", "_", base).strip()[:100]
    return base or default


def error_json(exc: ConfigError) -> dict[str, object]:
    return {"file": exc.file, "line": exc.line, "field": exc.field, "message": exc.message, "text": str(exc)}


def validate_plan(
    plan_csv: str, source: str, site: Site, settings_yaml: str = "", settings_source: str = "routing.yaml"
) -> tuple[SortPlan, RoutingSettings | None]:
    """The plan checked against the site, and the settings if given; ConfigError otherwise."""
    plan = parse_plan(plan_csv, source)
    check_against_site(plan, site)
    settings = yaml_model_from_text(RoutingSettings, settings_yaml, settings_source) if settings_yaml.strip() else None
    return plan, settings


class ManifestCache:
    """The last manifest loaded for previews, kept while its file is unchanged (a big one takes
    seconds to load; an engineer previews several plans against the same one)."""

    def __init__(self) -> None:
        self._key: tuple[Path, int, int] | None = None
        self._manifest: Manifest | None = None

    def get(self, path: Path) -> Manifest:
        try:
            st = path.stat()
        except OSError as exc:
            raise ConfigError(path, None, "", f"cannot read the manifest: {exc.strerror or exc}") from exc
        key = (path, st.st_mtime_ns, st.st_size)
        if key != self._key or self._manifest is None:
            self._manifest = load_manifest(path)
            self._key = key
        return self._manifest


def current_settings(path: Path) -> RoutingSettings:
    return load_settings(path) if path.exists() else RoutingSettings()


def plan_in_force(site: Site, stored: tuple[int, str, str, str] | None, plan_file: Path,
                  routing_file: Path) -> tuple[SortPlan, RoutingSettings] | None:
    """The plan the service routes with now, to compare a new one against: the store's active
    version, else the file the service loaded at start. None when it cannot be read."""
    try:
        if stored is not None:
            _version, source, text, settings_yaml = stored
        else:
            source, text, settings_yaml = str(plan_file), plan_file.read_text(encoding="utf-8"), ""
        plan, settings = validate_plan(text, source, site, settings_yaml)
        return plan, settings or current_settings(routing_file)
    except (ConfigError, OSError, UnicodeDecodeError):
        return None


def compare_summary(p: dict[str, object]) -> dict[str, object]:
    """What the comparison with the plan in force needs of its preview."""
    chutes = p["chutes"]
    assert isinstance(chutes, list)
    return {"overflow_events": p["overflow_events"], "full_chutes": p["full_chutes"], "groups": p["groups"],
            "reasons": p["reasons"], "peak_fill": {str(c["id"]): c["peak_fill"] for c in chutes}}


def preview(site: Site, plan: SortPlan, settings: RoutingSettings, manifest: Manifest,
            step_s: float = 30.0) -> dict[str, object]:
    """Replay ``manifest`` through ``plan``: chute load, decisions by reason, and the fill over
    time of the fullest chutes (percent of capacity, at most ``MAX_SERIES_POINTS`` points)."""
    engine = RoutingEngine(site, plan, manifest, settings)
    r = replay(engine, step_s)
    chutes = [
        {"id": c.id, "name": c.name, "kind": c.kind.value, "parcels": int(r.parcels[c.id]),
         "peak_fill": int(r.peak[c.id]), "capacity": c.capacity,
         "peak_pct": round(100.0 * float(r.peak[c.id]) / c.capacity, 1)}
        for c in site.chutes
    ]
    return {
        "parcels": r.parcels_total,
        "manifest": manifest.source,
        "manifest_bad_rows": len(manifest.bad_line),
        "reasons": r.reasons,
        "overflow_events": r.overflow_events,
        "groups": {"total": r.groups_total, "split": r.groups_split,
                   "split_because": {SPLIT_CAUSES.get(k, k): v for k, v in r.split_because.items()}},
        "chutes": chutes,
        "full_chutes": [c["id"] for c in chutes if int(str(c["peak_fill"])) >= int(str(c["capacity"]))],
        "series": _series(r, site),
    }


def _series(r: ReplayResult, site: Site) -> dict[str, object]:
    n = len(r.times)
    if n == 0:
        return {"hours": [], "lines": []}
    ids = sorted(r.chute_ids, key=lambda c: -int(r.peak[c]))[:TOP_CHUTES]
    stride = max(1, -(-n // MAX_SERIES_POINTS))
    # keep each stretch's highest fill: a peak that fills a chute must not fall between points
    idx = np.arange(0, n, stride)
    hours = ((r.times[idx] - r.times[0]) / 3600.0).round(3).tolist()
    lines = []
    for cid in ids:
        c = site.chute(cid)
        pct = r.fill[:, cid].astype(float) * 100.0 / c.capacity
        peaks = np.maximum.reduceat(pct, idx)
        lines.append({"id": cid, "name": c.name, "values": peaks.round(1).tolist()})
    return {"hours": hours, "lines": lines}


def validate_manifest(csv_text: str, source: str) -> dict[str, object]:
    """Load uploaded manifest rows as the service will: good rows, bad rows and the first
    problems (file, line, field). ConfigError when the file is unusable (header, encoding)."""
    m = manifest_from_csv_text(csv_text, source)  # what the service runs on MANIFEST_ADD, no temp file
    return {"rows": len(m), "bad_rows": len(m.bad_line),
            "issues": [i.format(source) for i in m.issues(limit=20)]}
