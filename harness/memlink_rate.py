"""How fast a memory link answers the controller's conveyor poll: ``python -m harness.memlink_rate``.

One poll is what the controller does per cycle on the conveyor: one ``read`` of its scalars (the
ten of the interface before the boot id, plus the two ring heads they include) and one
``read_ring`` with the head just read. Measured on the bare link and through ``ReconnectingLink``
(as the controller holds it), with 1 and with 64 new ring entries per read. A measurement to
print, not a test: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from control.plc import ReconnectingLink
from harness.memlink import ConveyorMemoryLink
from plant.tagmap import load_tag_map
from plc_sim.servers import ConveyorMemory

SCALARS = (
    "plc_heartbeat", "encoder_count", "speed_actual", "belt_state", "belt_command_ack",
    "belt_command_result", "faults", "jam_eye", "induct.head", "scan.head",
)  # fmt: skip
ROOT = Path(__file__).resolve().parents[1]


async def rate(link: ConveyorMemoryLink | ReconnectingLink, head: int, new: int, seconds: float) -> float:
    """Polls per second: read the scalars, then the ring's ``new`` latest entries."""
    n = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        for _ in range(100):
            got = await link.read(SCALARS)
            ring = await link.read_ring("induct", head - new, int(got["induct.head"]))
            assert len(ring.entries) == new
        n += 100
        now = time.perf_counter()
        if now >= end:
            return n / (now - t0)


async def main(seconds: float) -> None:
    tags = load_tag_map(ROOT / "config" / "tagmap.yaml")
    image = ConveyorMemory(tags.conveyor)
    await image.start()
    ring = image.ring("induct")
    for i in range(ring.size):
        await ring.push(tracking_id=i + 1, leading_count=10 * i, trailing_count=10 * i + 5)
    bare = ConveyorMemoryLink(image, tags.conveyor)
    wrapped = ReconnectingLink(ConveyorMemoryLink(image, tags.conveyor))
    await bare.connect()
    await wrapped.connect()
    for name, link in (("MemoryLink", bare), ("ReconnectingLink(MemoryLink)", wrapped)):
        for new in (1, ring.size):
            r = await rate(link, ring.head, new, seconds)
            print(f"{name:30s} read({len(SCALARS)} scalars) + read_ring({new:2d} new): {r:9.0f} polls/s "
                  f"({1e6 / r:6.1f} us each)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    asyncio.run(main(ap.parse_args().seconds))
