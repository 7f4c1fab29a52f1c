"""The simulated camera tunnel: renders each scanned parcel's label and serves frames over TCP.

A TCP server in the ``vision.camstream`` format; every connected consumer receives every frame.
Rendering runs in a worker thread so it never stalls the PLC scan; when the worker falls
behind by more than ``max_pending`` frames, new triggers are dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from plc_sim.parcels import SYMBOLOGIES, LabelKind
from vision.camstream import CameraFrame, encode_frame
from vision.labels import make_s10
from vision.synth import Degradation, LabelSpec, render_frame

log = logging.getLogger(__name__)

Render = Callable[[Sequence[LabelSpec], Degradation, np.random.Generator, tuple[int, int]], npt.NDArray[np.uint8]]


def label_view(
    parcel_id: str, second_id: str, kind: int, severity: float, symbology: int, rng: np.random.Generator
) -> tuple[list[LabelSpec], Degradation]:
    """What the camera sees of one parcel: its labels and how badly it sees them."""
    sym = SYMBOLOGIES[symbology]
    labels: list[LabelSpec]
    if kind == LabelKind.MISSING:
        labels = []
    elif kind == LabelKind.DOUBLE:
        labels = [LabelSpec(parcel_id, sym), LabelSpec(second_id, sym)]  # type: ignore[arg-type]
    else:
        labels = [LabelSpec(parcel_id, sym)]  # type: ignore[arg-type]
    s = float(severity)
    deg = Degradation(
        rotation_deg=float(rng.uniform(-20.0, 20.0)) * (0.5 + s),
        perspective=0.15 * s,
        blur=2.0 * s,
        noise=3.0 + 15.0 * s,
        contrast=1.0 - 0.5 * s,
        glare=0.5 * s if rng.random() < 0.3 else 0.0,
        damage=0.6 + 0.4 * s if kind == LabelKind.DAMAGED else 0.0,
    )
    return labels, deg


@dataclass(slots=True)
class CameraStats:
    triggers: int = 0
    frames: int = 0
    dropped: int = 0
    clients: int = 0
    lag_s: list[float] = field(default_factory=list)  # trigger -> frame on the wire

    def lag_summary(self) -> dict[str, float]:
        if not self.lag_s:
            return {"frame_lag_p50_ms": float("nan"), "frame_lag_max_ms": float("nan")}
        a = np.asarray(self.lag_s[-10_000:]) * 1000.0
        return {"frame_lag_p50_ms": float(np.median(a)), "frame_lag_max_ms": float(a.max())}


class CameraServer:
    """The camera: ``trigger`` on each scan event; consumers connect to ``host:port``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        size: tuple[int, int] = (1280, 1024),
        *,
        name: str = "tunnel-1",
        render: Render = render_frame,
        max_pending: int = 8,
        seed: int = 1,
    ) -> None:
        self.host = host
        self._port = port
        self.size = size
        self.name = name
        self.render = render
        self.max_pending = max_pending
        self.stats = CameraStats()
        self.stalled_until = -1.0  # fault: frames dropped until this loop time
        self._rng = np.random.default_rng(seed)
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        # at the simulator's own priority: a render thread nicer than the scan thread that shares
        # its GIL waited for the GIL behind it (frames ~150 ms late at p50 on a loaded machine)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="camera-render")
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending = 0
        self._seq = 0
        self._send_lock = asyncio.Lock()

    @property
    def port(self) -> int:
        return self._port

    async def start(self) -> None:
        # The first render pays OpenCV's and the symbol encoders' start-up (~0.4 s): paid here,
        # not by the first parcels, whose frames would queue behind it, arrive seconds late or
        # be dropped, and be routed as late decodes.
        warm = [LabelSpec(make_s10("RR", 12345678, "CN"), "code128")]
        await asyncio.get_running_loop().run_in_executor(
            self._pool, self.render, warm, Degradation(), np.random.default_rng(0), self.size
        )
        self._server = await asyncio.start_server(self._on_client, self.host, self._port)
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._server is not None:
            self._server.close()
            for w in list(self._clients):
                w.close()
            await self._server.wait_closed()
            self._server = None
        self._clients.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        self.stats.clients = len(self._clients)
        try:
            await reader.read()  # consumers send nothing; this returns when they go away
        except (ConnectionError, OSError):
            pass
        finally:
            self._clients.discard(writer)
            self.stats.clients = len(self._clients)
            writer.close()

    def trigger(self, tracking_id: int, trigger_count: int, labels: list[LabelSpec], deg: Degradation) -> bool:
        """Take a picture for one scan trigger; False when the frame had to be dropped."""
        self.stats.triggers += 1
        loop = asyncio.get_running_loop()
        if self._pending >= self.max_pending or loop.time() < self.stalled_until:
            self.stats.dropped += 1
            return False
        self._pending += 1
        seed = int(self._rng.integers(1 << 62))
        task = loop.create_task(self._shoot(tracking_id, trigger_count, labels, deg, seed, loop.time()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _shoot(
        self, tid: int, count: int, labels: list[LabelSpec], deg: Degradation, seed: int, t_trigger: float
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            image = await loop.run_in_executor(
                self._pool, self.render, labels, deg, np.random.default_rng(seed), self.size
            )
        except Exception:
            log.exception("camera: rendering the frame for tracking id %d failed", tid)
            self.stats.dropped += 1
            return
        finally:
            self._pending -= 1
        async with self._send_lock:  # frames leave in seq order
            self._seq += 1
            frame = CameraFrame(self._seq, tid, count, self.name, time.time(), image)
            data = encode_frame(frame)
            for w in list(self._clients):
                try:
                    w.write(data)
                    await w.drain()
                except (ConnectionError, OSError):
                    self._clients.discard(w)
            self.stats.frames += 1
            self.stats.lag_s.append(loop.time() - t_trigger)
