"""The routing engine behind the service's Router interface: identities in, chutes out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from control.lifecycle import ScanStatus
from control.routing.engine import PreparedPlan, RoutingEngine
from control.routing.manifest import Manifest, load_manifest
from control.routing.plan import check_against_site, parse_plan, read_plan_text
from control.routing.reasons import ReadStatus, Reason
from control.routing.settings import load_settings, settings_from_text
from control.service.feeds import RouteRequest
from plant.codes import ChuteStatus
from plant.site import Site
from plant.yamlfile import read_text

log = logging.getLogger(__name__)

_READ = {
    ScanStatus.READ: ReadStatus.OK,
    ScanStatus.NO_READ: ReadStatus.NO_READ,
    ScanStatus.TIMEOUT: ReadStatus.NO_READ,  # not decoded in time: treated as unread, counted apart
    ScanStatus.MULTI_READ: ReadStatus.MULTI_READ,
    ScanStatus.PENDING: ReadStatus.NO_READ,
}
UNUSABLE = ChuteStatus.FULL | ChuteStatus.DISABLED | ChuteStatus.FAULT


@dataclass(frozen=True, slots=True)
class PlanSource:
    """A sort plan and its routing settings as text, where they came from: what the store keeps
    for every version, so a restart or a rollback rebuilds exactly the plan that ran."""

    plan_csv: str
    settings_yaml: str
    source: str


class EngineRouter:
    """Adapts `RoutingEngine` (batch kernel) to the controller: one call per cycle's parcels."""

    def __init__(
        self, engine: RoutingEngine, manifest: Manifest, *, clock: Callable[[], float] = time.time,
        source: PlanSource | None = None, manifest_time: bool = False,
    ) -> None:
        self.engine = engine
        self.manifest = manifest
        self._group: dict[int, int] = {}
        self._assigned: dict[int, int] = {}
        self.wall = clock  # epoch seconds
        # manifest time: the deadline clock starts at the manifest's first arrival (see
        # RoutingSettings.deadline_clock); ``manifest_time`` forces it (demos, tests)
        self.force_manifest_time = manifest_time
        self._origin = 0.0
        if len(manifest) and np.isfinite(manifest.arrival).any():
            self._origin = float(np.nanmin(manifest.arrival)) - clock()
        self.plan_version = 0  # set by the service once the store has given the plan its version
        self.source = source or PlanSource("", "", "")
        self._warn_stale_deadlines()

    def clock(self) -> float:
        """'Now' for service deadlines: the wall clock, or manifest time (see deadline_clock)."""
        if self.force_manifest_time or self.engine.settings.deadline_clock == "manifest":
            return self.wall() + self._origin
        return self.wall()

    def _warn_stale_deadlines(self) -> None:
        dl = self.manifest.deadline
        if not len(dl) or self.engine.settings.deadline_clock == "manifest" or self.force_manifest_time:
            return
        known = np.isfinite(dl)
        past = float(np.mean(dl[known] < self.wall())) if known.any() else 0.0
        if past > 0.2:
            log.warning(
                "%.0f %% of the manifest's service deadlines are already past by the wall clock: those "
                "parcels route as late (priority). Recorded or example data? Set deadline_clock: manifest "
                "in the routing settings to judge deadlines in the manifest's own time.", past * 100.0,
            )

    @classmethod
    def from_files(
        cls,
        site: Site,
        plan_path: str | Path,
        manifest_path: str | Path,
        settings_path: str | Path | None = None,
        *,
        manifest_time: bool = False,
    ) -> EngineRouter:
        """``manifest_time``: judge deadlines in manifest time whatever the settings say."""
        plan_text = read_plan_text(plan_path)
        plan = parse_plan(plan_text, str(plan_path))
        check_against_site(plan, site)
        manifest = load_manifest(manifest_path)
        if len(manifest) == 0:  # legal (pre-advice may come later), but never silent
            log.warning("manifest %s holds no parcels: every parcel routes as unknown (reject chute) "
                        "until pre-advice arrives", manifest_path)
        settings_text = read_text(settings_path) if settings_path is not None else ""
        settings = load_settings(settings_path) if settings_path is not None else None
        source = PlanSource(plan_text, settings_text, str(Path(plan_path).resolve()))
        return cls(RoutingEngine(site, plan, manifest, settings), manifest, source=source,
                   manifest_time=manifest_time)

    def prepare(self, new: PlanSource) -> PreparedPlan:
        """Validate and compile a plan (and settings: '' keeps the current ones) without touching
        the running engine; raises ConfigError naming the file, line and field. Runs off the
        control thread: a big plan takes a while to compile."""
        plan = parse_plan(new.plan_csv, new.source)
        settings = (
            settings_from_text(new.settings_yaml, f"{new.source} (routing settings)")
            if new.settings_yaml.strip() else self.engine.settings
        )
        return self.engine.prepare_plan(plan, settings)  # a plan too large for the tables: ConfigError

    def swap(self, prepared: PreparedPlan, source: PlanSource, version: int) -> None:
        """Take a prepared plan between two cycles: every decision from now on uses it."""
        if not source.settings_yaml.strip():
            source = PlanSource(source.plan_csv, self.source.settings_yaml, source.source)
        self.engine.swap_plan(prepared)
        self.source, self.plan_version = source, version

    def route(
        self, requests: list[RouteRequest], chute_status: npt.NDArray[np.uint16]
    ) -> list[tuple[int, int, str]]:
        eng = self.engine
        self._take_status(chute_status)
        rows = np.array([self._row(r.identity) for r in requests], dtype=np.int64)
        read = np.array([int(_READ[r.status]) for r in requests], dtype=np.int64)
        laps = np.array([r.lap for r in requests], dtype=np.int64)
        keys = np.array(
            [eng.label_key(r.postal_code, r.country) if r.postal_code and r.identity else -1 for r in requests],
            dtype=np.int64,
        )
        d = eng.route(rows, self.clock(), read, laps, keys)
        out: list[tuple[int, int, str]] = []
        for r, c, why, g in zip(requests, d.chute.tolist(), d.reason.tolist(), d.group.tolist(), strict=True):
            self._group[r.key] = g
            self._assigned[r.key] = c
            if why == Reason.NO_READ and r.status == ScanStatus.TIMEOUT:
                why = int(Reason.DECODE_LATE)  # the same chute as a no-read; the cause named apart
            out.append((c, why, Reason(why).name.lower()))
        return out

    def full_destinations(self, chute_status: npt.NDArray[np.uint16]) -> list[str]:
        self._take_status(chute_status)
        rules = self.engine.plan.rules
        return [f"{rules[r].label} ({'|'.join(map(str, rules[r].chutes))})" for r in self.engine.starved_rules()]

    def _take_status(self, chute_status: npt.NDArray[np.uint16]) -> None:
        """The PLC's chute status is the truth about which chutes can take a parcel now."""
        self.engine.set_available((np.asarray(chute_status, dtype=np.uint16) & int(UNUSABLE)) == 0)

    def _row(self, identity: str) -> int:
        if not identity:
            return -1
        try:
            return int(self.manifest.row_of(identity))
        except (KeyError, ValueError):
            return -1

    def confirmed(self, key: int, assigned: int, actual: int) -> None:
        self._assigned.pop(key, None)
        self.engine.confirm([assigned], [actual], [self._group.pop(key, -1)])

    def missed(self, key: int, assigned: int) -> None:
        if self._assigned.pop(key, None) is not None:
            self.engine.missed([assigned])

    def chute_fill(self, fill: npt.NDArray[np.uint16]) -> None:
        """The PLC's fill counts are the truth: what operators emptied leaves our count too."""
        eng = self.engine
        n = min(len(fill), len(eng.filled))
        over = eng.filled[:n] - np.asarray(fill[:n], dtype=np.int64)
        drained = np.flatnonzero(over > 0)
        if drained.size:
            eng.drained(drained, over[drained])
