"""What the pages show, computed from the store: one object, used from the store thread only.

`StoreView.poll` is what the live hub calls four times a second: ``PRAGMA data_version`` says
whether anyone committed since the last look; only then (or once a second, for figures that
age by themselves: health age, shelved alarms, the last minute's rate) are the topics rebuilt,
and only topics whose JSON differs from what was last sent are returned. The other methods
answer the JSON endpoints with fresh data.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from control.routing.plan import SortPlan
from control.store import AlarmRow
from hmi import queries
from hmi.db import ReadStore, StoreUnavailable
from hmi.layout import Files, PlanCache, SiteCache, chute_rows, destinations
from hmi.tally import FINISHED_KINDS, Bucket, Tally, rates
from hmi.trends import (
    FillSample,
    HealthSample,
    fill_of,
    fill_series,
    health_series,
    parcel_series,
    sample_of,
)
from plant.codes import ChuteStatus, PackMLCommand, PackMLState
from plant.packml import ACCEPTS
from plant.site import Site

__all__ = ["TOPICS", "StoreView", "ViewConfig"]

TOPICS = ("overview", "chutes", "alarms", "commands", "plans", "minute")
LINKS = ("conveyor", "diverter", "camera")
HEALTH_SAMPLE_S = 10.0
FILL_SAMPLE_S = 60.0
KEEP_S = 12 * 3600.0


@dataclass(frozen=True, slots=True)
class ViewConfig:
    db: Path
    site: Path = Path("config/site.yaml")  # when the store does not say which site the service runs
    stale_after_s: float = 5.0  # a health record older than this: the service is down
    shift_max_s: float = 8 * 3600.0
    clock: Callable[[], float] = time.time


def alarm_json(a: AlarmRow, now: float) -> dict[str, object]:
    return {**dataclasses.asdict(a), "state": a.state(now)}


class StoreView:
    def __init__(self, cfg: ViewConfig) -> None:
        self.cfg = cfg
        self.store = ReadStore(cfg.db)
        self.tally = Tally(keep_s=KEEP_S)
        self.sites = SiteCache()
        self.plan_cache = PlanCache()
        self.health_samples: deque[HealthSample] = deque(maxlen=int(KEEP_S / HEALTH_SAMPLE_S))
        self.fill_samples: deque[FillSample] = deque(maxlen=int(KEEP_S / FILL_SAMPLE_S))
        self._version: tuple[int, int] | None = None
        self._last_json: dict[str, str] = {}
        self._last_full = 0.0
        self._minute = -1
        self._shift_cache: tuple[tuple[int, int, int], Bucket] | None = None
        self._catching_up = False  # the tally has not read every stored event yet

    def close(self) -> None:
        self.store.close()

    # ================================================================ polling
    def poll(self, *, force: bool = False) -> dict[str, Any]:
        """The topics whose payload changed since the last poll (all of them when ``force``)."""
        now = self.cfg.clock()
        topics: dict[str, Any]
        try:
            version = self.store.data_version()
            due = force or version != self._version or now - self._last_full >= 1.0 or self._catching_up
            if not due:
                return {}
            with self.store.reading() as db:
                topics = self._all_topics(db, now)
            self._version = version
            self._last_full = now
        except StoreUnavailable as exc:
            self._version = None
            topics = {t: self.unavailable(str(exc)) for t in TOPICS if t != "minute"}
        if force:
            self._last_json.clear()
        changed: dict[str, Any] = {}
        for name, payload in topics.items():
            text = json.dumps(payload, sort_keys=True, default=str)
            if self._last_json.get(name) != text:
                self._last_json[name] = text
                changed[name] = payload
        return changed

    def _all_topics(self, db: sqlite3.Connection, now: float) -> dict[str, Any]:
        fp = queries.fingerprint(db)
        self._catching_up = not self.tally.advance(db, fp.parcel_event, now, max_chunks=1)
        health = queries.meta_json(db, "health")
        health = health if isinstance(health, dict) else {}
        chutes_meta = queries.meta_json(db, "chutes")
        self._sample(health, chutes_meta, now)
        out = {
            "overview": self.overview(db, now, health),
            "chutes": self._chutes(db, now, chutes_meta),
            "alarms": self._alarms(db, now),
            "commands": {"store": self._ok(), "commands": queries.commands(db, 30)},
            "plans": self._plans(db),
        }
        minute = int(now // 60)
        if minute != self._minute:
            self._minute = minute
            out["minute"] = {"minute": minute * 60}
        return out

    def _sample(self, health: dict[str, Any], chutes_meta: Any, now: float) -> None:
        """Keep the service's health and chute fill over time (for trends; bounded deques)."""
        s = sample_of(health) if health else None
        last = self.health_samples[-1].t if self.health_samples else 0.0
        if s is not None and s.t - last >= HEALTH_SAMPLE_S - 0.5:
            self.health_samples.append(s)
        if isinstance(chutes_meta, list) and (
            not self.fill_samples or now - self.fill_samples[-1].t >= FILL_SAMPLE_S
        ):
            fill = {int(c["id"]): float(c.get("fill", 0) or 0) for c in chutes_meta
                    if isinstance(c, dict) and "id" in c}
            self.fill_samples.append(FillSample(now, fill))

    # ================================================================ one-shot reads
    def snapshot(self, topic: str) -> Any:
        """One topic, fresh (the JSON endpoints)."""
        now = self.cfg.clock()
        try:
            with self.store.reading() as db:
                fp = queries.fingerprint(db)
                self.tally.advance(db, fp.parcel_event, now, max_chunks=1)
                if topic == "overview":
                    h = queries.meta_json(db, "health")
                    return self.overview(db, now, h if isinstance(h, dict) else {})
                if topic == "chutes":
                    return self._chutes(db, now, queries.meta_json(db, "chutes"))
                if topic == "alarms":
                    return self._alarms(db, now)
                if topic == "commands":
                    return {"store": self._ok(), "commands": queries.commands(db, 50)}
                if topic == "plans":
                    return self._plans(db)
        except StoreUnavailable as exc:
            return self.unavailable(str(exc))
        raise KeyError(topic)

    def read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run one query function on a read snapshot (StoreUnavailable passes through)."""
        with self.store.reading() as db:
            return fn(db)

    def files(self) -> Files:
        try:
            meta_files = self.read(lambda db: queries.meta_json(db, "files"))
        except StoreUnavailable:
            meta_files = None
        return Files.resolve(meta_files, self.cfg.site)

    def site(self, files: Files | None = None) -> tuple[Site | None, str]:
        return self.sites.get((files or self.files()).site)

    def unavailable(self, error: str) -> dict[str, Any]:
        return {"store": {"ok": False, "error": error, "path": str(self.cfg.db)}}

    def _ok(self) -> dict[str, Any]:
        return {"ok": True, "error": "", "path": str(self.cfg.db)}

    # ================================================================ overview
    def overview(self, db: sqlite3.Connection, now: float, health: dict[str, Any]) -> dict[str, Any]:
        """The overview topic from an open read snapshot (/metrics builds on it too)."""
        state_ev = queries.last_unit_event(db, "state")
        mode_ev = queries.last_unit_event(db, "mode")
        service_ev = queries.last_unit_event(db, "service")
        state = state_ev[1] if state_ev else str(health.get("unit") or "UNKNOWN")
        try:
            allowed = sorted(ACCEPTS[PackMLState[state]], key=int)
        except KeyError:
            allowed = []
        health_t = _float(health.get("t"))
        age = now - health_t if health_t is not None else None
        stale = age is None or age > self.cfg.stale_after_s
        if service_ev and service_ev[1] == "stop" and (health_t is None or service_ev[0] >= health_t):
            service = "stopped"
        elif health_t is None:
            service = "unknown" if service_ev is None else ("stale" if service_ev[1] == "start" else "stopped")
        else:
            service = "stale" if stale else "running"
        links_raw = health.get("links") if isinstance(health.get("links"), dict) else {}
        links = {}
        for name in LINKS:
            v = links_raw.get(name) if isinstance(links_raw, dict) else None
            links[name] = "unknown" if v is None else ("stale" if stale else ("up" if v else "down"))
        started = service_ev[0] if service_ev and service_ev[1] == "start" else None
        shift_start = max(started or 0.0, now - self.cfg.shift_max_s)
        last_minute = db.execute(
            "SELECT COUNT(*) FROM parcel_events WHERE t > ? AND kind IN (?, ?)", (now - 60.0, *FINISHED_KINDS)
        ).fetchone()[0]
        shift = self._shift_bucket(shift_start, now)
        recent = self.tally.window(now - 300.0, now)
        shift_rates = rates(shift, max(now - shift_start, 60.0))
        alarms = queries.open_alarms(db)
        states = [a.state(now) for a in alarms]
        return {
            "store": self._ok(),
            "now": now,
            "unit": {"state": state, "state_t": state_ev[0] if state_ev else None,
                     "mode": mode_ev[1] if mode_ev else str(queries.meta(db, "unit_mode") or "PRODUCTION"),
                     "allowed": [c.name for c in allowed], "commands": [c.name for c in PackMLCommand]},
            "service": {"status": service, "up": service == "running", "health_age_s": _round(age, 1),
                        "started_t": started, "stale_after_s": self.cfg.stale_after_s},
            "health": {k: health.get(k) for k in ("in_flight", "cycles", "lag_p99_ms", "rss_mb", "faults")},
            "links": links,
            "speed_mps": _float(health.get("speed_mps")),
            "plan_version": health.get("plan_version"),
            "rates": {
                "now_per_hour": float(last_minute) * 60.0,
                "shift_start": shift_start,
                "shift_per_hour": round(float(shift_rates["per_hour"] or 0.0), 1),
                "shift_finished": sum(shift.kinds[k] for k in FINISHED_KINDS),
                "shift_sorted": shift.kinds["sorted"],
                "shift_rejected": shift.kinds["rejected"],
                "shift_inducted": shift.kinds["inducted"],
                "shift_recirculated": shift.kinds["recirculated"],
                "shift_lost": shift.kinds["lost"],
                "read_rate": _round(shift_rates["read_rate"], 4),
                "read_rate_5min": _round(rates(recent, 300.0)["read_rate"], 4),
                "recirculation_rate": _round(shift_rates["recirculation_rate"], 4),
            },
            "rejects": [{"reason": r, "count": n} for r, n in shift.rejected_by_reason.most_common()],
            "alarms": {"open": len(alarms), "unack": sum(s.startswith("unack") for s in states),
                       "active": sum(s in ("unack_active", "ack_active") for s in states),
                       "shelved": states.count("shelved"),
                       "newest": alarms[0].name if alarms else ""},
            "tally": {"caught_up": not self._catching_up, "last_event_id": self.tally.last_id},
        }

    def _shift_bucket(self, start: float, now: float) -> Bucket:
        key = (int(start // 60), int(now // 60), self.tally.last_id)
        if self._shift_cache is None or self._shift_cache[0] != key:
            self._shift_cache = (key, self.tally.window(start, now))
        return self._shift_cache[1]

    # ================================================================ chutes
    def _active_plan(self, db: sqlite3.Connection, files: Files) -> tuple[int, str, SortPlan | None]:
        """(version, source, parsed plan): the store's active version, else the file the
        service loaded at start (version 0)."""
        row = queries.plan_text(db)
        if row is not None:
            version, source, text, _settings = row
            return version, source, self.plan_cache.get(text, source)
        try:
            text = files.plan.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return 0, str(files.plan), None
        return 0, str(files.plan), self.plan_cache.get(text, str(files.plan))

    def _chutes(self, db: sqlite3.Connection, now: float, chutes_meta: Any) -> dict[str, Any]:
        files = Files.resolve(queries.meta_json(db, "files"), self.cfg.site)
        site, error = self.sites.get(files.site)
        if site is None:
            return {"store": self._ok(), "site_error": error, "rows": []}
        _v, _s, plan = self._active_plan(db, files)
        dest = destinations(plan)
        live = {int(c["id"]): c for c in chutes_meta if isinstance(c, dict) and "id" in c} \
            if isinstance(chutes_meta, list) else {}
        service_ev = queries.last_unit_event(db, "service")
        started = service_ev[0] if service_ev and service_ev[1] == "start" else 0.0
        shift = self._shift_bucket(max(started, now - self.cfg.shift_max_s), now)
        totals = self.tally.by_chute()
        rows = []
        layout = chute_rows(site)
        widest = max(len(chutes) for _label, chutes, _folded in layout)
        for label, chutes, folded in layout:
            tiles = []
            for c in chutes:
                m = live.get(c.id, {})
                status = int(m.get("status", 0) or 0)
                fill = _float(m.get("fill"))
                tiles.append({
                    "id": c.id, "name": c.name, "kind": c.kind.value, "capacity": c.capacity,
                    "position_mm": c.diverter.position_mm, "destinations": dest.get(c.id, []),
                    "known": bool(m), "status": status, "fill": fill,
                    "fill_pct": round(100.0 * fill / c.capacity, 1) if fill is not None else None,
                    "full": bool(status & ChuteStatus.FULL), "disabled": bool(status & ChuteStatus.DISABLED),
                    "fault": bool(status & ChuteStatus.FAULT), "out": bool(m.get("out", False)),
                    "out_by": str(m.get("out_by", "") or ""), "out_reason": str(m.get("out_reason", "") or ""),
                    "count_shift": shift.per_chute.get(c.id, 0), "count_total": totals.get(c.id, 0),
                })
            # equal columns in every row; a loop's return side ends under the outbound side's end
            pad = widest - len(tiles)
            rows.append({"label": label, "chutes": tiles, "pad_before": pad if folded else 0,
                         "pad_after": 0 if folded else pad})
        return {"store": self._ok(), "site_error": "", "site": site.name, "layout": site.sorter.layout,
                "rows": rows, "live": bool(live)}

    # ================================================================ alarms, plans
    def _alarms(self, db: sqlite3.Connection, now: float) -> dict[str, Any]:
        # no clock in the payload: the topic goes out only when an alarm changes (a shelve running
        # out changes its state), so the page does not redraw the table under an operator's click
        return {"store": self._ok(), "alarms": [alarm_json(a, now) for a in queries.open_alarms(db)]}

    def alarm_history(self, search: str, limit: int) -> list[dict[str, object]]:
        now = self.cfg.clock()
        return [alarm_json(a, now) for a in self.read(lambda db: queries.alarm_history(db, search, limit))]

    def _plans(self, db: sqlite3.Connection) -> dict[str, Any]:
        files = Files.resolve(queries.meta_json(db, "files"), self.cfg.site)
        version, source, plan = self._active_plan(db, files)
        return {
            "store": self._ok(),
            "active": {"version": version, "source": source, "rules": len(plan.rules) if plan else None,
                       "from_file": version == 0},
            "history": queries.plans(db),
            "files": files.as_json(),
        }

    # ================================================================ trends
    def trends(self, hours: float) -> dict[str, Any]:
        now = self.cfg.clock()
        start = now - hours * 3600.0
        with self.store.reading() as db:
            fp = queries.fingerprint(db)
            self.tally.advance(db, fp.parcel_event, now, max_chunks=1)
            records = queries.health_records(db, start - HEALTH_SAMPLE_S)
            files = Files.resolve(queries.meta_json(db, "files"), self.cfg.site)
        table = [s for s in (sample_of(r) for r in records) if s is not None]
        fills = [f for f in (fill_of(r) for r in records) if f is not None]
        samples = table or list(self.health_samples)
        site, _err = self.sites.get(files.site)
        capacity = {c.id: c.capacity for c in site.chutes} if site else {}
        names = {c.id: c.name for c in site.chutes} if site else {}
        return {
            "store": self._ok(), "start": start, "end": now, "hours": hours,
            "parcels": parcel_series(self.tally, start, now),
            "health": health_series(samples, start),
            "health_source": "table" if table else ("hmi" if samples else "none"),
            # the service's own fill counts every 10 s (they survive an HMI restart); else this HMI's samples
            "chute_fill": fill_series(deque(fills) if fills else self.fill_samples, start, capacity, names),
            "fill_source": "table" if fills else ("hmi" if self.fill_samples else "none"),
            "tally_complete_since": now - KEEP_S,
        }


def _float(v: Any) -> float | None:
    try:
        return float(v) if v is not None and not isinstance(v, bool) else None
    except (TypeError, ValueError):
        return None


def _round(v: float | None, n: int) -> float | None:
    return None if v is None else round(v, n)
