"""The simulated camera tunnel: renders each scanned parcel's label and serves frames over TCP.

A TCP server in the ``vision.camstream`` format; every connected consumer receives every frame.
Nothing of a frame touches the simulator's event loop, which also answers the controller's
OPC UA and Modbus requests: a render thread draws and encodes each frame, and each consumer has
a sender thread that writes it with a blocking ``sendall`` (the GIL is released while the kernel
copies the 1.3 MB). From the loop, a frame cost it ~1 ms (encode, and a 1.3 MB
``transport.write`` at 0.7 ms p50, 1.3 ms p90 on loopback) with PLC answers queued behind, and
a consumer that stopped reading held every other consumer's frames behind its ``drain()``.
When the renderer falls behind by more than ``max_pending`` frames, new triggers are dropped and
counted; a consumer more than ``SEND_QUEUE`` frames behind loses frames (counted) rather than
growing a queue without end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import select
import socket
import threading
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

SEND_QUEUE = 16  # frames (~21 MB at 1280x1024) a consumer may be behind before it loses some
POLL_S = 0.2  # how often an idle sender looks for its consumer having gone

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
    dropped: int = 0  # triggers whose frame was never taken (renderer behind, camera stalled)
    clients: int = 0
    skipped: int = 0  # frames a consumer too slow to keep up did not get
    lag_s: list[float] = field(default_factory=list)  # trigger -> frame encoded and queued to every consumer

    def lag_summary(self) -> dict[str, float]:
        if not self.lag_s:
            return {"frame_lag_p50_ms": float("nan"), "frame_lag_max_ms": float("nan")}
        a = np.asarray(self.lag_s[-10_000:]) * 1000.0
        return {"frame_lag_p50_ms": float(np.median(a)), "frame_lag_max_ms": float(a.max())}


class _Consumer:
    """One connected consumer: its socket and the thread that writes frames to it."""

    def __init__(self, conn: socket.socket, gone: Callable[[_Consumer], None]) -> None:
        self.conn = conn
        self.frames: queue.Queue[bytes | None] = queue.Queue(SEND_QUEUE)
        self._gone = gone
        self.thread = threading.Thread(target=self._run, name="camera-send", daemon=True)

    def _run(self) -> None:
        try:
            while True:
                try:
                    data = self.frames.get(timeout=POLL_S)
                except queue.Empty:
                    if self._hung_up():
                        return
                    continue
                if data is None:
                    return
                self.conn.sendall(data)
        except OSError:
            pass  # the consumer went away mid-frame
        finally:
            with contextlib.suppress(OSError):
                self.conn.close()
            self._gone(self)

    def _hung_up(self) -> bool:
        """Consumers send nothing: readable means end of stream (or a reset)."""
        readable, _, _ = select.select([self.conn], [], [], 0)
        if not readable:
            return False
        try:
            return self.conn.recv(4096) == b""
        except OSError:
            return True


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
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._clients: set[_Consumer] = set()
        self._lock = threading.Lock()  # the consumer set and the counters the threads share
        # at the simulator's own priority: a render thread nicer than the scan thread that shares
        # its GIL waited for the GIL behind it (frames ~150 ms late at p50 on a loaded machine)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="camera-render")
        self._pending = 0
        self._seq = 0  # one render thread: frames get their seq, and leave, in trigger order

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
        self._listener = socket.create_server((self.host, self._port))
        self._port = int(self._listener.getsockname()[1])
        self._acceptor = threading.Thread(target=self._accept, args=(self._listener,), name="camera-accept", daemon=True)
        self._acceptor.start()

    async def stop(self) -> None:
        await asyncio.to_thread(self._stop)

    def _stop(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the acceptor (Linux)
            self._listener.close()
            self._listener = None
        if self._acceptor is not None:
            self._acceptor.join(5.0)
            self._acceptor = None
        with self._lock:
            clients = list(self._clients)
        for c in clients:
            with contextlib.suppress(OSError):
                c.conn.shutdown(socket.SHUT_RDWR)  # a sender blocked in sendall returns
            with contextlib.suppress(queue.Full):
                c.frames.put_nowait(None)
        for c in clients:
            c.thread.join(5.0)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed by stop()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = _Consumer(conn, self._consumer_gone)
            with self._lock:
                self._clients.add(c)
                self.stats.clients = len(self._clients)
            c.thread.start()

    def _consumer_gone(self, c: _Consumer) -> None:
        with self._lock:
            self._clients.discard(c)
            self.stats.clients = len(self._clients)

    def trigger(self, tracking_id: int, trigger_count: int, labels: list[LabelSpec], deg: Degradation) -> bool:
        """Take a picture for one scan trigger; False when the frame had to be dropped."""
        self.stats.triggers += 1
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._pending >= self.max_pending or loop.time() < self.stalled_until:
                self.stats.dropped += 1
                return False
            self._pending += 1
        seed = int(self._rng.integers(1 << 62))
        try:
            self._pool.submit(self._shoot, tracking_id, trigger_count, labels, deg, seed, time.monotonic())
        except RuntimeError:  # stopping: the pool takes no more work
            with self._lock:
                self._pending -= 1
            return False
        return True

    def _shoot(self, tid: int, count: int, labels: list[LabelSpec], deg: Degradation, seed: int, t_trigger: float) -> None:
        """In the render thread: draw, encode, hand to every consumer's sender."""
        try:
            image = self.render(labels, deg, np.random.default_rng(seed), self.size)
        except Exception:
            log.exception("camera: rendering the frame for tracking id %d failed", tid)
            with self._lock:
                self.stats.dropped += 1
                self._pending -= 1
            return
        self._seq += 1
        data = encode_frame(CameraFrame(self._seq, tid, count, self.name, time.time(), image))
        with self._lock:
            self._pending -= 1
            for c in self._clients:
                try:
                    c.frames.put_nowait(data)
                except queue.Full:
                    self.stats.skipped += 1
            self.stats.frames += 1
            self.stats.lag_s.append(time.monotonic() - t_trigger)
