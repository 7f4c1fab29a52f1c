"""The PLCs' I/O image: moves values between the PLC memory images and the PLC programs.

Each scan reads what the host wrote (heartbeats, commands, acks), runs the programs, and
after the world has moved writes the outputs and pushes ring events. Rings never stop for a
host that does not acknowledge: like a real PLC they overwrite, the host sees the seq gap,
and we count every entry written over an unacknowledged one.

The memory images are the protocol servers or their in-memory twins (``plc_sim.servers``:
``ConveyorImage``, ``DiverterImage``). PlcIo also carries out a PLC's power cycle on its image
(``World.power``): at the cut the image stops (clients see the connection go); when power
returns the memory is cold (every tag and register zero, every ring empty from seq 1), the
program boots, the power-on values and the new boot id are published, and only then does the
image take connections again.
"""

from __future__ import annotations

import numpy as np

from plant.codes import ArmResult
from plant.site import Site
from plc_sim.plc_logic import ConveyorInputs, ConveyorProgram, DiverterProgram
from plc_sim.servers import ConveyorImage, DiverterImage, PlcImage, ServerRing
from plc_sim.world import Plc, StepEvents, World

_CONVEYOR_INPUTS = (
    "host_heartbeat", "watchdog_ms", "belt_command", "belt_command_seq", "induct_enable", "speed_setpoint",
)  # fmt: skip


class PlcIo:
    """Both PLCs' scan I/O over their servers."""

    def __init__(
        self,
        site: Site,
        world: World,
        conveyor: ConveyorProgram,
        diverter: DiverterProgram,
        conveyor_server: ConveyorImage,
        diverter_server: DiverterImage,
    ) -> None:
        self.site = site
        self.world = world
        self.conveyor = conveyor
        self.diverter = diverter
        self.cs = conveyor_server
        self.ds = diverter_server
        self.ring_overflows: dict[str, int] = {"induct": 0, "scan": 0, "arm_result": 0, "confirm": 0}
        self.arm_results: dict[str, int] = {}
        self._last: dict[str, bool | int | float] = {}
        slots = max(c.id for c in site.chutes) + 1
        self._status = np.zeros(slots, dtype=np.int64)
        self._fill = np.zeros(slots, dtype=np.int64)
        self._ids = world.chute_ids
        # what the servers serve: (powered, power cuts seen) per PLC
        self._served = {p: (world.power.on(p), world.power.cuts(p)) for p in ("conveyor", "diverter")}

    async def initialise(self) -> None:
        """Power-on values: what a PLC shows before any host connects."""
        await self._power_on_values_conveyor()
        self._power_on_values_diverter()

    async def _power_on_values_conveyor(self) -> None:
        await self.cs.write_many({"induct_enable": True, "watchdog_ms": 1000})
        await self._publish_conveyor(StepEvents())

    def _power_on_values_diverter(self) -> None:
        self.ds.write("chute_slots", len(self._status) - 1)
        self._publish_diverter_outputs()

    # ---- power -------------------------------------------------------------------------------
    def _up(self, plc: Plc) -> bool:
        return self._served[plc][0]

    async def sync_power(self, now: float) -> None:
        """Bring the programs and servers in line with the PLCs' mains (see the module doc)."""
        power = self.world.power
        for plc in ("conveyor", "diverter"):
            was_on, was_cuts = self._served[plc]
            now_on, cuts = power.on(plc), power.cuts(plc)
            if (now_on, cuts) == (was_on, was_cuts):
                continue
            self._served[plc] = (now_on, cuts)
            (self.conveyor if plc == "conveyor" else self.diverter).sync_power(now)
            if was_on:
                await self._server(plc).stop()
            if now_on:
                await self._boot(plc)

    def _server(self, plc: Plc) -> PlcImage:
        return self.cs if plc == "conveyor" else self.ds

    async def _boot(self, plc: Plc) -> None:
        """Power is back (the program has booted): memory cold, power-on values, then listen."""
        if plc == "conveyor":
            await self.cs.reset()
            self._last.clear()
            await self._power_on_values_conveyor()
            await self.cs.start()
        else:
            self.ds.reset()
            self._power_on_values_diverter()
            await self.ds.start()

    # ---- scan --------------------------------------------------------------------------------
    async def read_inputs(self, now: float) -> None:
        await self.sync_power(now)
        if self._up("conveyor"):
            vals = {n: await self.cs.read(n) for n in _CONVEYOR_INPUTS}
            self.conveyor.scan(
                now,
                ConveyorInputs(
                    host_heartbeat=int(vals["host_heartbeat"]),
                    watchdog_ms=int(vals["watchdog_ms"]),
                    belt_command=int(vals["belt_command"]),
                    belt_command_seq=int(vals["belt_command_seq"]),
                    induct_enable=bool(vals["induct_enable"]),
                    speed_setpoint=float(vals["speed_setpoint"]),
                ),
            )
        if not self._up("diverter"):
            return
        self.diverter.scan(now, self.ds.read("host_heartbeat"), self.ds.read("reset_seq"))
        for cmd in self.ds.take_commands("arm"):
            res = self.diverter.command(
                now, cmd["action"], cmd["chute"], cmd["tracking_id"], cmd["fire_count"], cmd["seq"]
            )
            self.arm_results[res.name] = self.arm_results.get(res.name, 0) + 1
            await self._push(
                self.ds.ring("arm_result"),
                command_seq=cmd["seq"],
                tracking_id=cmd["tracking_id"],
                result=int(res),
                chute=cmd["chute"] if 0 <= cmd["chute"] <= 0xFFFF else 0,
            )

    async def publish(self, ev: StepEvents, now: float) -> None:
        await self.sync_power(now)  # a PLC switched on this scan publishes from a cold memory
        if self._up("diverter"):
            await self._publish_diverter(ev)
        if self._up("conveyor"):
            await self._publish_conveyor(ev)

    async def _publish_diverter(self, ev: StepEvents) -> None:
        for tid, chute, seq in ev.dropped:  # arms an encoder fault dropped unfired: as if cancelled
            await self._push(
                self.ds.ring("arm_result"), command_seq=seq, tracking_id=tid, result=int(ArmResult.CANCELLED), chute=chute
            )
        for tid, count, chute, flags in ev.confirms:
            await self._push(self.ds.ring("confirm"), tracking_id=tid, count=count, chute=chute, flags=flags)
        self._publish_diverter_outputs()

    def _publish_diverter_outputs(self) -> None:
        w = self.world
        self.ds.write("plc_heartbeat", self.diverter.heartbeat)
        self.ds.write("boot_id", self.diverter.boot_id)
        self.ds.write("encoder_count", w.encoder)
        self.ds.write("faults", int(self.diverter.faults))
        status = w.chute_status()
        self._status[self._ids] = [status[i] for i in self._ids.tolist()]
        self._fill[self._ids] = np.minimum(w.fill, 0xFFFF)
        self.ds.set_chute_block("chute_status", self._status)
        self.ds.set_chute_block("chute_fill", self._fill)

    async def _publish_conveyor(self, ev: StepEvents) -> None:
        for tid, lead, trail in ev.inducts:
            await self._push(self.cs.ring("induct"), tracking_id=tid, leading_count=lead, trailing_count=trail)
        for tid, count, lap in ev.scans:
            await self._push(self.cs.ring("scan"), tracking_id=tid, trigger_count=count, lap=lap)
        w, c = self.world, self.conveyor
        out: dict[str, bool | int | float] = {
            "plc_heartbeat": c.heartbeat,
            "plc_boot_id": c.boot_id,
            "encoder_count": w.encoder,
            "speed_actual": float(w.speed_mps),
            "belt_state": int(c.state),
            "faults": int(c.faults),
            "jam_eye": int(w.jammed_eye),
            "inducted_total": w.tracking.inducted & 0xFFFFFFFF,
            "belt_command_ack": c.command_ack,
            "belt_command_result": int(c.command_result),
        }
        changed = {k: v for k, v in out.items() if self._last.get(k) != v}
        if changed:
            await self.cs.write_many(changed)
            self._last.update(changed)

    async def _push(self, ring: ServerRing, **fields: int) -> None:
        await ring.acked()
        if ring.pending >= ring.size:
            self.ring_overflows[ring.name] = self.ring_overflows.get(ring.name, 0) + 1
        await ring.push(**fields)
