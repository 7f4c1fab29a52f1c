"""The event store behind one dedicated thread, so an fsync never blocks the control loop.

The thread takes jobs from a queue and hands each result straight back to the caller's event
loop (``call_soon_threadsafe``). That is what ``run_in_executor`` does too, minus its second
future, its locks and its callback chain: ~45 us less per commit on the development VM, and a
commit is on every decision's path (decision latency = read + decide + commit + arm write).
For the same reason the WAL is checkpointed by a thread of its own (`Checkpointer`), never by
a commit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from control.store import Batch, EventStore
from control.store.checkpoint import Checkpointer

T = TypeVar("T")

# a job: the function, and where its outcome goes (called on the writer thread)
_Job = tuple[Callable[[EventStore], Any], Callable[[Any, BaseException | None], None]]


class StoreWriter:
    """Owns the EventStore; every call runs on the writer thread, in submission order."""

    def __init__(
        self, path: str | Path, synchronous: Literal["FULL", "NORMAL"] = "FULL", busy_timeout_s: float = 0.05,
        checkpoint_s: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        opened: concurrent.futures.Future[EventStore] = concurrent.futures.Future()
        # daemon: a process that exits without close() abandons at most the transaction in
        # progress, which SQLite rolls back; nobody was told it was stored
        self._thread = threading.Thread(
            target=self._serve, args=(opened, synchronous, busy_timeout_s), name="event-store", daemon=True
        )
        self._thread.start()
        self.store: EventStore = opened.result()
        self.checkpointer = Checkpointer(self.path, checkpoint_s)

    async def call(self, fn: Callable[[EventStore], T]) -> T:
        """``fn(store)`` on the writer thread. A caller cancelled meanwhile does not stop a job
        already queued (it runs, its result is dropped), as with any thread."""
        if self._closed:
            raise RuntimeError("StoreWriter is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()

        def done(result: Any, exc: BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # the caller's loop closed: nobody waits
                loop.call_soon_threadsafe(_resolve, fut, result, exc)

        self._jobs.put((fn, done))
        return await fut

    async def commit(self, batch: Batch) -> int:
        """Durable when this returns; raises sqlite3.Error (nothing stored) otherwise."""
        return await self.call(lambda s: s.commit(batch))

    def close(self) -> None:
        """Finish every job already queued, close the store, stop the thread."""
        if self._closed:
            return
        self._closed = True
        self.checkpointer.close()
        closed: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._jobs.put((lambda s: s.close(), _settle(closed)))
        self._jobs.put(None)
        try:
            closed.result()
        finally:
            self._thread.join()

    def _serve(
        self, opened: concurrent.futures.Future[EventStore], synchronous: Literal["FULL", "NORMAL"], busy_s: float
    ) -> None:
        try:
            store = EventStore(self.path, synchronous, busy_timeout_s=busy_s, autocheckpoint=False)
        except BaseException as exc:
            opened.set_exception(exc)
            return
        opened.set_result(store)
        while (job := self._jobs.get()) is not None:
            fn, done = job
            try:
                result = fn(store)
            except BaseException as exc:  # handed to the caller; the thread serves the next job
                done(None, exc)
            else:
                done(result, None)


def _settle(fut: concurrent.futures.Future[Any]) -> Callable[[Any, BaseException | None], None]:
    def done(result: Any, exc: BaseException | None) -> None:
        if exc is None:
            fut.set_result(result)
        else:
            fut.set_exception(exc)

    return done


def _resolve(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():  # the caller was cancelled while the job ran
        return
    if exc is None:
        fut.set_result(result)
    else:
        fut.set_exception(exc)
