"""The camera in the loop: a worker that decodes the camera's frames, and its verdicts for the cycle.

The camera's frames never enter this process. A camera worker (`camworker`, a spawned process
by default) connects to the camera's TCP stream itself (the wire format is in
docs/plc-interface.md, "Camera stream"), decodes each frame within its budget and sends back
one small verdict per scan trigger; this feed reads those off a pipe with the event loop's
reader callback and queues them for the control cycle, which joins each to its parcel by
tracking id and trigger count. The cycle never waits on a decode: a parcel whose verdict is not
back by its routing deadline is routed as a timeout (reason ``decode_late``).

The stream is the camera's to end, not ours: whatever ends it (a closed socket, a malformed
frame) is logged once, and the worker reconnects with capped backoff. A worker that dies (a
decoder library crashing on an image) is started again, and the scans it had in hand time out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any, Literal

from control.lifecycle import ScanStatus
from control.service.camworker import WorkerSpec, run_worker, worker_main
from control.service.feeds import DecodeResult
from control.service.metrics import Window
from vision.labels import SYMBOLOGIES

log = logging.getLogger(__name__)

_STATUS = {
    "read": ScanStatus.READ,
    "no_read": ScanStatus.NO_READ,
    "multi_read": ScanStatus.MULTI_READ,
    "timeout": ScanStatus.TIMEOUT,
}
RESTART_DELAY_S = 0.5  # a worker that died is started again after this long


class CameraFeed:
    """Starts the camera worker, and offers its verdicts through ``poll()``.

    ``executor="process"`` (the service's default) decodes in a spawned process that dies with
    this one; ``"thread"`` runs the same worker in threads of this process (tests: no process
    start-up, same protocol)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        deadline_s: float = 0.4,
        workers: int = 1,
        executor: Literal["thread", "process"] = "process",
        symbologies: tuple[str, ...] = SYMBOLOGIES,
        nicer_by: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = WorkerSpec(host, port, deadline_s, workers, symbologies, nicer_by)
        self.executor = executor
        self.clock = clock
        self._results: list[DecodeResult] = []
        self._connected = False
        self._down_since: float | None = clock()
        self._failures = 0  # connections in a row that ended or failed, logged at the first
        self._worked = False  # frames came since the last connect: a later end is a new failure
        self._conn: Connection | None = None
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._thread: threading.Thread | None = None
        self._thread_stop: threading.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = asyncio.Event()
        self._closed = False
        self._restart: asyncio.TimerHandle | None = None
        self.ready_s = float("nan")
        self.frames = 0
        self.lost_frames = 0
        self.restarts = 0
        self.decode_s = Window()  # seconds per decode, the last 65,536

    @property
    def healthy(self) -> bool:
        return self._connected

    @property
    def down_for(self) -> float:
        return 0.0 if self._down_since is None else self.clock() - self._down_since

    def poll(self) -> list[DecodeResult]:
        out, self._results = self._results, []
        return out

    def start(self) -> None:
        """Start the worker (call from the event loop that will read its verdicts)."""
        self._loop = asyncio.get_running_loop()
        self._spawn()

    async def warm_up(self, timeout_s: float = 30.0) -> float:
        """Wait until the worker has loaded its decoders (~0.5 s for a process: it imports
        OpenCV and both engines), so a service starting under a running belt does not route its
        first scans as timeouts. Returns the seconds it took."""
        if self._loop is None:
            self.start()
        t0 = time.monotonic()
        await asyncio.wait_for(self._ready.wait(), timeout_s)
        return time.monotonic() - t0

    async def close(self) -> None:
        self._closed = True
        if self._restart is not None:
            self._restart.cancel()
        await self._stop_worker()

    # ---------------------------------------------------------------- the worker
    def _spawn(self) -> None:
        assert self._loop is not None
        mine, theirs = multiprocessing.Pipe(duplex=True)
        if self.executor == "process":
            # spawn, not fork: a forked child would inherit the controller's PLC sockets and threads
            ctx = multiprocessing.get_context("spawn")
            spec = replace(self.spec, parent_pid=os.getpid())
            proc = ctx.Process(target=worker_main, args=(spec, theirs), name="camera-worker", daemon=True)
            proc.start()
            theirs.close()
            self._proc = proc
        else:
            stop = threading.Event()
            t = threading.Thread(target=run_worker, args=(self.spec, theirs, stop), name="camera-worker", daemon=True)
            t.start()
            self._thread, self._thread_stop = t, stop
        self._conn = mine
        self._loop.add_reader(mine.fileno(), self._on_readable)

    async def _stop_worker(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            if self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(conn.fileno())
            with contextlib.suppress(OSError, EOFError):
                conn.send(("stop",))
            conn.close()
        if self._thread_stop is not None:
            self._thread_stop.set()
        proc, self._proc = self._proc, None
        if proc is not None:
            await asyncio.to_thread(proc.join, 5.0)
            if proc.is_alive():
                proc.kill()
                await asyncio.to_thread(proc.join, 5.0)
        t, self._thread = self._thread, None
        if t is not None:
            await asyncio.to_thread(t.join, 5.0)
        self._connected_now(False)

    def _on_readable(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            while conn.poll():
                self._handle(conn.recv())
        except (EOFError, OSError):
            self._worker_died()

    def _worker_died(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(conn.fileno())
            conn.close()
        if self._closed:
            return
        self.restarts += 1
        code = self._proc.exitcode if self._proc is not None else None
        log.error("the camera worker died (exit code %s); starting a new one (restart %d); "
                  "scans it had in hand are routed as late decodes", code, self.restarts)
        self._proc = None
        self._connected_now(False)
        assert self._loop is not None
        self._restart = self._loop.call_later(RESTART_DELAY_S, self._respawn)

    def _respawn(self) -> None:
        self._restart = None
        if not self._closed:
            self._spawn()

    def _handle(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "frame":
            _, tid, count, status, ident, postal, country, decode_s, detail = msg
            self.frames += 1
            self._worked = True
            if decode_s > 0:
                self.decode_s.add(decode_s)
            self._results.append(DecodeResult(
                tracking_id=int(tid), trigger_count=int(count), status=_STATUS.get(status, ScanStatus.NO_READ),
                identity=str(ident), done_at=self.clock(), postal_code=postal, country=country, detail=str(detail),
            ))
        elif kind == "lost":
            self.lost_frames += int(msg[1])
        elif kind == "up":
            self._connected_now(True)
        elif kind == "down":
            self._connected_now(False, str(msg[1]))
        elif kind == "ready":
            self.ready_s = float(msg[1])
            self._ready.set()

    def _connected_now(self, up: bool, why: str = "") -> None:
        if up:
            if self._down_since is not None:
                log.info("camera %s:%d connected", self.spec.host, self.spec.port)
            self._connected, self._down_since = True, None
            return
        if self._connected or self._down_since is None:
            self._down_since = self.clock()
        self._connected = False
        if not why:
            return
        if self._worked:  # it worked for a while: not the same failure again
            self._failures, self._worked = 0, False
        self._failures += 1
        if self._failures == 1:
            log.warning("camera %s:%d: %s (reconnecting)", self.spec.host, self.spec.port, why)
        else:
            log.debug("camera %s:%d: %s", self.spec.host, self.spec.port, why)
