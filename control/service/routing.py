"""The routing engine behind the service's Router interface: identities in, chutes out."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from control.lifecycle import ScanStatus
from control.routing.engine import RoutingEngine
from control.routing.manifest import Manifest, load_manifest
from control.routing.plan import load_plan
from control.routing.reasons import ReadStatus, Reason
from control.routing.settings import load_settings
from control.service.feeds import RouteRequest
from plant.codes import ChuteStatus
from plant.site import Site

_READ = {
    ScanStatus.READ: ReadStatus.OK,
    ScanStatus.NO_READ: ReadStatus.NO_READ,
    ScanStatus.TIMEOUT: ReadStatus.NO_READ,  # not decoded in time: treated as unread, counted apart
    ScanStatus.MULTI_READ: ReadStatus.MULTI_READ,
    ScanStatus.PENDING: ReadStatus.NO_READ,
}
UNUSABLE = ChuteStatus.FULL | ChuteStatus.DISABLED | ChuteStatus.FAULT


class EngineRouter:
    """Adapts `RoutingEngine` (batch kernel) to the controller: one call per cycle's parcels."""

    def __init__(
        self, engine: RoutingEngine, manifest: Manifest, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.engine = engine
        self.manifest = manifest
        self._group: dict[int, int] = {}
        self._assigned: dict[int, int] = {}
        self.clock = clock  # epoch seconds, compared with the manifest's service deadlines

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
        """``manifest_time``: run the clock from the manifest's first arrival (demos replaying
        an old or future manifest), instead of the wall clock."""
        plan = load_plan(plan_path, site)
        manifest = load_manifest(manifest_path)
        settings = load_settings(settings_path) if settings_path is not None else None
        clock: Callable[[], float] = time.time
        if manifest_time and len(manifest) and np.isfinite(manifest.arrival).any():
            origin = float(np.nanmin(manifest.arrival)) - time.time()
            clock = lambda: time.time() + origin  # noqa: E731
        return cls(RoutingEngine(site, plan, manifest, settings), manifest, clock=clock)

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
