"""A whole run: the simulator and the controller together, until every parcel is accounted for.

Shared by `sortctl demo`, the end-to-end tests and the e2e benchmark. The simulator runs either
in this process or as a child (`sortctl sim`, endpoints read from its first stdout line), so
that on a 2-core machine the controller and the simulator do not share one GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from control.routing.manifest import load_manifest
from control.routing.plan import load_plan
from control.routing.settings import load_settings
from control.service.app import Endpoints, Files, Service
from control.service.metrics import Metrics
from control.service.settings import ServiceSettings
from control.store import EventStore
from harness.audit import Audit, Truth, audit
from plant.children import signal_child
from plant.errors import ConfigError, printable
from plant.site import load_site
from plant.tagmap import load_tag_map
from plant.yamlfile import PathKey, read_yaml, validate
from plc_sim.parcels import read_manifest
from plc_sim.scenario import Scenario

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config"


@dataclass(slots=True)
class SessionConfig:
    parcels: int = 3000
    rate_per_hour: float = 40_000
    site: Path = CONFIG / "site.yaml"
    scenario: Path | None = None  # default: config/scenarios/demo.yaml if present, else a clean stream
    db: Path | None = None  # default: a fresh file under a temporary directory
    sim_process: bool = True
    seed: int = 7
    faults: list[dict[str, Any]] = field(default_factory=list)  # scenario fault specs (YAML shape)
    labels: dict[str, float] | None = None  # scenario label mix override
    settings: ServiceSettings = field(default_factory=ServiceSettings)
    timeout_s: float | None = None
    duration_s: float | None = None  # stop after this long even with parcels in flight (stopped-belt faults)
    restart_controller_at_s: float | None = None  # kill the controller then, start a new one on the same db
    camera: bool = True
    operator: list[tuple[float, str]] = field(default_factory=list)  # (at wall s, PackML command) as `status --send`


@dataclass(slots=True)
class Progress:
    elapsed_s: float
    inducted: int
    outcomes: dict[str, int]
    in_flight: int
    unit_state: str


@dataclass(slots=True)
class SessionResult:
    audit: Audit
    wall_s: float
    metrics: Metrics
    unit_state: str
    alarms: list[str]
    db: Path
    sim_stats: dict[str, Any]
    timed_out: bool
    truth: Truth

    @property
    def parcels_per_hour(self) -> float:
        return self.audit.sorted_planned / self.wall_s * 3600.0 if self.wall_s > 0 else 0.0


def scenario_data(cfg: SessionConfig) -> dict[str, Any]:
    """The scenario the run uses, as YAML data (with an absolute manifest path)."""
    return _scenario_source(cfg)[0]


def _scenario_source(cfg: SessionConfig) -> tuple[dict[str, Any], dict[PathKey, int], Path]:
    """The run's scenario data, the line of each of its values in the file, and the file.

    Read with the config loader (not ``yaml.safe_load``), so that a binary or malformed file
    is a ConfigError with a line; the lines let the merged data be validated against the
    user's file rather than the temporary copy the simulator gets.
    """
    path = cfg.scenario or CONFIG / "scenarios" / "demo.yaml"
    lines: dict[PathKey, int] = {}
    if cfg.scenario is not None or path.exists():
        raw, lines = read_yaml(path)
        if not isinstance(raw, dict):
            raise ConfigError(path, 1, "", "a scenario is a mapping (name:, arrivals:, faults: ...)")
        data: dict[str, Any] = raw
        base = path.parent
    else:
        data = {"name": "demo", "manifest": "manifest.csv", "arrivals": {}}
        base = CONFIG
    if "manifest" not in data:  # the model's default is relative to the scenario's folder too
        data["manifest"] = Scenario.model_fields["manifest"].default
    if data.get("manifest"):
        data["manifest"] = str((base / str(data["manifest"])).resolve())
    arrivals = dict(data.get("arrivals") or {})
    arrivals["rate_per_hour"] = cfg.rate_per_hour
    arrivals["count"] = cfg.parcels
    # parcels arrive once the belt sorts: none pile up at the induct while the controller starts
    # (a backlog released at the belt's full rate made short runs measure that, not the rate offered)
    arrivals["from_first_run"] = True
    data["arrivals"] = arrivals
    data["seed"] = cfg.seed
    data["auto_start"] = False
    if cfg.labels is not None:
        data["labels"] = cfg.labels
    if cfg.faults:
        data["faults"] = cfg.faults
        # a run's faults meet a sorting belt, however long the controller took to start
        data["faults_from_first_run"] = True
    return data, lines, path


def check_inputs(cfg: SessionConfig) -> None:
    """Validate every input file of a run before anything starts.

    A bad file is then a ConfigError naming file, line and field, instead of a simulator child
    that dies before printing its endpoints with the reason lost in its stderr.
    """
    site = load_site(cfg.site)
    load_tag_map(cfg.site.parent / site.plc.conveyor.tag_map)
    files = Files.beside(cfg.site)
    load_plan(files.plan, site)
    load_manifest(files.manifest)
    if files.routing is not None:
        load_settings(files.routing)
    data, lines, path = _scenario_source(cfg)
    scenario = validate(Scenario, data, path, lines)
    if scenario.manifest is not None:
        read_manifest(scenario.manifest)


class Session:
    def __init__(self, cfg: SessionConfig) -> None:
        self.cfg = cfg
        self._tmp = tempfile.TemporaryDirectory(prefix="sortcentre-")
        self.tmp = Path(self._tmp.name)
        self.db = cfg.db or self.tmp / "events.sqlite"
        self.service: Service | None = None

    def close(self) -> None:
        self._tmp.cleanup()

    # ------------------------------------------------------------------ the run
    async def run(self, progress: Callable[[Progress], None] | None = None) -> SessionResult:
        cfg = self.cfg
        scen_path = self.tmp / "scenario.yaml"
        scen_path.write_text(yaml.safe_dump(scenario_data(cfg)), encoding="utf-8")
        truth_path = self.tmp / "truth.json"
        sim = _ChildSim(cfg.site, scen_path, truth_path, cfg.camera, cfg.settings.control_nice) if cfg.sim_process else _LocalSim(
            cfg.site, scen_path, cfg.camera
        )
        endpoints = await sim.start()
        site = load_site(cfg.site)
        lap_s = site.sorter.length_mm / 1000.0 / site.sorter.speed_mps
        timeout = cfg.timeout_s or (
            cfg.parcels / cfg.rate_per_hour * 3600.0 + (site.sorter.recirculation_limit + 2) * lap_s + 30.0
        )
        t0 = time.monotonic()
        timed_out = False
        metrics = Metrics()
        service: Service | None = None
        try:
            service = self._service(endpoints)
            await service.__aenter__()
            restart_at = cfg.restart_controller_at_s
            operator = sorted(cfg.operator)
            task = asyncio.create_task(service.run())
            while True:
                await asyncio.sleep(0.25)
                c = service.controller
                el = time.monotonic() - t0
                if progress is not None:
                    progress(Progress(el, c.metrics.inducted_seen, dict(c.metrics.outcomes), len(c.table),
                                      c.unit.state.name))
                if task.done():
                    task.result()
                while operator and el >= operator[0][0]:
                    _, command = operator.pop(0)
                    await asyncio.to_thread(_send_command, self.db, command)
                if restart_at is not None and el >= restart_at:
                    restart_at = None
                    _merge(metrics, c.metrics)
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    old, service = service, None
                    await old.kill()
                    service = self._service(endpoints)
                    await service.__aenter__()
                    task = asyncio.create_task(service.run())
                    continue
                if c.metrics.inducted_seen >= cfg.parcels and len(c.table) == 0:
                    break
                if cfg.duration_s is not None and el >= cfg.duration_s:
                    break
                if el > timeout:
                    timed_out = True
                    log.warning("run timed out after %.0f s with %d parcels in flight", el, len(c.table))
                    break
            service.stop()
            await task
            wall = time.monotonic() - t0
            c = service.controller
            _merge(metrics, c.metrics)
            unit_state = c.unit.state.name
            alarms = sorted(f.name.lower() for f in c.active_faults)
        finally:
            if service is not None:
                await service.close()
            truth, stats = await sim.stop()
        store = EventStore(self.db, readonly=True)
        try:
            rows = store.parcels()
            recirc = store.status().recirculations
        finally:
            store.close()
        return SessionResult(
            audit(rows, truth, recirc), wall, metrics, unit_state, alarms, self.db, stats, timed_out, truth
        )

    def _service(self, ep: Endpoints) -> Service:
        files = Files.beside(self.cfg.site)
        svc = Service.from_files(files, self.db, self.cfg.settings, ep, manifest_time=True, camera=self.cfg.camera)
        self.service = svc
        return svc


def _send_command(db: Path, command: str) -> None:
    store = EventStore(db)
    try:
        store.add_command(command.upper(), time.time())
    finally:
        store.close()


def _merge(into: Metrics, m: Metrics) -> None:
    for name in ("decision_s", "arm_confirmed_s", "scan_to_decision_s", "cycle_lag_s", "cycle_work_s", "read_s",
                 "decide_s", "commit_s", "publish_s"):
        getattr(into, name).extend(getattr(m, name))
    into.cycles += m.cycles
    into.decode_timeouts += m.decode_timeouts
    into.store_failures += m.store_failures
    into.glitches += m.glitches
    into.gaps += m.gaps


class _LocalSim:
    """The simulator in this process (simplest; shares the GIL with the controller)."""

    def __init__(self, site: Path, scenario: Path, camera: bool) -> None:
        from plc_sim.cli import load_inputs
        from plc_sim.simulator import Ports, Simulator

        ns = _Args(site, scenario)
        s, scen, manifest = load_inputs(ns)  # type: ignore[arg-type]
        tags = load_tag_map(site.parent / s.plc.conveyor.tag_map)
        self.sim = Simulator(s, tags, scen, manifest=manifest, ports=Ports(0, 0, 0), camera=camera)

    async def start(self) -> Endpoints:
        await self.sim.start()
        ep = self.sim.endpoints
        return Endpoints(ep["conveyor"]["port"], ep["diverter"]["port"], ep.get("camera", {}).get("port"))

    async def stop(self) -> tuple[Truth, dict[str, Any]]:
        stats = self.sim.stats
        truth = Truth.from_records(self.sim.ground_truth().records())
        await self.sim.stop()
        return truth, stats


def _tail(path: Path, lines: int = 15) -> str:
    """The last lines of a child's stderr, made printable (it may hold a traceback, or worse)."""
    try:
        text = path.read_bytes()[-8000:].decode("utf-8", errors="replace")
    except OSError as exc:
        return f"(no stderr: {exc.strerror})"
    tail = [printable(ln, 300) for ln in text.splitlines()[-lines:]]
    return "\n".join(tail) or "(nothing on stderr)"


@dataclass(slots=True)
class _Args:
    site: Path
    scenario: Path
    auto_start: bool = False


class _ChildSim:
    """`sortctl sim` in a child process: its own interpreter, its own core."""

    def __init__(self, site: Path, scenario: Path, truth: Path, camera: bool, nice: int | None) -> None:
        self.stderr = truth.with_name("sim-stderr.log")  # kept beside the run's other files
        self.args = [
            sys.executable, "-m", "sortctl", "sim", "--site", str(site), "--scenario", str(scenario),
            "--port-base", "0", "--ground-truth", str(truth), "--json", "--parent-pid", str(os.getpid()),
        ]
        if nice is not None:  # the PLCs' stand-in at the controller's priority (real PLCs have their own CPU)
            self.args += ["--nice", str(nice)]
        if not camera:
            self.args.append("--no-camera")
        self.truth = truth
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Endpoints:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        # stderr to a file, not a pipe: nobody reads a pipe during the run, and a full one would
        # block the simulator; the file's end says why a child died early.
        with self.stderr.open("wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *self.args, stdout=asyncio.subprocess.PIPE, stderr=err, cwd=str(ROOT), env=env
            )
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), 60.0)
        except TimeoutError:
            line = b""
        try:
            ep = json.loads(line)["endpoints"] if line else None
        except (ValueError, KeyError, TypeError):
            ep = None
        if ep is None:  # no endpoints: the child is of no use; never leave it running
            if not line:  # its stdout ended: it is on its way out, let it say with which code
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.proc.wait(), 5.0)
            signal_child(self.proc, signal.SIGKILL)
            code = await asyncio.wait_for(self.proc.wait(), 10.0)
            raise RuntimeError(f"sortctl sim exited (code {code}) before printing its endpoints; its last "
                               f"output:\n{_tail(self.stderr)}")
        return Endpoints(ep["conveyor"]["port"], ep["diverter"]["port"], ep.get("camera", {}).get("port"))

    async def stop(self) -> tuple[Truth, dict[str, Any]]:
        assert self.proc is not None and self.proc.stdout is not None
        signal_child(self.proc, signal.SIGTERM)
        out = await asyncio.wait_for(self.proc.stdout.read(), 60.0)
        await self.proc.wait()
        stats: dict[str, Any] = {}
        for raw in out.decode().splitlines():
            with contextlib.suppress(ValueError):
                stats = json.loads(raw).get("summary", stats)
        return Truth.from_json(self.truth), stats
