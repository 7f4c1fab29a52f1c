"""What the HMI knows about the plant besides the store: the site file (chutes, their order along
the sorter, capacities), the active sort plan's destinations per chute, and the files the
service loaded.

The service writes the absolute paths of the files it loaded into ``meta.files``; the HMI reads
the same files, so its picture of the sorter is the service's. Without that key (an older
service, or none has run yet) it falls back to ``--site`` and the files beside it, as
`sortctl run` does. Parsed files are cached by modification time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from control.routing.plan import SortPlan, parse_plan
from plant.errors import ConfigError
from plant.site import Chute, Site, load_site

__all__ = ["Files", "PlanCache", "SiteCache", "chute_rows", "destinations"]


@dataclass(frozen=True, slots=True)
class Files:
    site: Path
    plan: Path
    manifest: Path
    routing: Path
    from_service: bool  # False: the HMI's fallback (``--site`` and the files beside it)

    @classmethod
    def resolve(cls, meta_files: Any, fallback_site: Path) -> Files:
        beside = fallback_site.parent
        default = {"site": fallback_site, "plan": beside / "sortplan.csv", "manifest": beside / "manifest.csv",
                   "routing": beside / "routing.yaml"}
        given = meta_files if isinstance(meta_files, dict) else {}
        paths = {k: Path(str(given[k])) if given.get(k) else v for k, v in default.items()}
        return cls(paths["site"], paths["plan"], paths["manifest"], paths["routing"], bool(given.get("site")))

    def as_json(self) -> dict[str, object]:
        return {"site": str(self.site), "plan": str(self.plan), "manifest": str(self.manifest),
                "routing": str(self.routing), "from_service": self.from_service}


class SiteCache:
    """The site model, re-read when the file changes; the error text when it cannot be read."""

    def __init__(self) -> None:
        self._key: tuple[Path, int] | None = None
        self._site: Site | None = None
        self._error = ""

    def get(self, path: Path) -> tuple[Site | None, str]:
        try:
            key = (path, path.stat().st_mtime_ns)
        except OSError as exc:
            return None, f"site file {path}: {exc.strerror or exc}"
        if key != self._key:
            self._key = key
            try:
                self._site, self._error = load_site(path), ""
            except ConfigError as exc:
                self._site, self._error = None, str(exc)
        return self._site, self._error


class PlanCache:
    """The last parsed plan text (the active plan changes rarely; parsing it per poll is waste)."""

    def __init__(self) -> None:
        self._digest = ""
        self._plan: SortPlan | None = None

    def get(self, text: str, source: str) -> SortPlan | None:
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest != self._digest:
            self._digest = digest
            try:
                self._plan = parse_plan(text, source)
            except ConfigError:
                self._plan = None
        return self._plan


def destinations(plan: SortPlan | None) -> dict[int, list[str]]:
    """Chute id -> the destinations the plan sends there (priority chutes marked)."""
    out: dict[int, list[str]] = {}
    if plan is None:
        return out
    for r in plan.rules:
        for c in r.chutes:
            out.setdefault(c, []).append(r.label)
        if r.priority_chute is not None:
            out.setdefault(r.priority_chute, []).append(f"{r.label} (priority)")
    return out


def chute_rows(site: Site) -> list[tuple[str, list[Chute], bool]]:
    """The chutes as the sorter has them, in rows of (label, chutes in screen order, folded:
    True for a loop's return side, drawn right to left).

    A site whose chutes name a ``side`` gets one row per side, in belt order. A loop sorter
    without sides gets the loop folded in two: the chutes of the first half of the occupied
    stretch left to right, those of the second half right to left beneath them, so the screen
    reads round the loop in the direction of travel. A linear sorter gets one row.
    """
    chutes = sorted(site.chutes, key=lambda c: c.diverter.position_mm)
    sides = {str(getattr(c, "side", "") or "") for c in chutes}
    if sides != {""}:
        return [(f"side {s}" if s else "side ?", [c for c in chutes if str(getattr(c, "side", "") or "") == s], False)
                for s in sorted(sides)]
    if site.sorter.layout != "loop" or len(chutes) < 4:
        return [("direction of travel \u2192", chutes, False)]
    lo, hi = chutes[0].diverter.position_mm, chutes[-1].diverter.position_mm
    mid = (lo + hi) / 2.0
    first = [c for c in chutes if c.diverter.position_mm <= mid]
    second = [c for c in chutes if c.diverter.position_mm > mid]
    return [("outbound \u2192", first, False), ("\u2190 return", list(reversed(second)), True)]
