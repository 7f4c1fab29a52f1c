"""Fault injection: one API for scheduled (scenario) and runtime faults.

Each fault acts on the part a real fault would hit: the world (jam, chute, diverter, encoder),
a PLC program (e-stop), a protocol server (connection drop, warm restart, slow answers), a
PLC's mains (power cycle: the world, the program and its server all follow ``World.power``) or
the camera (stall). Label faults are part of the parcel stream (scenario ``labels``), not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass

from plant.codes import PackMLState
from plc_sim.camera import CameraServer
from plc_sim.plc_logic import ConveyorProgram
from plc_sim.scenario import FaultSpec
from plc_sim.servers import ConveyorImage, DiverterImage, PlcImage
from plc_sim.world import Eye, World
from plc_sim.world import Plc as OnePlc

log = logging.getLogger(__name__)

Plc = str  # "conveyor" | "diverter" | "both"


@dataclass(frozen=True, slots=True)
class FaultEvent:
    at_s: float
    kind: str
    detail: str
    active: bool  # False when the fault ends


class Faults:
    """Inject and clear faults; keeps a history of what happened when (simulated seconds)."""

    def __init__(
        self,
        world: World,
        conveyor: ConveyorProgram,
        conveyor_server: ConveyorImage | None = None,
        diverter_server: DiverterImage | None = None,
        camera: CameraServer | None = None,
    ) -> None:
        self.world = world
        self.conveyor = conveyor
        self.cs = conveyor_server
        self.ds = diverter_server
        self.camera = camera
        self.history: list[FaultEvent] = []
        self._schedule: list[FaultSpec] = []
        self._ending: list[tuple[float, FaultSpec]] = []
        self.from_first_run = False
        self._origin: float | None = None  # when the belt first ran (from_first_run)
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- runtime API -------------------------------------------------------------------
    def jam(self, eye: str | int = "induct") -> None:
        """A parcel blocks a photo-eye; the conveyor PLC stops the belt until Reset."""
        code = Eye.INDUCT if eye == "induct" else Eye.SCANNER if eye == "scanner" else 100 + int(eye)
        self.world.jam(int(code))
        self._log("jam", f"eye {eye}", True)

    def estop(self, pressed: bool = True) -> None:
        if pressed:
            self.conveyor.press_estop()
        else:
            self.conveyor.release_estop()
        self._log("estop", "pressed" if pressed else "released", pressed)

    def chute_full(self, chute: int, on: bool = True) -> None:
        """Operators stop emptying the chute and it fills to capacity at once."""
        k = self._k(chute)
        self.world.drain_stopped[k] = on
        if on:
            self.world.fill[k] = max(int(self.world.fill[k]), int(self.world.capacity[k]))
        self._log("chute_full", f"chute {chute}", on)

    def chute_disabled(self, chute: int, on: bool = True) -> None:
        self.world.disabled[self._k(chute)] = on
        self._log("chute_disabled", f"chute {chute}", on)

    def diverter_stuck(self, chute: int, on: bool = True) -> None:
        self.world.stuck[self._k(chute)] = on
        self._log("diverter_stuck", f"chute {chute}", on)

    def encoder_glitch(self, counts: int) -> None:
        """The count jumps; the PLCs find out themselves on their next scan (if beyond tolerance)."""
        self.world.glitch_encoder(counts)
        self._log("encoder_glitch", f"{counts:+d} counts", True)

    def plc_drop(self, plc: Plc = "both") -> int:
        """Close every client connection of the PLC(s); they keep listening."""
        n = sum(s.drop_connections() for s in self._servers(plc))
        self._log("plc_drop", f"{plc}: {n} connections", True)
        return n

    def plc_restart(self, plc: Plc = "both", down_s: float = 0.5) -> None:
        """Warm restart: stop the PLC server(s) and start them again after ``down_s`` wall seconds.

        The program keeps scanning and the memory is kept. A PLC that is switched off is left alone.
        """

        async def cycle() -> None:
            servers = self._named_servers(plc)
            for name, s in servers:
                if self._is_on(name):
                    await s.stop()
            await asyncio.sleep(down_s)
            for name, s in servers:
                if self._is_on(name):  # switched off meanwhile: its power-on starts it
                    await s.start()
            self._log("plc_restart", f"{plc} back", False)

        self._spawn(cycle())
        self._log("plc_restart", f"{plc} down for {down_s} s", True)

    def plc_power_cycle(self, plc: Plc = "both", down_s: float = 1.0) -> None:
        """Cold restart: switch the PLC(s) off now and on again after ``down_s`` simulated seconds.

        Off: servers stop, the program does nothing, the conveyor's belt stops and it forgets
        every parcel it tracked, the diverter forgets every pending arm. On: the program boots
        (new boot id, state as at power-up), memory zero, rings from seq 1, tracking ids from 1.
        """
        self.plc_power(plc, False)
        spec = FaultSpec(kind="plc_power_cycle", at_s=self.world.time_s, duration_s=max(down_s, 0.0), plc=plc)
        self._ending.append((self.world.time_s + spec.duration_s, spec))

    def plc_power(self, plc: Plc = "both", on: bool = True) -> None:
        """Switch the PLC(s) on or off now (``plc_power_cycle`` does both, some time apart)."""
        for name in self._plcs(plc):
            self.world.switch_power(name, on)
        self._log("plc_power_cycle", f"{plc} {'on' if on else 'off'}", not on)

    def plc_slow(self, plc: Plc = "both", delay_ms: float = 0.0) -> None:
        for s in self._servers(plc):
            s.delay.seconds = delay_ms / 1000.0
        self._log("plc_slow", f"{plc} +{delay_ms} ms", delay_ms > 0)

    def camera_stall(self, seconds: float) -> None:
        if self.camera is not None:
            self.camera.stalled_until = asyncio.get_running_loop().time() + seconds
        self._log("camera_stall", f"{seconds} s", True)

    # ---- scenario schedule -----------------------------------------------------------------
    def schedule(self, specs: tuple[FaultSpec, ...], *, from_first_run: bool = False) -> None:
        self._schedule = sorted(specs, key=lambda f: f.at_s)
        self.from_first_run = from_first_run

    def due(self, now: float) -> None:
        """Start scheduled faults whose time has come and end those whose duration is over.

        With ``from_first_run`` scheduled times count from the moment the belt first ran
        (Execute), not from the simulator's start: a test's fault then meets a sorting belt
        however long the controller took to start."""
        if self.from_first_run and self._origin is None:
            if self.conveyor.state != PackMLState.EXECUTE:
                return
            self._origin = now
        origin = self._origin or 0.0
        while self._schedule and self._schedule[0].at_s + origin <= now:
            spec = self._schedule.pop(0)
            self._start(spec)
            if spec.duration_s > 0 and spec.kind not in ("plc_restart", "camera_stall", "encoder_glitch"):
                self._ending.append((spec.at_s + origin + spec.duration_s, spec))
        for end, spec in [e for e in self._ending if e[0] <= now]:
            self._ending.remove((end, spec))
            self._end(spec)

    def _start(self, f: FaultSpec) -> None:
        chute = f.chute or 0
        if f.kind == "jam":
            self.jam(f.eye)
        elif f.kind == "estop":
            self.estop(True)
        elif f.kind == "chute_full":
            self.chute_full(chute, True)
        elif f.kind == "chute_disabled":
            self.chute_disabled(chute, True)
        elif f.kind == "diverter_stuck":
            self.diverter_stuck(chute, True)
        elif f.kind == "encoder_glitch":
            self.encoder_glitch(f.counts)
        elif f.kind == "plc_drop":
            self.plc_drop(f.plc)
        elif f.kind == "plc_restart":
            self.plc_restart(f.plc, f.duration_s or 0.5)
        elif f.kind == "plc_power_cycle":
            self.plc_power(f.plc, False)  # back on when duration_s is over; 0 = stays off
        elif f.kind == "plc_slow":
            self.plc_slow(f.plc, f.delay_ms)
        elif f.kind == "camera_stall":
            self.camera_stall(f.duration_s or 1.0)

    def _end(self, f: FaultSpec) -> None:
        chute = f.chute or 0
        if f.kind == "estop":
            self.estop(False)
        elif f.kind == "chute_full":
            self.chute_full(chute, False)
        elif f.kind == "chute_disabled":
            self.chute_disabled(chute, False)
        elif f.kind == "diverter_stuck":
            self.diverter_stuck(chute, False)
        elif f.kind == "plc_slow":
            self.plc_slow(f.plc, 0.0)
        elif f.kind == "plc_power_cycle":
            self.plc_power(f.plc, True)

    async def aclose(self) -> None:
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    # ---- helpers -------------------------------------------------------------------------
    def _k(self, chute: int) -> int:
        k = self.world.chute_index(chute)
        if k is None:
            raise ValueError(f"no chute {chute} on this site")
        return k

    @staticmethod
    def _plcs(plc: Plc) -> list[OnePlc]:
        if plc not in ("conveyor", "diverter", "both"):
            raise ValueError(f"plc is conveyor, diverter or both, not {plc!r}")
        out: list[OnePlc] = ["conveyor", "diverter"]
        return [p for p in out if plc in (p, "both")]

    def _is_on(self, plc: OnePlc) -> bool:
        return self.world.power.conveyor if plc == "conveyor" else self.world.power.diverter

    def _named_servers(self, plc: Plc) -> list[tuple[OnePlc, PlcImage]]:
        servers: dict[OnePlc, PlcImage | None] = {"conveyor": self.cs, "diverter": self.ds}
        return [(name, s) for name in self._plcs(plc) if (s := servers[name]) is not None]

    def _servers(self, plc: Plc) -> list[PlcImage]:
        out: list[PlcImage] = []
        if plc in ("conveyor", "both") and self.cs is not None:
            out.append(self.cs)
        if plc in ("diverter", "both") and self.ds is not None:
            out.append(self.ds)
        return out

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception:
                log.exception("fault task failed")
                raise

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _log(self, kind: str, detail: str, active: bool) -> None:
        log.info("fault %s: %s (%s)", kind, detail, "on" if active else "off")
        self.history.append(FaultEvent(self.world.time_s, kind, detail, active))

