"""The simulator in one object: world, PLC programs, PLC memory images, camera, faults, clock.

``Simulator`` is what the CLI, the end-to-end demo and tests run: ``start()`` opens the
servers and starts the scan loop; ``endpoints`` says where to connect; ``ground_truth()`` says
where every parcel really is. With a VirtualClock the scan loop runs as fast as the CPU allows.

``transport="memory"`` builds the PLCs' memory images without servers (no socket, no camera):
``harness.memlink.memory_link(sim, "conveyor")`` connects the real controller to them. With
``scan_loop=False`` nothing runs by itself: the caller advances the world with ``scan(dt)``
between controller cycles, so a run in virtual time is the same run every time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from plant.site import Site
from plant.tagmap import TagMap
from plc_sim.camera import CameraServer, Render, label_view
from plc_sim.clock import Clock, RealClock
from plc_sim.faults import Faults
from plc_sim.parcels import Manifest, ParcelSource
from plc_sim.plc_io import PlcIo
from plc_sim.plc_logic import ConveyorProgram, DiverterProgram
from plc_sim.scenario import Scenario
from plc_sim.servers import ConveyorImage, ConveyorMemory, DiverterImage, DiverterMemory
from plc_sim.truth import GroundTruth
from plc_sim.world import StepEvents, World

if TYPE_CHECKING:
    from plc_sim.servers import ConveyorPlcServer, DiverterPlcServer

log = logging.getLogger(__name__)

Transport = Literal["network", "memory"]


@dataclass(frozen=True, slots=True)
class Ports:
    """Where to listen: None = the site's ports; 0 = any free port."""

    conveyor: int | None = None
    diverter: int | None = None
    camera: int | None = None

    @classmethod
    def base(cls, base: int) -> Ports:
        return cls(0, 0, 0) if base == 0 else cls(base, base + 1, base + 2)


class Simulator:
    """Both PLCs and the camera of one sorter, over real OPC UA, Modbus TCP and TCP, or in memory.

    ``conveyor_plc`` and ``diverter_plc`` are the PLCs' memory images whatever the transport
    (the servers, or ``ConveyorMemory``/``DiverterMemory``); the fault injector acts on them.
    """

    def __init__(
        self,
        site: Site,
        tags: TagMap,
        scenario: Scenario,
        *,
        manifest: Manifest | None = None,
        clock: Clock | None = None,
        tick_s: float = 0.01,
        ports: Ports = Ports(),
        encoder_start: int = 0,
        camera: bool = True,
        camera_size: tuple[int, int] | None = None,
        render: Render | None = None,
        transport: Transport = "network",
        scan_loop: bool = True,
    ) -> None:
        if transport not in ("network", "memory"):
            raise ValueError(f"unknown transport {transport!r}: network or memory")
        self.site = site
        self.tags = tags
        self.scenario = scenario
        self.clock: Clock = clock or RealClock()
        self.tick_s = tick_s
        self.world = World(site, ParcelSource(scenario, site.sorter.min_gap_mm, manifest), encoder_start=encoder_start)
        self.conveyor = ConveyorProgram(self.world, auto_start=scenario.auto_start)
        self.diverter = DiverterProgram(self.world)
        self.transport: Transport = transport
        self.scan_loop = scan_loop
        p = site.plc
        self._conveyor_server: ConveyorPlcServer | None = None
        self._diverter_server: DiverterPlcServer | None = None
        self._conveyor_memory: ConveyorMemory | None = None
        self._diverter_memory: DiverterMemory | None = None
        self.conveyor_plc: ConveyorImage
        self.diverter_plc: DiverterImage
        self.camera: CameraServer | None = None
        if transport == "memory":
            self._conveyor_memory = ConveyorMemory(tags.conveyor)
            self._diverter_memory = DiverterMemory(tags.diverter)
            self.conveyor_plc, self.diverter_plc = self._conveyor_memory, self._diverter_memory
        else:
            from plc_sim.servers import ConveyorPlcServer, DiverterPlcServer

            cport = p.conveyor.port if ports.conveyor is None else ports.conveyor
            dport = p.diverter.port if ports.diverter is None else ports.diverter
            self._conveyor_server = ConveyorPlcServer(
                tags.conveyor, p.conveyor.host, cport, p.conveyor.path, security=scenario.plc.opcua_security
            )
            self._diverter_server = DiverterPlcServer(tags.diverter, p.diverter.host, dport, p.diverter.device_id)
            self.conveyor_plc, self.diverter_plc = self._conveyor_server, self._diverter_server
            if camera:
                size = camera_size or (p.camera.width, p.camera.height)
                kw: dict[str, Any] = {"render": render} if render is not None else {}
                self.camera = CameraServer(
                    p.camera.host, p.camera.port if ports.camera is None else ports.camera, size, seed=scenario.seed, **kw
                )
        self.io = PlcIo(site, self.world, self.conveyor, self.diverter, self.conveyor_plc, self.diverter_plc)
        self.faults = Faults(self.world, self.conveyor, self.conveyor_plc, self.diverter_plc, self.camera)
        self.faults.schedule(scenario.faults, from_first_run=scenario.faults_from_first_run)
        self.lagged_scans = 0
        self.scans = 0
        self._rng = np.random.default_rng(scenario.seed + 1)
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._done = asyncio.Event()
        self._scanned = asyncio.Condition()

    # ---- lifecycle -----------------------------------------------------------------------
    @property
    def conveyor_server(self) -> ConveyorPlcServer:
        """The conveyor's OPC UA server (network transport only)."""
        if self._conveyor_server is None:
            raise RuntimeError("this simulator keeps its PLCs in memory: use conveyor_plc / conveyor_memory")
        return self._conveyor_server

    @property
    def diverter_server(self) -> DiverterPlcServer:
        """The diverter's Modbus TCP server (network transport only)."""
        if self._diverter_server is None:
            raise RuntimeError("this simulator keeps its PLCs in memory: use diverter_plc / diverter_memory")
        return self._diverter_server

    @property
    def conveyor_memory(self) -> ConveyorMemory:
        """The conveyor's memory image, for a memory link (memory transport only)."""
        if self._conveyor_memory is None:
            raise RuntimeError("this simulator serves its PLCs over the network: build it with transport='memory'")
        return self._conveyor_memory

    @property
    def diverter_memory(self) -> DiverterMemory:
        """The diverter's memory image, for a memory link (memory transport only)."""
        if self._diverter_memory is None:
            raise RuntimeError("this simulator serves its PLCs over the network: build it with transport='memory'")
        return self._diverter_memory

    async def start(self) -> None:
        """Bring the PLCs up with their power-on values; then, unless ``scan_loop`` is False, scan
        on the clock in the background."""
        await self.conveyor_plc.start()
        await self.diverter_plc.start()
        if self.camera is not None:
            await self.camera.start()
        await self.io.initialise()
        if self.scan_loop:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.faults.aclose()
        if self.camera is not None:
            await self.camera.stop()
        await self.diverter_plc.stop()
        await self.conveyor_plc.stop()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run_until(self, sim_time_s: float) -> None:
        """Wait until the world's clock reaches ``sim_time_s`` (or the simulator stops)."""
        async with self._scanned:
            await self._scanned.wait_for(lambda: self.world.time_s >= sim_time_s or self._done.is_set())

    @property
    def endpoints(self) -> dict[str, Any]:
        """Where to connect; in memory, only the images' names (``memory://conveyor``)."""
        if self._conveyor_memory is not None and self._diverter_memory is not None:
            return {"conveyor": {"url": self._conveyor_memory.url}, "diverter": {"url": self._diverter_memory.url}}
        d = self.site.plc.diverter
        out: dict[str, Any] = {
            "conveyor": {"url": self.conveyor_server.url, "port": self.conveyor_server.port},
            "diverter": {"host": d.host, "port": self.diverter_server.port, "device_id": d.device_id},
        }
        if self.camera is not None:
            out["camera"] = {"host": self.camera.host, "port": self.camera.port}
        return out

    # ---- scan loop -------------------------------------------------------------------------
    async def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                target = self.world.time_s + self.tick_s
                await self.clock.sleep_until(target)
                dt = self.tick_s
                if not self.clock.virtual:
                    behind = self.clock.now() - self.world.time_s
                    if behind > 2 * self.tick_s:
                        self.lagged_scans += 1
                        dt = min(behind, 0.5)  # catch up: the physics is exact at any step
                await self.scan(dt)
        except Exception:
            log.exception("simulator scan loop failed")
            raise
        finally:
            self._done.set()
            async with self._scanned:
                self._scanned.notify_all()

    async def scan(self, dt: float) -> StepEvents:
        """One PLC scan: read the host, run the programs, move the world, publish."""
        now = self.world.time_s
        self.scans += 1
        await self.io.read_inputs(now)
        self.faults.due(now)
        ev = self.world.step(dt)
        if ev.encoder_jump:  # both PLCs read the same encoder
            self.conveyor.encoder_fault()
            self.diverter.encoder_fault(len(ev.dropped))
        await self.io.publish(ev, self.world.time_s)
        if self.camera is not None:
            for tid, count, _lap in ev.scans:
                pid, second, kind, severity, symb = self.world.parcel_label(tid)
                labels, deg = label_view(pid, second, kind, severity, symb, self._rng)
                self.camera.trigger(tid, count, labels, deg)
        async with self._scanned:
            self._scanned.notify_all()
        return ev

    # ---- results ---------------------------------------------------------------------------
    def ground_truth(self) -> GroundTruth:
        return self.world.ground_truth()

    def write_ground_truth(self, path: str | Path) -> None:
        self.world.ground_truth().write(path)

    @property
    def stats(self) -> dict[str, Any]:
        w = self.world
        gt = w.ground_truth()
        per_chute = gt.per_chute()
        reject = self.site.reject_chute.id
        out: dict[str, Any] = {
            "sim_time_s": round(w.time_s, 3),
            "inducted": len(gt),
            "induct_backlog": gt.waiting,
            "on_belt": w.parcels_on_belt(),
            "sorted_per_chute": per_chute,
            "rejected": per_chute.get(reject, 0),
            "recirculated": int((gt.laps > 0).sum()),
            "lost": int((gt.state == 2).sum()),
            "gap_violations": w.stats.gap_violations,
            "fires": w.stats.fires,
            "fires_empty": w.stats.fires_empty,
            "fires_stuck": w.stats.fires_stuck,
            "chute_overflow": w.stats.overflow,
            "wrong_parcel_diverted": int(gt.wrong_parcel().sum()),
            "arm_results": dict(self.io.arm_results),
            "ring_overflows": dict(self.io.ring_overflows),
            "belt_state": self.conveyor.state.name,
            "conveyor_faults": int(self.conveyor.faults),
            "diverter_faults": int(self.diverter.faults),
            "watchdog_trips": self.conveyor.watchdog_trips,
            "arms_dropped_by_watchdog": self.diverter.dropped_arms,
            "encoder_faults": w.stats.encoder_faults,
            "arms_dropped_by_encoder": w.stats.arms_dropped_encoder,
            "lagged_scans": self.lagged_scans,
            "faults": [
                {"at_s": round(f.at_s, 3), "kind": f.kind, "detail": f.detail, "active": f.active}
                for f in self.faults.history
            ],
        }
        if self.camera is not None:
            cs = self.camera.stats
            out["camera"] = {"triggers": cs.triggers, "frames": cs.frames, "dropped": cs.dropped, "skipped": cs.skipped,
                             **cs.lag_summary()}
        return out
