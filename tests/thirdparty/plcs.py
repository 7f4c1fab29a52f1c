"""A conveyor PLC (OPC UA via node-opcua) and a diverter PLC (Modbus TCP via pymodbus), written
by a third party from docs/plc-interface.md, config/tagmap.yaml and config/site.yaml alone.

Why this shape: a real PLC runs a program scan over its memory and exposes that memory through a
communication module. Here the "program" is Python (``ConveyorPlc.logic`` / ``DiverterPlc.scan``)
and the communication module is

- for the conveyor, ``tests/interop/conveyor_plc_server.js`` (an independent OPC UA stack), driven
  over its JSON-lines stdin/stdout channel: the program ``get``s what the controller wrote and
  ``set``s / ``push``es what it owns;
- for the diverter, a pymodbus server whose register reads and writes go through one action hook
  into the program's own register image, so PLC-owned registers refuse writes (exception 02).

A *warm restart* takes the communication module away for a while (the program keeps scanning,
memory kept, then the module comes back and serves that memory); a *cold restart* is a power
cycle (program and module off, then memory zero, a new boot id, the belt Stopped).
Nothing here imports the product.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from world import U32, Chute, EyeEvent, Parcel, Site, World, sdiff

log = logging.getLogger("thirdparty.plc")

# -- PackML (docs/plc-interface.md "The belt follows PackML strictly") --------------------------
CLEARING, STOPPED, STARTING, IDLE, SUSPENDED, EXECUTE, STOPPING, ABORTING, ABORTED = range(1, 10)
HOLDING, HELD, UNHOLDING, SUSPENDING, UNSUSPENDING, RESETTING, COMPLETING, COMPLETE = range(10, 18)
STATE_NAMES = {
    1: "Clearing", 2: "Stopped", 3: "Starting", 4: "Idle", 5: "Suspended", 6: "Execute", 7: "Stopping",
    8: "Aborting", 9: "Aborted", 10: "Holding", 11: "Held", 12: "Unholding", 13: "Suspending",
    14: "Unsuspending", 15: "Resetting", 16: "Completing", 17: "Complete",
}
RESET, START, STOP, HOLD, UNHOLD, SUSPEND, UNSUSPEND, ABORT, CLEAR, COMPLETE_CMD = range(1, 11)
# state -> {accepted command: state entered}; every other command in 1..10 is refused (result 1)
TABLE: dict[int, dict[int, int]] = {
    CLEARING: {ABORT: ABORTING},
    STOPPED: {RESET: RESETTING, ABORT: ABORTING},
    STARTING: {STOP: STOPPING, HOLD: HOLDING, ABORT: ABORTING},
    IDLE: {START: STARTING, STOP: STOPPING, ABORT: ABORTING},
    SUSPENDED: {STOP: STOPPING, HOLD: HOLDING, UNSUSPEND: UNSUSPENDING, ABORT: ABORTING},
    EXECUTE: {STOP: STOPPING, HOLD: HOLDING, SUSPEND: SUSPENDING, ABORT: ABORTING, COMPLETE_CMD: COMPLETING},
    STOPPING: {ABORT: ABORTING},
    ABORTING: {},
    ABORTED: {CLEAR: CLEARING},
    HOLDING: {STOP: STOPPING, ABORT: ABORTING},
    HELD: {STOP: STOPPING, UNHOLD: UNHOLDING, ABORT: ABORTING},
    UNHOLDING: {STOP: STOPPING, HOLD: HOLDING, ABORT: ABORTING},
    SUSPENDING: {STOP: STOPPING, HOLD: HOLDING, ABORT: ABORTING},
    UNSUSPENDING: {STOP: STOPPING, HOLD: HOLDING, ABORT: ABORTING},
    RESETTING: {STOP: STOPPING, ABORT: ABORTING},
    COMPLETING: {STOP: STOPPING, ABORT: ABORTING},
    COMPLETE: {RESET: RESETTING, STOP: STOPPING, ABORT: ABORTING},
}
# acting state -> state entered when its work is done
DONE = {CLEARING: STOPPED, STARTING: EXECUTE, STOPPING: STOPPED, ABORTING: ABORTED, HOLDING: HELD,
        UNHOLDING: EXECUTE, SUSPENDING: SUSPENDED, UNSUSPENDING: EXECUTE, RESETTING: IDLE,
        COMPLETING: COMPLETE}
RUNNING = {STARTING, EXECUTE, UNHOLDING, UNSUSPENDING}  # the belt is driven at the setpoint
HOLDABLE = {s for s, cmds in TABLE.items() if HOLD in cmds}  # where the host watchdog holds
F_ESTOP, F_JAM, F_HOST_WD, F_ENCODER, F_GAP = 1, 2, 4, 8, 16

HOST_TAGS = ["host_heartbeat", "watchdog_ms", "host_unit_state", "speed_setpoint", "belt_command",
             "belt_command_seq", "induct_enable", "induct.ack", "scan.ack"]
WATCHED = ("watchdog_ms", "host_unit_state", "speed_setpoint", "induct_enable")  # journaled on change
MATCH_TOL = 30  # counts: eye edge vs tracked expectation (the world latches exactly)
DROP_AFTER = 600  # counts past its expected scanner edge: the parcel left the belt (diverted)


class NodeServer:
    """conveyor_plc_server.js as a child process: the conveyor PLC's OPC UA module."""

    def __init__(self, proc: asyncio.subprocess.Process, ready: dict[str, Any]) -> None:
        self.proc = proc
        self.port = int(ready["port"])
        self.url = str(ready["url"])
        self._next = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(cls, node: str, script: Path, spec: Path, pki: Path, port: int, log_path: Path) -> NodeServer:
        """Start the server and wait for its ``ready`` line (30 s)."""
        with log_path.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                node, str(script), str(spec), str(pki), str(port),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err,
                limit=16 * 1024 * 1024,
            )
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        ready = json.loads(line)
        if not ready.get("ready"):
            raise RuntimeError(f"conveyor_plc_server.js: {ready}")
        return cls(proc, ready)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            with contextlib.suppress(ValueError):
                reply = json.loads(line)
                fut = self._waiting.pop(reply.get("id"), None)
                if fut is not None and not fut.done():
                    fut.set_result(reply)
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(ConnectionError("conveyor_plc_server.js ended"))
        self._waiting.clear()

    def send(self, op: str, **args: Any) -> asyncio.Future[dict[str, Any]]:
        """Queue one request line; the future resolves with its reply (pipelined)."""
        assert self.proc.stdin is not None
        self._next += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[self._next] = fut
        self.proc.stdin.write((json.dumps({"id": self._next, "op": op, **args}) + "\n").encode())
        return fut

    async def call(self, op: str, **args: Any) -> dict[str, Any]:
        """One request, its reply checked."""
        reply = await asyncio.wait_for(self.send(op, **args), 10)
        if not reply.get("ok"):
            raise RuntimeError(f"{op}: {reply.get('error')}")
        return reply

    async def kill(self) -> None:
        """Gone without a goodbye (the module restarts / loses power)."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.proc.wait(), 10)
        self._reader.cancel()

    async def stop(self) -> None:
        """Clean shutdown (end of the test)."""
        if self.proc.returncode is None and self.proc.stdin is not None:
            with contextlib.suppress(Exception):
                self.proc.stdin.write(b'{"op": "stop"}\n')
                await self.proc.stdin.drain()
                await asyncio.wait_for(self.proc.wait(), 10)
        await self.kill()


@dataclass
class Tracked:
    """A parcel the conveyor PLC tracks by encoder (its shift register)."""

    tid: int
    lead: int
    trail: int
    next_induct: int  # count at which its leading edge is next due at the induct eye
    next_scan: int  # ... at the scanner
    lap: int = 0
    parcel: Parcel | None = None  # ground truth only; the logic never reads it


@dataclass
class Ring:
    """A PLC -> controller event ring in PLC memory (full history kept for a module restart)."""

    size: int
    entries: list[dict[str, int]] = field(default_factory=list)  # entry seq = index + 1
    unpushed: list[dict[str, int]] = field(default_factory=list)  # not yet in the comms module

    @property
    def head(self) -> int:
        return len(self.entries)

    def add(self, entry: dict[str, int]) -> int:
        self.entries.append(entry)
        self.unpushed.append(entry)
        return self.head


class ConveyorPlc:
    """The conveyor PLC program: PackML belt, induct and scan rings, tracking, watchdog."""

    def __init__(self, site: Site, world: World, *, node: str, script: Path, spec: Path, pki: Path,
                 log_path: Path, on_scan: Callable[[int, int, int, Parcel], None],
                 encoder_resets: bool = False, serve_zeros_s: float = 0.0) -> None:
        self.site = site
        self.world = world
        self.node, self.script, self.spec, self.pki, self.log_path = node, script, spec, pki, log_path
        self.on_scan = on_scan
        self.encoder_resets = encoder_resets  # optional: the PLC's counter restarts at 0 on power-up
        self.serve_zeros_s = serve_zeros_s  # optional: a restarted module serves zeros this long first
        self.port = 0
        self.startup_s = 0.0  # how long the last node-opcua start took
        self.server: NodeServer | None = None
        self.powered = False
        self.boot_ids: list[int] = []
        self.journal: list[dict[str, Any]] = []  # commands, results, state changes (for findings)
        self._io_task: asyncio.Task[None] | None = None
        self.io_stalls = 0  # I/O iterations more than 30 ms apart (the host's encoder goes stale)
        self.io_stall_max = 0.0
        self.power_up_memory()

    # -- memory ------------------------------------------------------------------------------
    def power_up_memory(self) -> None:
        """Memory zero, a new random non-zero boot id, belt Stopped (docs: after power-up)."""
        now = time.monotonic()
        boot = 0
        while boot == 0 or boot in self.boot_ids:
            boot = secrets.randbits(32)
        self.boot_ids.append(boot)
        self.boot_id = boot
        self.heartbeat = 0
        self.hb_at = now
        self.state = STOPPED
        self.state_since = now
        self.faults = 0
        self.jam_eye = 0
        self.inducted_total = 0
        self.cmd_result = 0
        self.cmd_ack = 0
        self.last_seq = 0  # last belt_command_seq executed (memory zero: the server's seq is 0)
        self.pending_seq: int | None = None
        self.inputs: dict[str, Any] = dict.fromkeys(HOST_TAGS, 0)
        self.inputs["induct_enable"] = False
        self.host_hb = 0
        self.host_hb_at = now
        self.rings = {"induct": Ring(64), "scan": Ring(64)}
        self.tracked: list[Tracked] = []
        self.next_tid = 1
        self.pending_new: tuple[int, Parcel] | None = None
        self.sent: dict[str, Any] = {}
        self.unknown_at_scanner = 0
        self.recirculations_seen = 0
        self.reacquired = 0
        # first power-up: both PLCs' counters agree (commissioning); with encoder_resets a later
        # power-up restarts this PLC's counter at 0 while the diverter's keeps counting
        self.encoder_offset = self.world.encoder if self.encoder_resets and len(self.boot_ids) > 1 else 0

    @property
    def encoder(self) -> int:
        return (self.world.encoder - self.encoder_offset) % U32

    def _count(self, world_count: int) -> int:
        return (world_count - self.encoder_offset) % U32

    def note(self, what: str, **kw: Any) -> None:
        entry = {"t": time.time(), "plc": "conveyor", "boot": self.boot_id, "what": what, **kw}
        self.journal.append(entry)
        log.info("conveyor %s %s", what, kw)

    # -- life cycle -----------------------------------------------------------------------------
    async def start(self, port: int = 0) -> int:
        """Power on: program and OPC UA module."""
        self.powered = True
        await self._start_server(port)
        self._io_task = asyncio.get_running_loop().create_task(self._io_loop())
        return self.port

    async def _start_server(self, port: int) -> None:
        t0 = time.monotonic()
        server = await NodeServer.start(self.node, self.script, self.spec, self.pki, port, self.log_path)
        self.startup_s = time.monotonic() - t0
        self.port = server.port
        if self.serve_zeros_s > 0 and self.boot_ids and port:
            # experiment: the module serves its zero-initialised memory (boot id 0 = "not running
            # yet") for a while before the program's memory is mapped into it
            await asyncio.sleep(self.serve_zeros_s)
        await self._restore(server)
        self.server = server

    async def _restore(self, server: NodeServer) -> None:
        """Serve the program's memory: the rings (replayed from seq 1 so the module's head and
        slots match the memory), then every scalar with the controller-written values last seen,
        the boot id last: until it is set a reader sees boot id 0, "not running yet"."""
        for name, ring in self.rings.items():
            if ring.head:
                keep = ring.entries[-ring.size:]
                filler: list[dict[str, int]] = [{} for _ in range(ring.head - len(keep))]
                reply = await server.call("push", ring=name, entries=filler + keep)
                assert reply["head"] == ring.head, (reply, ring.head)
            ring.unpushed.clear()
        self.sent = {}
        values = self._outputs(force=True)
        boot = values.pop("plc_boot_id")
        for name in HOST_TAGS:
            values[name] = self.inputs[name]
        values["plc_boot_id"] = boot
        await server.call("set", values=values)

    async def warm_restart(self, off_s: float) -> float:
        """The OPC UA module goes away for ``off_s``; the program keeps running. Returns the wall
        time the module serves again."""
        server, self.server = self.server, None
        self.note("warm_restart_begin")
        if server is not None:
            await server.kill()
        # node-opcua needs seconds to start: launch it so that it serves no earlier than off_s
        await asyncio.sleep(max(0.0, off_s - self.startup_s))
        await self._start_server(self.port)
        self.note("warm_restart_end", startup_s=round(self.startup_s, 2))
        return time.time()

    async def cold_restart(self, off_s: float) -> float:
        """Power cycle: belt stops dead, no events, then memory zero with a new boot id."""
        server, self.server = self.server, None
        self.powered = False
        self.world.stop_dead()
        self.note("power_off")
        if server is not None:
            await server.kill()
        await asyncio.sleep(off_s)
        self.power_up_memory()
        self.powered = True  # the program runs (belt Stopped) while the module boots
        await self._start_server(self.port)
        self.note("power_on", startup_s=round(self.startup_s, 2))
        return time.time()

    async def close(self) -> None:
        if self._io_task:
            self._io_task.cancel()
        if self.server:
            await self.server.stop()
            self.server = None

    # -- I/O: the communication module --------------------------------------------------------------
    def _outputs(self, force: bool = False) -> dict[str, Any]:
        now_values: dict[str, Any] = {
            "plc_boot_id": self.boot_id,
            "plc_heartbeat": self.heartbeat,
            "encoder_count": self.encoder,
            "speed_actual": round(self.world.speed / 1000.0, 4),
            "belt_state": self.state,
            "faults": self.faults,
            "jam_eye": self.jam_eye,
            "inducted_total": self.inducted_total,
            # result before ack: the JSON object's order is the order the server sets them
            "belt_command_result": self.cmd_result,
            "belt_command_ack": self.cmd_ack,
        }
        out = {k: v for k, v in now_values.items() if force or self.sent.get(k) != v}
        if "belt_command_ack" in out and "belt_command_result" not in out:
            out = {**{k: v for k, v in out.items() if k != "belt_command_ack"},
                   "belt_command_result": self.cmd_result, "belt_command_ack": self.cmd_ack}
        return out

    async def _io_loop(self) -> None:
        """Every 5 ms: push new ring entries, set changed outputs, get the host's values."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            if now - last > 0.03:
                self.io_stalls += 1
                self.io_stall_max = max(self.io_stall_max, now - last)
                if now - last > 0.05:
                    log.warning("conveyor I/O stalled %.0f ms", (now - last) * 1000)
            last = now
            server = self.server
            if server is None or not self.powered:
                continue
            try:
                futs = []
                for name, ring in self.rings.items():
                    if ring.unpushed:
                        futs.append(server.send("push", ring=name, entries=list(ring.unpushed)))
                        ring.unpushed.clear()
                out = self._outputs()
                if out:
                    futs.append(server.send("set", values=out))
                get = server.send("get", names=HOST_TAGS)
                replies = await asyncio.wait_for(asyncio.gather(*futs, get), 5)
                if any(not r.get("ok") for r in replies):
                    log.error("conveyor module refused: %s", [r for r in replies if not r.get("ok")])
                self.sent.update(out)
                if server is self.server:
                    got = {n: v["value"] for n, v in replies[-1]["values"].items()}
                    changed = {n: v for n, v in got.items() if n in WATCHED and v != self.inputs.get(n)}
                    if changed:
                        self.note("host_wrote", **changed)
                    self.inputs.update(got)
            except (ConnectionError, TimeoutError, RuntimeError) as exc:
                if server is self.server:
                    log.warning("conveyor module I/O failed: %r", exc)

    # -- program ------------------------------------------------------------------------------
    def enter(self, state: int, why: str) -> None:
        if state != self.state:
            self.note("state", frm=STATE_NAMES[self.state], to=STATE_NAMES[state], why=why)
        self.state = state
        self.state_since = time.monotonic()

    def _setpoint_mm_s(self) -> float:
        sp = float(self.inputs.get("speed_setpoint") or 0.0)
        if not 0.0 < sp <= 5.0:
            sp = self.site.speed_mps  # memory zero / never written: the site's speed (a finding)
        return sp * 1000.0

    def logic(self, now: float) -> None:
        """One program scan (the world has just moved the belt and reported the eyes)."""
        if not self.powered:
            return
        if now - self.hb_at >= 0.1:
            n = int((now - self.hb_at) / 0.1)
            self.heartbeat = (self.heartbeat + n) % U32
            self.hb_at += n * 0.1
        # host watchdog
        hb = int(self.inputs.get("host_heartbeat") or 0)
        if hb != self.host_hb:
            self.host_hb, self.host_hb_at = hb, now
        wd_s = (int(self.inputs.get("watchdog_ms") or 0) or 1000) / 1000.0
        stale = now - self.host_hb_at > wd_s
        if stale and self.state in HOLDABLE:
            self.faults |= F_HOST_WD
            self.enter(HOLDING, "host heartbeat stale")
        # belt command handshake: a new seq seen in two consecutive reads, command of the later
        seq = int(self.inputs.get("belt_command_seq") or 0)
        if seq != self.last_seq:
            if self.pending_seq == seq:
                self._execute(int(self.inputs.get("belt_command") or 0), seq, stale)
                self.pending_seq = None
            else:
                self.pending_seq = seq
        # acting states complete by themselves
        age = now - self.state_since
        v, target = self.world.speed, self._setpoint_mm_s()
        if self.state == ABORTING:
            self.world.speed = 0.0
        if self.state in RUNNING:
            self.world.target_speed = target
        else:
            self.world.target_speed = 0.0
        if self.state in (STARTING, UNHOLDING, UNSUSPENDING):
            if abs(v - target) < 1e-6 and age >= 0.2:
                self.enter(DONE[self.state], "ramped up")
        elif self.state in (STOPPING, HOLDING, SUSPENDING, COMPLETING):
            if v == 0.0 and age >= 0.2:
                self.enter(DONE[self.state], "ramped down")
        elif self.state in (RESETTING, CLEARING) and age >= 0.3 or self.state == ABORTING and age >= 0.1:
            self.enter(DONE[self.state], "done")
        # induct: feed only in Execute, enabled, at speed, controller not too far behind
        backlog = max(r.head - int(self.inputs.get(f"{n}.ack") or 0) for n, r in self.rings.items())
        self.world.feeding = (self.state == EXECUTE and bool(self.inputs.get("induct_enable"))
                              and v >= 0.95 * target and backlog < 48)
        # parcels that did not come to the scanner have left the belt (diverted)
        enc = self.encoder
        self.tracked = [t for t in self.tracked if sdiff(enc, t.next_scan) <= DROP_AFTER]

    def _execute(self, cmd: int, seq: int, stale: bool) -> None:
        if not 1 <= cmd <= 10:
            result = 2
        else:
            target = TABLE[self.state].get(cmd)
            cause = ""
            if cmd == CLEAR and self.faults & F_ESTOP:
                cause = "e-stop pressed"
            elif cmd in (START, UNHOLD) and self.faults & (F_ESTOP | F_JAM):
                cause = "e-stop/jam latched"
            elif cmd == UNHOLD and stale:
                cause = "host heartbeat stale"
            result = 1 if target is None or cause else 0
            if result == 0 and target is not None:
                if cmd == RESET:
                    self.faults = 0
                    self.jam_eye = 0
                if cmd == UNHOLD:
                    self.faults &= ~F_HOST_WD
                self.enter(target, f"command {cmd}")
            elif cause:
                self.note("refused_cause", cmd=cmd, cause=cause)
        self.cmd_result = result
        self.cmd_ack = seq
        self.last_seq = seq
        self.note("command", cmd=cmd, seq=seq, result=result, state=STATE_NAMES[self.state])

    # -- eyes (hardware latches) ------------------------------------------------------------------
    def on_eye(self, ev: EyeEvent) -> None:
        """An eye edge with its latched count. Off: nothing is seen."""
        if not self.powered:
            return
        count = self._count(ev.count)
        loop = self.site.loop_counts
        if ev.eye == "induct" and ev.edge == "lead":
            match = self._match(count, "next_induct")
            if ev.released:
                # our own induct release: a new parcel; whatever we still tracked in that slot
                # had left the belt (diverted) without passing the scanner again yet
                if match is not None:
                    self.tracked.remove(match)
                self.pending_new = (count, ev.parcel)
                return
            if match is not None:
                match.next_induct = (match.next_induct + loop) % U32
                self.recirculations_seen += 1
                self.pending_new = None
                return
            # a parcel coming round that this boot does not track (after a power cycle):
            # re-acquired here, under a new tracking id, like a new induct
            self.reacquired += 1
            self.pending_new = (count, ev.parcel)
        elif ev.eye == "induct" and ev.edge == "trail":
            if self.pending_new is None:
                return  # a known parcel, or one whose leading edge this boot never saw
            lead, parcel = self.pending_new
            self.pending_new = None
            tid = self.next_tid
            self.next_tid = self.next_tid % (U32 - 1) + 1
            self.tracked.append(Tracked(
                tid=tid, lead=lead, trail=count, next_induct=(lead + loop) % U32,
                next_scan=(lead + round(self.site.scanner_mm * self.site.counts_per_mm)) % U32, parcel=parcel))
            self.rings["induct"].add({"tracking_id": tid, "leading_count": lead, "trailing_count": count})
            self.inducted_total = (self.inducted_total + 1) % U32
            parcel.keys.append((self.boot_id, tid))
        elif ev.eye == "scanner":
            t = self._match(count, "next_scan")
            if t is None:
                self.unknown_at_scanner += 1
                return
            self.rings["scan"].add({"tracking_id": t.tid, "trigger_count": count, "lap": t.lap})
            if t.parcel is not ev.parcel:  # ground-truth self-check of this PLC's tracking
                self.note("tracking_mismatch", tid=t.tid, tracked_pid=t.parcel.pid if t.parcel else None,
                          seen_pid=ev.parcel.pid)
            self.on_scan(t.tid, count, t.lap, ev.parcel)
            t.lap += 1
            t.next_scan = (t.next_scan + loop) % U32

    def _match(self, count: int, attr: str) -> Tracked | None:
        """The tracked parcel expected at this eye at this count (nearest within MATCH_TOL)."""
        best, best_d = None, MATCH_TOL + 1
        for t in self.tracked:
            d = abs(sdiff(count, getattr(t, attr)))
            if d < best_d:
                best, best_d = t, d
        return best

    def key_of(self, parcel: Parcel) -> tuple[int, int] | None:
        return parcel.keys[-1] if parcel.keys else None

    def status(self) -> dict[str, Any]:
        return {"boot_id": self.boot_id, "state": STATE_NAMES[self.state], "faults": self.faults,
                "powered": self.powered, "serving": self.server is not None, "port": self.port,
                "induct_head": self.rings["induct"].head, "scan_head": self.rings["scan"].head,
                "tracked": len(self.tracked), "unknown_at_scanner": self.unknown_at_scanner,
                "reacquired": self.reacquired,
                "io_stalls": self.io_stalls, "io_stall_max_s": round(self.io_stall_max, 3),
                "inputs": dict(self.inputs), "boot_ids": self.boot_ids}


# == diverter ==================================================================================
SPAN = 1856  # holding registers 0-1855 (docs: register_span 1856)
HOST_WRITABLE = frozenset([2, 3, 8, 9, 20, 21, 26, 27, 30, 31, *range(100, 356)])
ARM_BASE, ARM_SIZE, RES_BASE, RES_SIZE, CONF_BASE, CONF_SIZE = 100, 32, 400, 32, 700, 64
STATUS_BASE, FILL_BASE = 1300, 1600
D_WD, D_FAULT, D_OVERFLOW = 1, 2, 4
MAX_ARMED = 64
CONFIRM_DELAY_S = 0.15  # stroke -> the parcel passes the chute's entry photo-eye


@dataclass
class Armed:
    """An armed fire: hardware compare at ``compare`` (fire_count minus the actuation travel)."""

    command_seq: int
    tid: int
    chute: Chute
    fire_count: int
    compare: int


class DiverterPlc:
    """The diverter PLC program over a Modbus TCP register image."""

    def __init__(self, site: Site, world: World, conveyor: ConveyorPlc, encoder_offset: int = 0,
                 confirm_delay_s: float = CONFIRM_DELAY_S) -> None:
        self.site = site
        self.confirm_delay_s = confirm_delay_s  # stroke -> chute photo-eye (slide time)
        # experiments only: this PLC's counter = the world's minus this (0: the counts agree)
        self.encoder_offset = encoder_offset % U32
        self.world = world
        self.conveyor = conveyor  # ground truth only (which conveyor key a landed parcel had)
        self.port = 0
        self.server: ModbusTcpServer | None = None
        self.powered = False
        self.boot_ids: list[int] = []
        self.journal: list[dict[str, Any]] = []
        self.power_up_memory()

    def power_up_memory(self) -> None:
        now = time.monotonic()
        boot = 0
        while boot == 0 or boot in self.boot_ids:
            boot = secrets.randbits(32)
        self.boot_ids.append(boot)
        self.boot_id = boot
        self.regs = [0] * SPAN
        self.set32(10, boot)
        self.regs[7] = max(c.id for c in self.site.chutes)
        self.hb_at = now
        self.host_hb = 0
        self.host_hb_at = now
        self.host_seen = False
        self.reset_seq = 0
        self.armed: dict[int, Armed] = {}
        self.confirms_due: list[tuple[float, int, int]] = []  # (monotonic due, tid, chute)
        self.results_total = dict.fromkeys(range(7), 0)

    def note(self, what: str, **kw: Any) -> None:
        self.journal.append({"t": time.time(), "plc": "diverter", "boot": self.boot_id, "what": what, **kw})
        log.info("diverter %s %s", what, kw)

    @property
    def encoder(self) -> int:
        return (self.world.encoder - self.encoder_offset) % U32

    def get32(self, a: int) -> int:
        return (self.regs[a] << 16) | self.regs[a + 1]

    def set32(self, a: int, v: int) -> None:
        v %= U32
        self.regs[a], self.regs[a + 1] = v >> 16, v & 0xFFFF

    # -- Modbus module -----------------------------------------------------------------------
    async def _action(self, fc: int, start: int, address: int, count: int, registers: list[int],
                      values: list[int] | list[bool] | None) -> ExcCodes | None:
        """Every request of unit ``device_id``: FC 3 / 6 / 16 only; writes only to host registers."""
        if not self.powered or self.server is None:
            return ExcCodes.DEVICE_FAILURE
        if fc not in (3, 6, 16):
            return ExcCodes.ILLEGAL_FUNCTION
        if address < 0 or address + count > SPAN:
            return ExcCodes.ILLEGAL_ADDRESS
        if values is not None and fc in (6, 16):
            if any(a not in HOST_WRITABLE for a in range(address, address + count)):
                return ExcCodes.ILLEGAL_ADDRESS
            self.regs[address:address + count] = [int(v) & 0xFFFF for v in values]
            if self.regs[6] & D_WD and (address <= 21 and address + count > 20 or address <= 9 and address + count > 8):
                # evidence for the findings: what the host writes while our watchdog is latched
                self.note("host_write_while_wd_latched", address=address, count=count,
                          arm_head=self.get32(20), reset_seq=self.get32(8))
            return None
        self.set32(4, self.encoder)  # the counter is live (read at request time)
        registers[address - start:address - start + count] = self.regs[address:address + count]
        return None

    @staticmethod
    async def _other_unit(fc: int, start: int, address: int, count: int, registers: list[int],
                          values: list[int] | list[bool] | None) -> ExcCodes | None:
        """Another unit id gets no data (a gateway's 'target device failed to respond')."""
        return ExcCodes.GATEWAY_NO_RESPONSE

    async def _start_server(self, port: int) -> None:
        devices = [
            SimDevice(id=self.site.diverter_device_id, action=self._action,
                      simdata=[SimData(address=0, count=SPAN, datatype=DataType.REGISTERS)]),
            SimDevice(id=0, action=self._other_unit, simdata=[SimData(address=0, count=1, datatype=DataType.REGISTERS)]),
        ]
        server = ModbusTcpServer(devices, address=("127.0.0.1", port))
        await server.serve_forever(background=True)
        assert server.transport is not None
        self.port = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.server = server

    async def start(self, port: int = 0) -> int:
        self.powered = True
        await self._start_server(port)
        return self.port

    async def _stop_server(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await server.shutdown()

    async def warm_restart(self, off_s: float) -> float:
        """The Modbus module goes away; the program keeps scanning with its memory."""
        self.note("warm_restart_begin")
        await self._stop_server()
        await asyncio.sleep(off_s)
        await self._start_server(self.port)
        self.note("warm_restart_end")
        return time.time()

    async def cold_restart(self, off_s: float) -> float:
        """Power cycle: armed fires and rings gone; new boot id, memory zero."""
        self.note("power_off", armed=len(self.armed))
        self.powered = False
        await self._stop_server()
        await asyncio.sleep(off_s)
        self.power_up_memory()
        self.powered = True
        await self._start_server(self.port)
        self.note("power_on")
        return time.time()

    async def close(self) -> None:
        await self._stop_server()

    # -- rings -------------------------------------------------------------------------------
    def _push(self, head_addr: int, base: int, size: int, rows: list[list[int]]) -> None:
        """Slots first (8 registers each: seq, then the fields), head once, last."""
        seq = self.get32(head_addr)
        for row in rows:
            seq = (seq + 1) % U32
            slot = base + (seq % size) * 8
            self.set32(slot, seq)
            self.regs[slot + 2:slot + 8] = row
        self.set32(head_addr, seq)

    def _result(self, results: list[list[int]], command_seq: int, tid: int, result: int, chute: int) -> None:
        results.append([command_seq >> 16, command_seq & 0xFFFF, tid >> 16, tid & 0xFFFF, result, chute])
        self.results_total[result] = self.results_total.get(result, 0) + 1

    def _drop_all(self, why: str, results: list[list[int]]) -> None:
        if self.armed:
            self.note("drop_arms", why=why, n=len(self.armed))
        for a in self.armed.values():
            self._result(results, a.command_seq, a.tid, 5, a.chute.id)
        self.armed.clear()

    # -- program -----------------------------------------------------------------------------
    def scan(self, now: float) -> None:
        """One program scan over the register image."""
        if not self.powered:
            return
        if now - self.hb_at >= 0.1:
            n = int((now - self.hb_at) / 0.1)
            self.set32(0, self.get32(0) + n)
            self.hb_at += n * 0.1
        self.set32(4, self.encoder)
        results: list[list[int]] = []
        # host watchdog: armed once the host's heartbeat has moved in this boot
        hb = self.get32(2)
        if hb != self.host_hb:
            self.host_hb, self.host_hb_at, self.host_seen = hb, now, True
        stale = self.host_seen and now - self.host_hb_at > 1.0
        if stale and not self.regs[6] & D_WD:
            self.regs[6] |= D_WD
            self.note("host_watchdog")
            self._drop_all("host watchdog", results)
        rs = self.get32(8)
        if rs != self.reset_seq:
            self.reset_seq = rs
            if self.regs[6] & (D_WD | D_OVERFLOW):
                self.note("reset", reset_seq=rs, faults=self.regs[6])
            self.regs[6] &= ~(D_WD | D_OVERFLOW)
        # arm command ring
        head, ack = self.get32(20), self.get32(22)
        if sdiff(head, ack) > 0:
            enc = self.encoder
            first = ack + 1 if sdiff(head, ack) <= 100_000 else head - ARM_SIZE + 1
            for seq in range(first, head + 1):
                slot = ARM_BASE + (seq % ARM_SIZE) * 8
                if head - seq >= ARM_SIZE or self.get32(slot) != seq % U32:
                    self.regs[6] |= D_OVERFLOW
                    self.note("arm_overflow", seq=seq, slot_seq=self.get32(slot), head=head, ack=ack)
                    continue
                self._command(seq, slot, enc, results)
            self.set32(22, head)
        # chute photo-eyes -> confirm ring
        due = [c for c in self.confirms_due if c[0] <= now]
        if due:
            self.confirms_due = [c for c in self.confirms_due if c[0] > now]
            enc = self.encoder
            self._push(28, CONF_BASE, CONF_SIZE,
                       [[tid >> 16, tid & 0xFFFF, enc >> 16, enc & 0xFFFF, chute, 0] for _, tid, chute in due])
        if results:
            self._push(24, RES_BASE, RES_SIZE, results)
        # chute status and fill
        for c in self.site.chutes:
            fill = int(self.world.fill.get(c.id, 0.0) + 0.999)
            self.regs[FILL_BASE + c.id] = min(fill, 0xFFFF)
            self.regs[STATUS_BASE + c.id] = 1 if fill >= c.capacity else 0

    def _command(self, seq: int, slot: int, enc: int, results: list[list[int]]) -> None:
        tid, fire, chute_id, action = self.get32(slot + 2), self.get32(slot + 4), self.regs[slot + 6], self.regs[slot + 7]
        chute = self.site.chute(chute_id)
        if action == 2:
            if tid in self.armed:
                del self.armed[tid]
                self._result(results, seq, tid, 5, chute_id)
            else:
                self._result(results, seq, tid, 6, chute_id)
            return
        if action != 1 or chute is None:
            self._result(results, seq, tid, 3, chute_id)  # no code for a bad action: "unknown"
            return
        if self.regs[6] & D_WD or self.regs[STATUS_BASE + chute_id] & 0b110:
            if self.regs[6] & D_WD:
                self.note("arm_refused_watchdog_latched", seq=seq, tid=tid, chute=chute_id)
            self._result(results, seq, tid, 2, chute_id)
            return
        if len(self.armed) >= MAX_ARMED and tid not in self.armed:
            self._result(results, seq, tid, 4, chute_id)
            return
        lead = round(chute.actuation_ms / 1000.0 * self.site.speed_mps * 1000.0 * self.site.counts_per_mm)
        compare = (fire - lead) % U32
        if sdiff(compare, enc) <= 0:
            self._result(results, seq, tid, 1, chute_id)
            return
        self.armed[tid] = Armed(seq, tid, chute, fire, compare)
        self._result(results, seq, tid, 0, chute_id)

    def on_travel(self, s1: float, s2: float) -> None:
        """The hardware compares: fire every armed diverter whose compare the belt passed."""
        if not self.powered or s2 <= s1 or not self.armed:
            return
        e1 = (self.world.count_at(s1) - self.encoder_offset) % U32
        e2 = (self.world.count_at(s2) - self.encoder_offset) % U32
        cpm = self.site.counts_per_mm
        for tid, a in list(self.armed.items()):
            if sdiff(a.compare, e1) > 0 and sdiff(a.compare, e2) <= 0:
                del self.armed[tid]
                s_cmp = s1 + sdiff(a.compare, e1) / cpm
                s_stroke = s_cmp + self.world.speed * a.chute.actuation_ms / 1000.0
                parcel = self.world.stroke(a.chute, s_stroke)
                if parcel is not None:
                    parcel.fired_for = (self.boot_id, tid)
                    parcel.landed_key = self.conveyor.key_of(parcel)
                    parcel.landed_at = time.time()
                    self.confirms_due.append((time.monotonic() + self.confirm_delay_s, tid, a.chute.id))
                    if parcel.landed_key is None or parcel.landed_key[1] != tid:
                        self.note("took_other_parcel", tid=tid, chute=a.chute.id, parcel=parcel.pid,
                                  key=parcel.landed_key)
                else:
                    self.note("empty_stroke", tid=tid, chute=a.chute.id)

    def status(self) -> dict[str, Any]:
        return {"boot_id": self.boot_id, "powered": self.powered, "serving": self.server is not None,
                "port": self.port, "faults": self.regs[6], "armed": len(self.armed),
                "arm_head": self.get32(20), "arm_ack": self.get32(22), "result_head": self.get32(24),
                "confirm_head": self.get32(28), "results": self.results_total, "boot_ids": self.boot_ids,
                "host_heartbeat": self.get32(2), "reset_seq": self.get32(8)}
