"""The camera in the loop: frames from the camera's TCP stream, decoded off the control loop.

A task reads frames (``vision.camstream``), groups them by scan trigger (tracking id and
trigger count), hands each group to the ParcelDecoder (worker threads) and queues the verdict
for the control cycle, which joins it to the tracking id. The cycle never waits on a decode: a
parcel whose decode is not back by its routing deadline is routed as a timeout (no-read).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from control.lifecycle import ScanStatus
from control.service.feeds import DecodeResult
from vision.camstream import CameraFrame, StreamError, read_frame
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
        self.frames = 0
        self.lost_frames = 0
        self.decode_s: list[float] = []

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
        backoff = 0.05
        while True:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError as exc:
                log.debug("camera %s:%d: %s", self.host, self.port, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            self._connected = True
            if self._down_since is not None:
                log.info("camera %s:%d connected", self.host, self.port)
            self._down_since = None
            try:
                await self._read(reader)
            except (asyncio.IncompleteReadError, ConnectionError, StreamError) as exc:
                log.warning("camera stream ended: %s", exc)
            finally:
                self._connected = False
                self._down_since = self.clock()
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

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
        self.decode_s.append(done - t0)
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
