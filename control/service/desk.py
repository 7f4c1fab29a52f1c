"""The operator's commands that are the controller's own, not the belt's: chutes out of service,
the unit mode, alarm acknowledgement and shelving, sort plan versions and pre-advice updates.

The belt's PackML commands wait for the belt PLC's answer (the supervisor); these are answered
here, in the batch that carries their effect, so a command is marked done exactly when what it
did is durable. A sort plan or a manifest update is validated and compiled off the control
thread and swapped in between two cycles; until then the old one keeps routing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from control.packml import PackMLUnit
from control.routing.engine import PreparedPlan, RoutingEngine
from control.routing.manifest import Manifest, manifest_from_csv_text, merge_manifests
from control.service.feeds import Router
from control.service.parcels import ParcelFlow
from control.service.routing import EngineRouter, PlanSource
from control.service.supervisor import OperatorCommand
from control.store import AlarmAck, AlarmRow, AlarmShelve, Batch, PlanRow
from plant.codes import UnitMode
from plant.errors import ConfigError
from plant.site import ChuteKind, Site

log = logging.getLogger(__name__)

__all__ = ["DESK_COMMANDS", "MAX_TEXT", "Desk"]

DESK_COMMANDS = frozenset({
    "CHUTE_OUT", "CHUTE_IN", "MODE", "ALARM_ACK", "ALARM_SHELVE", "ALARM_UNSHELVE",
    "PLAN_ACTIVATE", "PLAN_ROLLBACK", "MANIFEST_ADD",
})
MAX_TEXT = 20_000_000  # characters of a plan or a pre-advice batch sent as a command
MAX_SHELVE_MIN = 12 * 60.0  # a shelved alarm comes back by itself within a shift
SHOWN_BAD_ROWS = 5


def _num(v: object) -> float:
    """A number from a command's JSON arguments (an int, a float, or its text)."""
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise ValueError(f"not a number: {v!r}")
    return float(v)


@dataclass(slots=True)
class _Work:
    """A plan or manifest being compiled off the control thread."""

    command: OperatorCommand
    task: asyncio.Future[object]
    what: str  # "plan" or "manifest"
    source: PlanSource | None = None
    version: int = 0
    rollback_of: int = 0
    note: str = ""


@dataclass(slots=True)
class _Plans:
    """Versions as the store knows them: the active one, and the ones it replaced (for rollback)."""

    rows: dict[int, PlanRow] = field(default_factory=dict)
    active: int = 0

    @property
    def next_version(self) -> int:
        return max(self.rows, default=0) + 1

    def previous(self) -> PlanRow | None:
        """The plan the active one replaced: the latest replaced version that is not active."""
        done = [v for v, r in self.rows.items() if r.state == "replaced" and v != self.active]
        return self.rows[max(done)] if done else None


class Desk:
    def __init__(
        self, site: Site, parcels: ParcelFlow, unit: PackMLUnit, router: Router, wall: Callable[[], float]
    ) -> None:
        self.site = site
        self.parcels = parcels
        self.unit = unit
        self.router = router
        self.wall = wall
        self.chutes = {c.id: c for c in site.chutes}
        self.out: dict[int, dict[str, object]] = {}  # chute -> who took it out, when, why
        self.plans = _Plans()
        self._work: list[_Work] = []

    # ------------------------------------------------------------------ start-up
    def restore_chutes(self, chutes_out: str) -> None:
        """Chutes an operator took out stay out across a restart (they are out for a reason)."""
        try:
            data = json.loads(chutes_out) if chutes_out else {}
        except ValueError:
            data = {}
        for key, who in data.items():
            cid = int(key)
            if cid in self.chutes:
                self.out[cid] = dict(who)
                self.parcels.set_chute_out(cid, True)
        if self.out:
            log.info("chutes out of service (kept from before the restart): %s", sorted(self.out))

    async def restore_plan(self, rows: list[PlanRow], batch: Batch) -> None:
        """Which plan runs after a start: the store's active version, unless the plan file the
        service was started with differs from the one last recorded from that file (an
        engineer changed the file: it is the newer intent). Either way the running plan has a
        version, and every decision carries it."""
        self.plans = _Plans({r.version: r for r in rows})
        active = [r for r in rows if r.state == "active"]
        self.plans.active = max((r.version for r in active), default=0)
        router = self.router
        if not isinstance(router, EngineRouter):
            return
        started = router.source
        from_file = [r for r in rows if r.source == started.source]
        last_file = max(from_file, key=lambda r: r.version) if from_file else None
        current = self.plans.rows.get(self.plans.active)
        if current is not None and last_file is not None and (
            last_file.plan_csv, last_file.settings_yaml) == (started.plan_csv, started.settings_yaml):
            if current.version != last_file.version or current.plan_csv != started.plan_csv:
                src = PlanSource(current.plan_csv, current.settings_yaml, current.source)
                try:
                    prepared = await asyncio.to_thread(router.prepare, src)
                except ConfigError as exc:  # a stored plan the site no longer takes: run the file's
                    log.error("stored sort plan version %d no longer fits the site (%s): running the plan file",
                              current.version, exc)
                else:
                    router.swap(prepared, src, current.version)
                    log.info("sort plan version %d (%s, by %s) restored", current.version, current.source,
                             current.user or "-")
                    return
            router.plan_version = current.version
            log.info("sort plan version %d (%s)", current.version, current.source)
            return
        version = self.plans.next_version
        self._record(PlanRow(version, self.wall(), "", started.source, started.plan_csv,
                             started.settings_yaml, "active", "loaded at start"), batch)
        router.plan_version = version
        log.info("sort plan version %d from %s", version, started.source)

    # ------------------------------------------------------------------ commands
    def take(self, c: OperatorCommand, batch: Batch, alarms: dict[int, AlarmRow]) -> None:
        """Carry out one command now, or start its background work (plans, manifests)."""
        try:
            result = self._take(c, batch, alarms)
        except (KeyError, TypeError, ValueError) as exc:
            result = f"refused: bad arguments {json.dumps(c.args)[:200]} ({exc})"
        if result is not None:
            self._done(c, result, batch)

    def _take(self, c: OperatorCommand, batch: Batch, alarms: dict[int, AlarmRow]) -> str | None:
        a = c.args
        if c.name in ("CHUTE_OUT", "CHUTE_IN"):
            return self._chute(int(_num(a["chute"])), c.name == "CHUTE_OUT", c.user, str(a.get("reason", "")), batch)
        if c.name == "MODE":
            return self._mode(str(a["mode"]).upper(), c.user, batch)
        if c.name == "ALARM_ACK":
            return self._ack(int(_num(a.get("alarm", 0))), c.user, batch, alarms)
        if c.name in ("ALARM_SHELVE", "ALARM_UNSHELVE"):
            return self._shelve(c, batch, alarms)
        if c.name == "PLAN_ACTIVATE":
            return self._activate(c, batch)
        if c.name == "PLAN_ROLLBACK":
            return self._rollback(c, batch)
        if c.name == "MANIFEST_ADD":
            return self._manifest(c)
        return f"unknown command {c.name!r}"

    def _chute(self, cid: int, out: bool, user: str, reason: str, batch: Batch) -> str:
        chute = self.chutes.get(cid)
        if chute is None:
            return f"refused: no chute {cid} in the site"
        if out and chute.kind == ChuteKind.REJECT:
            return f"refused: chute {cid} is the reject chute, the end of the line for every exception"
        if out == (cid in self.out):
            return f"accepted: chute {cid} was already {'out of' if out else 'in'} service"
        if out:
            self.out[cid] = {"by": user, "t": self.wall(), "reason": reason}
        else:
            self.out.pop(cid, None)
        self.parcels.set_chute_out(cid, out)
        self.parcels.check_destinations(batch)
        batch.meta["chutes_out"] = json.dumps({str(k): v for k, v in sorted(self.out.items())})
        what = "out of service" if out else "back in service"
        batch.unit_event(self.wall(), "chute", f"chute_{'out' if out else 'in'}", cid,
                         f"chute {cid} {chute.name} {what} by {user or '-'}" + (f": {reason}" if reason else ""))
        log.info("chute %d %s %s by %s%s", cid, chute.name, what, user or "-", f" ({reason})" if reason else "")
        return f"accepted: chute {cid} {what}"

    def _mode(self, name: str, user: str, batch: Batch) -> str:
        try:
            mode = UnitMode[name]
        except KeyError:
            return f"refused: no mode {name!r} (PRODUCTION, MAINTENANCE, MANUAL)"
        if mode == self.unit.mode:
            return f"accepted: already in {mode.name}"
        out = self.unit.set_mode(mode)
        if not out.accepted:
            return f"refused: {out.reason} (stop the sorter first)"
        batch.unit_event(self.wall(), "mode", mode.name, int(mode), f"by {user or '-'}")
        return f"accepted: mode {mode.name}"

    def _ack(self, alarm_id: int, user: str, batch: Batch, alarms: dict[int, AlarmRow]) -> str:
        t = self.wall()
        if alarm_id == 0:
            todo = [a for a in alarms.values() if a.acked_t is None]
            batch.alarm_ops += [AlarmAck(t, a.id, user) for a in todo]
            return f"accepted: {len(todo)} alarms acknowledged"
        a = alarms.get(alarm_id)
        if a is None:
            return f"refused: alarm {alarm_id} is not open"
        if a.acked_t is not None:
            return f"accepted: alarm {alarm_id} was already acknowledged by {a.acked_by or '-'}"
        batch.alarm_ops.append(AlarmAck(t, alarm_id, user))
        return f"accepted: alarm {alarm_id} ({a.name}) acknowledged"

    def _shelve(self, c: OperatorCommand, batch: Batch, alarms: dict[int, AlarmRow]) -> str:
        alarm_id = int(_num(c.args["alarm"]))
        a = alarms.get(alarm_id)
        if a is None:
            return f"refused: alarm {alarm_id} is not open"
        if c.name == "ALARM_UNSHELVE":
            batch.alarm_ops.append(AlarmShelve(alarm_id, None, c.user, ""))
            return f"accepted: alarm {alarm_id} unshelved"
        minutes = _num(c.args["minutes"])
        reason = str(c.args.get("reason", "")).strip()
        if not reason:
            return "refused: shelving needs a reason"
        if not 0 < minutes <= MAX_SHELVE_MIN:
            return f"refused: shelve for 0 to {MAX_SHELVE_MIN:.0f} minutes, not {minutes:g}"
        batch.alarm_ops.append(AlarmShelve(alarm_id, self.wall() + minutes * 60.0, c.user, reason))
        return f"accepted: alarm {alarm_id} ({a.name}) shelved for {minutes:g} min"

    # ------------------------------------------------------------------ plans
    def _engine_router(self) -> EngineRouter | None:
        return self.router if isinstance(self.router, EngineRouter) else None

    def _activate(self, c: OperatorCommand, batch: Batch) -> str | None:
        router = self._free_router("sort plans")
        if isinstance(router, str):
            return router
        plan_csv = str(c.args.get("plan_csv", ""))
        settings_yaml = str(c.args.get("settings_yaml", ""))
        if len(plan_csv) > MAX_TEXT or len(settings_yaml) > MAX_TEXT:
            return f"refused: a sort plan is at most {MAX_TEXT // 1_000_000} MB"
        src = PlanSource(plan_csv, settings_yaml, str(c.args.get("source", "")) or "uploaded plan")
        version = self.plans.next_version
        self._work.append(_Work(c, asyncio.ensure_future(asyncio.to_thread(router.prepare, src)), "plan", src, version))
        return None

    def _rollback(self, c: OperatorCommand, batch: Batch) -> str | None:
        router = self._free_router("sort plans")
        if isinstance(router, str):
            return router
        prev = self.plans.previous()
        if prev is None:
            return "refused: no earlier sort plan version to roll back to"
        src = PlanSource(prev.plan_csv, prev.settings_yaml, prev.source)
        self._work.append(_Work(c, asyncio.ensure_future(asyncio.to_thread(router.prepare, src)), "plan", src,
                                prev.version, rollback_of=self.plans.active))
        return None

    def _manifest(self, c: OperatorCommand) -> str | None:
        router = self._free_router("manifest")
        if isinstance(router, str):
            return router
        text = str(c.args.get("csv", ""))
        if len(text) > MAX_TEXT:
            return f"refused: a pre-advice batch is at most {MAX_TEXT // 1_000_000} MB"
        source = str(c.args.get("source", "")) or "pre-advice"
        base, engine = router.manifest, router.engine
        self._work.append(_Work(c, asyncio.ensure_future(asyncio.to_thread(_extend, engine, base, text, source)),
                                "manifest"))
        return None

    def _free_router(self, takes: str) -> EngineRouter | str:
        """The router a plan or manifest command compiles for, or why the command cannot start:
        a router that takes no plans, or another compile still running (one at a time)."""
        router = self._engine_router()
        if router is None:
            return f"refused: this service's router takes no {takes}"
        if self._work:
            return "refused: another sort plan or manifest update is being prepared; try again when it is done"
        return router

    def poll(self, batch: Batch) -> None:
        """Between two cycles: swap in what finished compiling and answer its command."""
        still: list[_Work] = []
        for w in self._work:
            if not w.task.done():
                still.append(w)
                continue
            exc = w.task.exception()
            if w.what == "plan":
                self._plan_done(w, batch, exc)
            else:
                self._manifest_done(w, batch, exc)
        self._work = still

    def _plan_done(self, w: _Work, batch: Batch, exc: BaseException | None) -> None:
        router = self._engine_router()
        assert router is not None and w.source is not None
        c, src, t = w.command, w.source, self.wall()
        if exc is not None:
            why = str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
            if not w.rollback_of:
                self._record(PlanRow(w.version, t, c.user, src.source, src.plan_csv, src.settings_yaml, "refused", why),
                             batch)
            log.warning("sort plan from %s refused (%s): %s", c.user or "-", src.source, why)
            self._done(c, f"refused: {why}", batch)
            return
        prepared = w.task.result()
        assert isinstance(prepared, PreparedPlan)
        old = self.plans.rows.get(self.plans.active)
        router.swap(prepared, src, w.version)
        if old is not None:
            state = "rolled_back" if w.rollback_of else "replaced"
            self._record(PlanRow(old.version, old.t, old.user, old.source, old.plan_csv, old.settings_yaml, state,
                                 f"{state.replace('_', ' ')} by {c.user or '-'} at {_clock(t)}"), batch)
        if w.rollback_of:
            prev = self.plans.rows[w.version]
            self._record(PlanRow(prev.version, prev.t, prev.user, prev.source, prev.plan_csv, prev.settings_yaml,
                                 "active", f"active again: rollback by {c.user or '-'}"), batch)
            what = f"rolled back from version {w.rollback_of} to version {w.version}"
        else:
            self._record(PlanRow(w.version, t, c.user, src.source, src.plan_csv, router.source.settings_yaml,
                                 "active", ""), batch)
            what = f"sort plan version {w.version} active ({len(prepared.tables.plan.rules)} rules)"
        batch.unit_event(t, "plan", "plan_rollback" if w.rollback_of else "plan_activate", w.version,
                         f"{what}, by {c.user or '-'}")
        log.info("%s, by %s", what, c.user or "-")
        self._done(c, f"accepted: {what}", batch)

    def _manifest_done(self, w: _Work, batch: Batch, exc: BaseException | None) -> None:
        router = self._engine_router()
        assert router is not None
        c = w.command
        if exc is not None:
            why = str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
            self._done(c, f"refused: {why}", batch)
            return
        result = w.task.result()
        assert isinstance(result, _Extended)
        engine = result.engine
        engine.take_state(router.engine)
        router.engine, router.manifest = engine, engine.manifest
        added = len(engine.manifest) - result.base_rows
        bad = [i.format(result.source) for i in result.more.issues(SHOWN_BAD_ROWS)]
        n_bad = len(result.more.bad_line)
        dup = result.duplicate_lines
        parts = [f"{added} rows added"]
        if n_bad:
            parts.append(f"{n_bad} rows rejected (first: {'; '.join(bad)})")
        if len(dup):
            parts.append(f"{len(dup)} parcels already pre-advised (lines {', '.join(map(str, dup[:SHOWN_BAD_ROWS].tolist()))})")
        what = ", ".join(parts)
        batch.unit_event(self.wall(), "manifest", "manifest_add", added, f"{result.source}: {what}, by {c.user or '-'}")
        (log.warning if n_bad or len(dup) else log.info)("pre-advice %s: %s", result.source, what)
        self._done(c, f"accepted: {what}", batch)

    # ------------------------------------------------------------------ bookkeeping
    def _record(self, row: PlanRow, batch: Batch) -> None:
        self.plans.rows[row.version] = row
        if row.state == "active":
            self.plans.active = row.version
        batch.plans.append(row)

    def _done(self, c: OperatorCommand, result: str, batch: Batch) -> None:
        batch.commands_done.append((result, c.id))
        who = c.user or "-"
        batch.unit_event(self.wall(), "operator", c.name, 0, f"{who}: {result}"[:500])

    def chutes_meta(self, fill: list[int] | None = None) -> str:
        """The chutes as the HMI shows them: status bits, fill, and who took which out."""
        st = self.parcels.plc_chute_status  # the PLC's own flags; "out" says what an operator did
        out = []
        for cid, ch in sorted(self.chutes.items()):
            who = self.out.get(cid, {})
            out.append({
                "id": cid, "name": ch.name, "kind": ch.kind.value, "status": int(st[cid]) if cid < len(st) else 0,
                "fill": fill[cid] if fill is not None and cid < len(fill) else None, "capacity": ch.capacity,
                "out": cid in self.out, "out_by": who.get("by", ""), "out_reason": who.get("reason", ""),
            })
        return json.dumps(out, separators=(",", ":"))


def _clock(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


@dataclass(frozen=True, slots=True)
class _Extended:
    engine: RoutingEngine
    base_rows: int
    more: Manifest
    duplicate_lines: npt.NDArray[np.int64]
    source: str


def _extend(engine: RoutingEngine, base: Manifest, text: str, source: str) -> _Extended:
    """Off the control thread: parse and check the new rows, build an engine over the merged
    manifest with the same plan and settings (its index built here, not on the first lookup)."""
    more = manifest_from_csv_text(text, source)
    merged, dup = merge_manifests(base, more)
    _ = merged.index  # built here, off the control thread
    new = RoutingEngine(engine.site, engine.plan, merged, engine.settings)
    return _Extended(new, len(base), more, dup, source)
