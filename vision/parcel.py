"""`ParcelDecoder`: decode a parcel's frames off the control loop, within a per-parcel deadline.

Decoding runs in worker threads by default: OpenCV, zxing-cpp and zbar release the GIL for
their work (two threads decode about twice the frames per second of one on two cores), so
the event loop only sees short Python slices. `executor="process"` isolates decoding
completely, at the cost of pickling each frame; its workers die with the process that made the
decoder, however that process ends. Each frame is its own job: frames of one
parcel decode in parallel, and a deadline drops the frames not yet started.

Decoding is budgeted in two passes. Every frame first gets the cheap pass (`decode_frame`
with `effort="cheap"`, a millisecond or two); only frames in which it found no valid identity
are then decoded again in full (escalation: full-resolution crops, zbar, the whole frame, tens
to hundreds of milliseconds), and only while the parcel's deadline allows. The decoder keeps
its own queue in front of the worker pool, and a cheap pass always goes before any queued
escalation, of this parcel or another: under load a readable label is still read on time,
and what gets dropped at the deadline is the slow search through frames that hold nothing.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import logging
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import BrokenExecutor, Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Literal

import numpy as np
import numpy.typing as npt

from vision.aggregate import ParcelRead, aggregate
from vision.decode import Effort, decode_frame
from vision.engines import Read
from vision.labels import SYMBOLOGIES, Identity
from vision.parent_death import die_with_parent

log = logging.getLogger(__name__)


def _decode_job(
    image: npt.NDArray[np.generic], index: int, deadline: float, symbologies: tuple[str, ...], effort: Effort = "full"
) -> list[Read]:
    # time.monotonic() is one system-wide clock on Linux, so the deadline holds in a worker process.
    reads = decode_frame(image, symbologies=symbologies, deadline=deadline, effort=effort)
    return [replace(r, frame=index) for r in reads]


_CHEAP, _ESCALATE = 0, 1  # queue priorities: every queued cheap pass before any escalation


@dataclass(order=True)
class _Job:
    priority: int
    deadline: float
    seq: int
    image: npt.NDArray[np.generic] = field(compare=False)
    index: int = field(compare=False)
    result: asyncio.Future[list[Read]] = field(compare=False)


def _valid(reads: Sequence[Read]) -> bool:
    return any(isinstance(r.identity(), Identity) for r in reads)


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
        self._queue: list[_Job] = []  # a heap: cheap passes first, then by deadline
        self._seq = itertools.count()
        self._running = 0
        self.pool_restarts = 0
        self.escalations = 0  # frames decoded in full after their cheap pass read nothing
        self.escalations_dropped = 0  # ... that the deadline left no time for

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

    def _schedule(
        self, priority: int, deadline: float, image: npt.NDArray[np.generic], index: int
    ) -> asyncio.Future[list[Read]]:
        job = _Job(priority, deadline, next(self._seq), image, index, asyncio.get_running_loop().create_future())
        heapq.heappush(self._queue, job)
        self._pump()
        return job.result

    def _pump(self) -> None:
        """Start queued jobs while a worker is free; jobs whose parcel gave up are dropped."""
        while self._queue and self._running < self._workers and not self._closed:
            job = heapq.heappop(self._queue)
            if job.result.done():  # cancelled: its parcel's deadline passed
                continue
            if job.priority == _ESCALATE and time.monotonic() >= job.deadline:
                self.escalations_dropped += 1
                job.result.cancel()
                continue
            effort: Effort = "cheap" if job.priority == _CHEAP else "full"
            args = (job.image, job.index, job.deadline, self._symbologies, effort)
            try:
                try:
                    pool = self._pool
                    fut = asyncio.get_running_loop().run_in_executor(pool, _decode_job, *args)
                except BrokenExecutor:  # it broke since the last job: replace it and submit again
                    self._replace_broken_pool(self._pool)
                    pool = self._pool
                    fut = asyncio.get_running_loop().run_in_executor(pool, _decode_job, *args)
            except Exception as exc:
                job.result.set_exception(exc)
                continue
            self._running += 1
            fut.add_done_callback(functools.partial(self._finished, job=job, pool=pool))

    def _finished(self, fut: asyncio.Future[list[Read]], job: _Job, pool: Executor) -> None:
        self._running -= 1
        if not job.result.done():
            if fut.cancelled():
                job.result.cancel()
            elif (exc := fut.exception()) is not None:
                if isinstance(exc, BrokenExecutor):
                    self._replace_broken_pool(pool)
                job.result.set_exception(exc)
            else:
                job.result.set_result(fut.result())
        elif not fut.cancelled():
            fut.exception()  # retrieved: a late failure of an abandoned job is not an error
        self._pump()

    async def warm_up(self, timeout_s: float = 30.0) -> float:
        """Start every worker and load its decoders now, before parcels arrive: a worker process
        takes about half a second to start and import OpenCV and the decoders, and a service
        that restarts under a running belt would otherwise route its first scans as timeouts.
        Returns the seconds it took."""
        t0 = time.monotonic()
        blank = np.full((64, 64), 255, dtype=np.uint8)
        await self.decode_parcel([blank] * self._workers, timeout_s)
        return time.monotonic() - t0

    async def decode_parcel(
        self, frames: Sequence[npt.NDArray[np.generic]], deadline_s: float, *, escalate: bool = True
    ) -> ParcelRead:
        """All identities in a parcel's frames. Past `deadline_s` the status is "timeout"
        (a multi-read found in time is still reported as such).

        Every frame gets the cheap pass first; the frames in which it read no valid identity
        are then decoded in full while the deadline allows (`escalate=False`: never). A parcel
        read by the cheap pass is "read" even when the escalation of its other frames (which
        could only have found a second label) ran out of time; a parcel with no identity whose
        escalation did not finish is a "timeout", as it was not searched to the end."""
        if self._closed:
            raise RuntimeError("ParcelDecoder is closed")
        t0 = time.monotonic()
        deadline = t0 + deadline_s
        if not frames:
            return aggregate([], 0, 0.0)
        cheap = [self._schedule(_CHEAP, deadline, f, i) for i, f in enumerate(frames)]
        done, pending = await asyncio.wait(cheap, timeout=max(0.0, deadline_s))
        for p in pending:
            p.cancel()
        per_frame: dict[int, list[Read]] = {}
        failed = 0
        for i, fut in enumerate(cheap):
            if fut in done:
                first = self._outcome(fut)
                if first is None:
                    failed += 1
                else:
                    per_frame[i] = first
        unfinished = bool(pending)
        todo = [i for i, reads in per_frame.items() if not _valid(reads)] if escalate else []
        if todo and not pending:
            self.escalations += len(todo)
            full = {i: self._schedule(_ESCALATE, deadline, frames[i], i) for i in todo}
            left = deadline - time.monotonic()
            if left > 0:
                done2, pending2 = await asyncio.wait(full.values(), timeout=left)
            else:
                done2, pending2 = set(), set(full.values())
            for p in pending2:
                p.cancel()
            for i, fut in full.items():
                if fut in done2 and not fut.cancelled():
                    more = self._outcome(fut)
                    if more is not None:
                        per_frame[i] = per_frame[i] + more
            unfinished = bool(pending2) or any(f.cancelled() for f in done2)
        reads = [r for i in sorted(per_frame) for r in per_frame[i]]
        timed_out = bool(pending) or (unfinished and not _valid(reads))
        got = aggregate(reads, len(per_frame), time.monotonic() - t0, timed_out=timed_out)
        return replace(got, failed_frames=failed) if failed else got

    def _outcome(self, fut: asyncio.Future[list[Read]]) -> list[Read] | None:
        """A finished job's reads, or None (logged) when decoding the frame failed."""
        if fut.cancelled():
            return None
        exc = fut.exception()
        if exc is None:
            return fut.result()
        # One bad frame must not hide the others' reads, nor pass silently.
        if not isinstance(exc, BrokenExecutor):
            log.error("decoding a frame failed: %r", exc, exc_info=exc)
        return None

    async def close(self) -> None:
        """Stop the workers; frames still queued are dropped, a running one is waited for."""
        if self._closed:
            return
        self._closed = True
        for job in self._queue:
            job.result.cancel()
        self._queue.clear()
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)

    async def __aenter__(self) -> ParcelDecoder:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
