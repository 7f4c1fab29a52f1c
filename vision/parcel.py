"""`ParcelDecoder`: decode a parcel's frames off the control loop, within a per-parcel deadline.

Decoding runs in worker threads by default: OpenCV, zxing-cpp and zbar release the GIL for
their work (two threads decode about twice the frames per second of one on two cores), so
the event loop only sees short Python slices. `executor="process"` isolates decoding
completely, at the cost of pickling each frame; its workers die with the process that made the
decoder, however that process ends. Each frame is its own job: frames of one
parcel decode in parallel, and a deadline drops the frames not yet started.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import BrokenExecutor, Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import replace
from types import TracebackType
from typing import Literal

import numpy as np
import numpy.typing as npt

from vision.aggregate import ParcelRead, aggregate
from vision.decode import decode_frame
from vision.engines import Read
from vision.labels import SYMBOLOGIES
from vision.parent_death import die_with_parent

log = logging.getLogger(__name__)


def _decode_job(image: npt.NDArray[np.generic], index: int, deadline: float, symbologies: tuple[str, ...]) -> list[Read]:
    # time.monotonic() is one system-wide clock on Linux, so the deadline holds in a worker process.
    return [replace(r, frame=index) for r in decode_frame(image, symbologies=symbologies, deadline=deadline)]


class ParcelDecoder:
    """Async front of the decode pipeline; use as `async with ParcelDecoder() as dec:`.

    With `executor="process"` a worker is tied to the thread whose decode call started it (see
    `die_with_parent`), so decode from a thread that lives as long as the decoder: the
    service's event loop thread.
    """

    def __init__(
        self,
        workers: int = 2,
        executor: Literal["thread", "process"] = "thread",
        symbologies: Sequence[str] = SYMBOLOGIES,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._symbologies = tuple(symbologies)
        self._workers = workers
        self._executor = executor
        self._pool = self._new_pool()
        self._closed = False
        self.pool_restarts = 0

    def _new_pool(self) -> Executor:
        if self._executor == "thread":
            return ThreadPoolExecutor(self._workers, thread_name_prefix="vision")
        # spawn, not fork: a worker forked from the controller would inherit its PLC sockets
        # and threads (a restarted PLC could not rebind; fork under threads can deadlock).
        # A spawned worker is a fresh interpreter holding only the pool's pipes.
        # Not forkserver either: its workers are the fork server's children, and each holds
        # the server's "keep alive" pipe, so after a kill -9 of the controller the server,
        # the resource tracker and the workers kept each other alive. Spawned workers are the
        # controller's own children and die with it (`die_with_parent`); the resource tracker
        # then sees its pipe close and exits by itself. Spawn costs about the same: either way
        # a worker imports OpenCV and numpy itself (first decode ~0.4 s with both; replacing a
        # crashed worker ~0.1 s slower, as the interpreter starts afresh).
        return ProcessPoolExecutor(
            self._workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=die_with_parent,
            initargs=(os.getpid(),),
        )

    def _replace_broken_pool(self, broken: Executor) -> None:
        """A worker process died (a decoder library crashing on one image): the executor is
        broken for good and would fail every later frame, so a fresh one takes its place."""
        if self._pool is not broken or self._closed:
            return  # another parcel's decode replaced it already
        self.pool_restarts += 1
        log.error("a decode worker died; starting a new worker pool (restart %d)", self.pool_restarts)
        self._pool = self._new_pool()
        broken.shutdown(wait=False, cancel_futures=True)

    def _submit(
        self, loop: asyncio.AbstractEventLoop, frames: Sequence[npt.NDArray[np.generic]], deadline: float
    ) -> list[asyncio.Future[list[Read]]]:
        try:
            return self._submit_to(self._pool, loop, frames, deadline)
        except BrokenExecutor:  # it broke since the last parcel: replace it and submit again
            self._replace_broken_pool(self._pool)
            return self._submit_to(self._pool, loop, frames, deadline)

    def _submit_to(
        self, pool: Executor, loop: asyncio.AbstractEventLoop, frames: Sequence[npt.NDArray[np.generic]],
        deadline: float,
    ) -> list[asyncio.Future[list[Read]]]:
        return [
            loop.run_in_executor(pool, _decode_job, f, i, deadline, self._symbologies)
            for i, f in enumerate(frames)
        ]

    async def warm_up(self, timeout_s: float = 30.0) -> float:
        """Start every worker and load its decoders now, before parcels arrive: a worker process
        takes about half a second to start and import OpenCV and the decoders, and a service
        that restarts under a running belt would otherwise route its first scans as timeouts.
        Returns the seconds it took."""
        t0 = time.monotonic()
        blank = np.full((64, 64), 255, dtype=np.uint8)
        await self.decode_parcel([blank] * self._workers, timeout_s)
        return time.monotonic() - t0

    async def decode_parcel(self, frames: Sequence[npt.NDArray[np.generic]], deadline_s: float) -> ParcelRead:
        """All identities in a parcel's frames. Past `deadline_s` the status is "timeout"
        (a multi-read found in time is still reported as such)."""
        if self._closed:
            raise RuntimeError("ParcelDecoder is closed")
        t0 = time.monotonic()
        deadline = t0 + deadline_s
        loop = asyncio.get_running_loop()
        pool = self._pool
        futures = self._submit(loop, frames, deadline)
        if not futures:
            return aggregate([], 0, 0.0)
        done, pending = await asyncio.wait(futures, timeout=max(0.0, deadline_s))
        for p in pending:
            p.cancel()
        reads: list[Read] = []
        failed = 0
        for f in done:
            if (exc := f.exception()) is not None:
                # One bad frame must not hide the others' reads, nor pass silently.
                failed += 1
                if isinstance(exc, BrokenExecutor):
                    self._replace_broken_pool(pool)
                else:
                    log.error("decoding a frame failed: %r", exc, exc_info=exc)
            else:
                reads += f.result()
        got = aggregate(reads, len(done) - failed, time.monotonic() - t0, timed_out=bool(pending))
        return replace(got, failed_frames=failed) if failed else got

    async def close(self) -> None:
        """Stop the workers; frames still queued are dropped, a running one is waited for."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)

    async def __aenter__(self) -> ParcelDecoder:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
