"""The PLCs' I/O image: moves values between the protocol servers and the PLC programs.

Each scan reads what the host wrote (heartbeats, commands, acks), runs the programs, and
after the world has moved writes the outputs and pushes ring events. Rings never stop for a
host that does not acknowledge: like a real PLC they overwrite, the host sees the seq gap,
and we count every entry written over an unacknowledged one.
"""

from __future__ import annotations

import numpy as np

from plant.codes import ArmResult
from plant.site import Site
from plc_sim.plc_logic import ConveyorInputs, ConveyorProgram, DiverterProgram
from plc_sim.servers import ConveyorPlcServer, DiverterPlcServer, ServerRing
from plc_sim.world import StepEvents, World

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
        conveyor_server: ConveyorPlcServer,
        diverter_server: DiverterPlcServer,
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

    async def initialise(self) -> None:
        """Power-on values: what a PLC shows before any host connects."""
        await self.cs.write_many({"induct_enable": True, "watchdog_ms": 1000})
        self.ds.write("chute_slots", len(self._status) - 1)
        await self.publish(StepEvents(), 0.0)

    async def read_inputs(self, now: float) -> None:
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
        for tid, chute, seq in ev.dropped:  # arms an encoder fault dropped unfired: as if cancelled
            await self._push(
                self.ds.ring("arm_result"), command_seq=seq, tracking_id=tid, result=int(ArmResult.CANCELLED), chute=chute
            )
        for tid, lead, trail in ev.inducts:
            await self._push(self.cs.ring("induct"), tracking_id=tid, leading_count=lead, trailing_count=trail)
        for tid, count, lap in ev.scans:
            await self._push(self.cs.ring("scan"), tracking_id=tid, trigger_count=count, lap=lap)
        for tid, count, chute, flags in ev.confirms:
            await self._push(self.ds.ring("confirm"), tracking_id=tid, count=count, chute=chute, flags=flags)
        w, c = self.world, self.conveyor
        out: dict[str, bool | int | float] = {
            "plc_heartbeat": c.heartbeat,
            "encoder_count": w.encoder,
            "speed_actual": float(w.speed_mps),
            "belt_state": int(c.state),
            "faults": int(c.faults),
            "jam_eye": int(w.jammed_eye),
            "inducted_total": w.stats.inducted & 0xFFFFFFFF,
            "belt_command_ack": c.command_ack,
            "belt_command_result": int(c.command_result),
        }
        changed = {k: v for k, v in out.items() if self._last.get(k) != v}
        if changed:
            await self.cs.write_many(changed)
            self._last.update(changed)
        self.ds.write("plc_heartbeat", self.diverter.heartbeat)
        self.ds.write("encoder_count", w.encoder)
        self.ds.write("faults", int(self.diverter.faults))
        status = w.chute_status()
        self._status[self._ids] = [status[i] for i in self._ids.tolist()]
        self._fill[self._ids] = np.minimum(w.fill, 0xFFFF)
        self.ds.set_chute_block("chute_status", self._status)
        self.ds.set_chute_block("chute_fill", self._fill)

    async def _push(self, ring: ServerRing, **fields: int) -> None:
        await ring.acked()
        if ring.pending >= ring.size:
            self.ring_overflows[ring.name] = self.ring_overflows.get(ring.name, 0) + 1
        await ring.push(**fields)
