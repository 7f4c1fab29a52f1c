"""The camera in the loop: frames from the camera's TCP stream, decoded off the control loop.

A task reads frames (``vision.camstream``; the wire format is in docs/plc-interface.md, "Camera
stream"), hands each frame to the ParcelDecoder (a worker process) and queues the verdict for
the control cycle, which joins it to the parcel by tracking id and trigger count. The cycle
never waits on a decode: a parcel whose decode is not back by its routing deadline is routed as
a timeout (no-read).

The stream is the camera's to end, not ours: whatever ends it (a closed socket, a malformed
frame, a decoder error on a bad image) is logged once, and the feed reconnects with the same
capped backoff the PLC links use. TCP keepalive finds a peer that vanished without closing (a
power cut, a pulled cable) in about 10 s, since the protocol has no heartbeat of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from control.lifecycle import ScanStatus
from control.plc import Backoff
from control.service.feeds import DecodeResult
from control.service.metrics import Window
from vision.camstream import CameraFrame, read_frame
from vision.parcel import ParcelDecoder

log = logging.getLogger(__name__)

_STATUS = {
    "read": ScanStatus.READ,
    "no_read": ScanStatus.NO_READ,
    "multi_read": ScanStatus.MULTI_READ,
    "timeout": ScanStatus.TIMEOUT,
}


class CameraFeed:
    """Connects to a camera, decodes what it sends, and offers results through ``poll()``."""

    def __init__(
        self,
        host: str,
        port: int,
        decoder: ParcelDecoder,
        *,
        deadline_s: float = 0.4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host, self.port = host, port
        self.decoder = decoder
        self.deadline_s = deadline_s
        self.clock = clock
        self._results: list[DecodeResult] = []
        self._task: asyncio.Task[None] | None = None
        self._decodes: set[asyncio.Task[None]] = set()
        self._connected = False
        self._down_since: float | None = clock()
        self.backoff = Backoff(base_s=0.05, cap_s=2.0)
        self._rng = random.Random()
        self._failures = 0  # connections in a row that ended or failed (backoff), logged at the first
        self.frames = 0
        self.lost_frames = 0
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
        self._task = asyncio.create_task(self._run(), name="camera-feed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for t in list(self._decodes):
            t.cancel()
        if self._decodes:
            await asyncio.gather(*self._decodes, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError as exc:
                self._ended(f"cannot connect: {exc}")
                await asyncio.sleep(self.backoff.delay(self._failures - 1, self._rng))
                continue
            _keepalive(writer)
            self._connected = True
            if self._down_since is not None:
                log.info("camera %s:%d connected", self.host, self.port)
            self._down_since = None
            frames_before = self.frames
            try:
                await self._read(reader)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # anything that ends the stream (a decoder error too): reconnect
                if self.frames > frames_before:
                    self._failures = 0  # it worked for a while: not the same failure again
                self._ended(f"stream ended: {type(exc).__name__}: {exc}")
            finally:
                self._connected = False
                self._down_since = self.clock()
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
            await asyncio.sleep(self.backoff.delay(self._failures - 1, self._rng))

    def _ended(self, why: str) -> None:
        self._failures += 1
        if self._failures == 1:
            log.warning("camera %s:%d: %s (reconnecting)", self.host, self.port, why)
        else:
            log.debug("camera %s:%d: %s", self.host, self.port, why)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        # The camera sends one frame per scan trigger; each is decoded as it arrives (never
        # cancel a read half way: that would lose the stream's framing).
        last_seq: int | None = None
        while True:
            frame = await read_frame(reader)
            self.frames += 1
            if last_seq is not None and frame.seq > last_seq + 1:
                self.lost_frames += frame.seq - last_seq - 1
            last_seq = frame.seq
            self._dispatch([frame])

    def _dispatch(self, group: list[CameraFrame]) -> None:
        if not group:
            return
        task = asyncio.create_task(self._decode(group))
        self._decodes.add(task)
        task.add_done_callback(self._decodes.discard)

    async def _decode(self, group: list[CameraFrame]) -> None:
        first = group[0]
        images: list[npt.NDArray[np.generic]] = [f.image for f in group]
        t0 = self.clock()
        try:
            got = await self.decoder.decode_parcel(images, self.deadline_s)
        except Exception:  # never an unretrieved task error: the scan times out (no-read, counted)
            log.exception("decoding the frames of tracking id %d failed", first.tracking_id)
            return
        done = self.clock()
        self.decode_s.add(done - t0)
        ident = got.identity
        self._results.append(
            DecodeResult(
                tracking_id=first.tracking_id,
                trigger_count=first.trigger_count,
                status=_STATUS.get(got.status, ScanStatus.NO_READ),
                identity=ident.id if ident is not None else "",
                done_at=done,
                postal_code=ident.postal_code if ident is not None else None,
                country=ident.country if ident is not None else None,
                detail=f"{got.frames} frames",
            )
        )


def _keepalive(writer: asyncio.StreamWriter) -> None:
    """Probe an idle connection: a camera gone without a FIN is noticed in ~10 s, not never."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 5)
