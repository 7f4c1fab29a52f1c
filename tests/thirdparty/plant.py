"""The third-party plant: world + conveyor PLC + diverter PLC + camera, in one process.

Run by test_thirdparty_plc.py as a child process (so the controller and the plant never share a
GIL, as two machines would not). It prints one JSON line ``{"ready": true, ...ports}`` and then
answers one JSON line per request line on stdin:

    {"op": "status"}                                    PLC states, heads, boot ids
    {"op": "restart", "plc": "conveyor"|"diverter", "kind": "warm"|"cold", "off_s": 2}
        -> {"t_off": wall time it went away, "t_back": wall time it serves again}
    {"op": "truth"}                                     ground truth (world.World.truth) + journals
    {"op": "stop"}

Everything listens on 127.0.0.1 only. Usage:
    python plant.py --site config/site.yaml --workdir DIR [--rate 10000] [--seed 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from camera import Camera
from plcs import ConveyorPlc, DiverterPlc
from world import Parcel, World, load_labels, load_site

HERE = Path(__file__).resolve().parent
INTEROP = HERE.parent / "interop"
log = logging.getLogger("thirdparty.plant")


def node_spec(tagmap_path: Path, path: str) -> dict[str, Any]:
    """The tag map's conveyor section as conveyor_plc_server.js wants it (its header comment)."""
    conv = yaml.safe_load(tagmap_path.read_text())["conveyor"]
    rings = {n: {"size": r["size"], "head": r["head"], "ack": r["ack"], "fields": r["fields"]}
             for n, r in conv["rings"].items()}
    return {"namespace_uri": conv["namespace_uri"], "root": conv["root"], "tags": conv["tags"],
            "rings": rings, "path": path}


class Plant:
    """Owns the tick: move the belt, latch the eyes, run both PLC programs, serve the camera."""

    def __init__(self, args: argparse.Namespace) -> None:
        site_path = Path(args.site).resolve()
        self.site = load_site(site_path)
        tagmap = site_path.parent / "tagmap.yaml"
        manifest = site_path.parent / "manifest.csv"
        self.work = Path(args.workdir)
        self.work.mkdir(parents=True, exist_ok=True)
        spec = self.work / "conveyor-spec.json"
        spec.write_text(json.dumps(node_spec(tagmap, self.site.conveyor_path)))
        self.world = World(self.site, load_labels(manifest), rate_per_hour=args.rate, seed=args.seed)
        self.camera = Camera(self.site.camera_width, self.site.camera_height)
        node = shutil.which("node") or "node"
        self.conveyor = ConveyorPlc(
            self.site, self.world, node=node, script=INTEROP / "conveyor_plc_server.js", spec=spec,
            pki=self.work / "pki", log_path=self.work / "node-opcua.log", on_scan=self._on_scan,
            encoder_resets=args.encoder_resets, serve_zeros_s=args.serve_zeros_s,
        )
        self.diverter = DiverterPlc(self.site, self.world, self.conveyor, encoder_offset=args.diverter_encoder_offset,
                                    confirm_delay_s=args.confirm_delay_s)
        self.tick_s = args.tick_ms / 1000.0
        self.max_dt = 0.0
        self.stalls: list[tuple[float, float]] = []  # (wall time, tick gap) over 50 ms

    def _on_scan(self, tid: int, count: int, lap: int, parcel: Parcel) -> None:
        self.camera.trigger(tid, count, parcel.label, variant=tid * 7 + lap)

    async def start(self) -> dict[str, Any]:
        cam = await self.camera.start(0)
        div = await self.diverter.start(0)
        conv = await self.conveyor.start(0)
        return {"ready": True, "conveyor_port": conv, "diverter_port": div, "camera_port": cam,
                "conveyor_boot_id": self.conveyor.boot_id, "diverter_boot_id": self.diverter.boot_id}

    async def run_ticks(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.tick_s)
            now = time.monotonic()
            dt = now - last
            last = now
            self.max_dt = max(self.max_dt, dt)
            if dt > 0.05:
                self.stalls.append((round(time.time(), 3), round(dt, 3)))
                log.warning("plant tick stalled %.0f ms", dt * 1000)
            s1, s2 = self.world.advance(dt, self.conveyor.on_eye)
            self.diverter.on_travel(s1, s2)
            self.world.drain(dt)
            self.conveyor.logic(now)
            self.diverter.scan(now)

    def status(self) -> dict[str, Any]:
        return {"conveyor": self.conveyor.status(), "diverter": self.diverter.status(),
                "camera": {"sent": self.camera.frames_sent, "dropped": self.camera.frames_dropped,
                           "clients": len(self.camera.clients), "connections": self.camera.connections},
                "belt": {"speed_mps": self.world.speed / 1000.0, "travel_mm": self.world.travel,
                         "on_belt": len(self.world.parcels), "in_chutes": len(self.world.done),
                         "fed": self.world.next_label},
                "max_tick_s": self.max_dt, "stalls": self.stalls[-50:], "time": time.time()}

    async def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "status":
            return self.status()
        if op == "restart":
            plc = self.conveyor if req["plc"] == "conveyor" else self.diverter
            t_off = time.time()
            off_s = float(req.get("off_s", 2.0))
            t_back = await (plc.warm_restart(off_s) if req["kind"] == "warm" else plc.cold_restart(off_s))
            return {"t_off": t_off, "t_back": t_back, "boot_id": plc.boot_id}
        if op == "truth":
            return {**self.world.truth(), "journal": self.conveyor.journal + self.diverter.journal,
                    "status": self.status()}
        raise ValueError(f"unknown op {op}")

    async def close(self) -> None:
        await self.conveyor.close()
        await self.diverter.close()
        await self.camera.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--site", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--rate", type=float, default=10_000.0, help="parcels per hour at full speed")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--tick-ms", type=float, default=4.0)
    ap.add_argument("--encoder-resets", action="store_true",
                    help="the conveyor PLC's encoder counter restarts at 0 on a power cycle")
    ap.add_argument("--diverter-encoder-offset", type=int, default=0,
                    help="experiment: the diverter PLC's counter runs this many counts behind the conveyor's")
    ap.add_argument("--serve-zeros-s", type=float, default=0.0,
                    help="experiment: a restarted OPC UA module serves zeros (boot id 0) this long first")
    ap.add_argument("--confirm-delay-s", type=float, default=0.15,
                    help="stroke to chute photo-eye time (the parcel's slide into the chute)")
    ap.add_argument("--nice", type=int, default=-10, help="niceness increment for the plant (0: none)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s.%(msecs)03d %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("pymodbus").setLevel(logging.ERROR)
    if args.nice:
        # a PLC runs on its own hardware: on a shared CI machine give the plant (and its node-opcua
        # child, which inherits it) a head start over the controller and test suites
        try:
            os.nice(args.nice)
        except OSError as exc:
            log.warning("cannot renice the plant: %r", exc)
    plant = Plant(args)
    ready = await plant.start()
    out = sys.stdout
    out.write(json.dumps(ready) + "\n")
    out.flush()
    ticks = asyncio.get_running_loop().create_task(plant.run_ticks())
    reader = asyncio.StreamReader(limit=1 << 20)
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    pending: set[asyncio.Task[None]] = set()

    async def serve(req: dict[str, Any]) -> None:
        try:
            reply = {"id": req.get("id"), "ok": True, **(await plant.handle(req))}
        except Exception as exc:  # reported to the test, never swallowed
            log.exception("request %s failed", req)
            reply = {"id": req.get("id"), "ok": False, "error": repr(exc)}
        out.write(json.dumps(reply) + "\n")
        out.flush()

    try:
        while line := await reader.readline():
            if not line.strip():
                continue
            req = json.loads(line)
            if req.get("op") == "stop":
                break
            task = asyncio.get_running_loop().create_task(serve(req))
            pending.add(task)
            task.add_done_callback(pending.discard)
    finally:
        ticks.cancel()
        await plant.close()
        out.write(json.dumps({"stopped": True}) + "\n")
        out.flush()


if __name__ == "__main__":
    asyncio.run(main())
