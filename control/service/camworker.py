"""The camera worker: connects to the camera, decodes every frame, sends back only verdicts.

It runs in a process of its own (or, for tests, a thread), so a camera's megabytes per frame
never pass through the control loop's process: the controller only receives a small tuple per
scan. Before, each 1280x1024 frame was read by the controller's event loop, pickled and piped
to a decode process (~1.3 MB copied three times in the controller, with the GIL held for the
copies); on two cores that contention showed up as control-cycle lag, and a tunnel of several
cameras would have multiplied it.

Inside the worker one thread reads frames off the socket (timestamping each on arrival) and
``threads`` decode threads work in two passes, as `vision.parcel` explains: every frame first
gets the cheap pass (``effort="cheap"``, a millisecond or two); a frame it read is answered at
once, one it did not goes to the escalation list. A decode thread escalates (the full search:
tens to hundreds of milliseconds) only when no frame waits for its cheap pass, oldest first. A
frame carries a budget: its verdict is due ``deadline_s`` after it arrived. One whose budget ran
out before it was escalated (or before its cheap pass) is answered ``timeout`` at once, never
decoded late, so a worker that fell behind (a CPU spike, a burst of parcels) catches up at once
instead of making every later parcel late as well; under load a readable label is still read in
time, and what is dropped is the slow search through frames that hold nothing readable.

Messages to the controller (tuples, small to pickle):

- ``("ready", seconds)`` once the decoders are loaded (the first frame would otherwise pay it);
- ``("up",)`` / ``("down", why)`` as the camera connection comes and goes;
- ``("frame", tracking_id, trigger_count, status, identity, postal_code, country, decode_s,
  detail)`` for every frame, and ``("lost", n)`` for frames the camera's seq says never came.

The controller ends the worker by sending ``("stop",)`` or by closing its end of the pipe.
"""

from __future__ import annotations

import collections
import contextlib
import random
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from control.plc.reconnect import Backoff
from plant import priority
from vision.aggregate import aggregate
from vision.camstream import (
    CameraFrame,
    StreamError,
    check_magic,
    decode_message,
    header_length,
    payload_length,
)
from vision.decode import Effort, decode_frame
from vision.labels import SYMBOLOGIES, Identity

__all__ = ["WorkerSpec", "run_worker", "worker_main"]



@dataclass(frozen=True, slots=True)
class WorkerSpec:
    host: str
    port: int
    deadline_s: float = 0.4  # decode must end this long after the frame arrived
    threads: int = 1
    symbologies: tuple[str, ...] = SYMBOLOGIES
    nicer_by: int = 5  # this much nicer than the control loop that started it: bulk work gives way
    parent_pid: int | None = None  # set for a worker process: it dies with that process


def worker_main(spec: WorkerSpec, conn: Connection) -> None:
    """Entry point of the worker process (spawned: it inherits none of the controller's sockets)."""
    if spec.parent_pid is not None:
        from vision.parent_death import die_with_parent

        die_with_parent(spec.parent_pid)
    run_worker(spec, conn)


def run_worker(spec: WorkerSpec, conn: Connection, stop: threading.Event | None = None) -> None:
    """Run until the controller says stop or goes away (its end of the pipe closes)."""
    stop = stop or threading.Event()
    priority.be_nicer(spec.nicer_by)  # before its threads start: they inherit it
    worker = _Worker(spec, conn, stop)
    worker.start()
    try:
        while not stop.is_set():
            if conn.poll(0.2):
                msg = conn.recv()
                if msg == ("stop",):
                    break
    except (EOFError, OSError):
        pass  # the controller is gone
    finally:
        stop.set()
        worker.join()


class _Worker:
    def __init__(self, spec: WorkerSpec, conn: Connection, stop: threading.Event) -> None:
        self.spec = spec
        self.conn = conn
        self.stop = stop
        self._work = threading.Condition()
        self._fresh: collections.deque[tuple[CameraFrame, float]] = collections.deque()  # awaiting the cheap pass
        self._escalate: collections.deque[tuple[CameraFrame, float]] = collections.deque()  # cheap pass read nothing
        self._send_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sock: socket.socket | None = None

    def start(self) -> None:
        t = threading.Thread(target=self._read_loop, name="camera-read", daemon=True)
        self._threads.append(t)
        t.start()
        for i in range(max(1, self.spec.threads)):
            d = threading.Thread(target=self._decode_loop, name=f"camera-decode-{i}", daemon=True)
            self._threads.append(d)
            d.start()

    def join(self) -> None:
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with self._work:
            self._work.notify_all()
        for t in self._threads:
            t.join(timeout=5.0)

    def send(self, msg: tuple[Any, ...]) -> None:
        with self._send_lock:
            try:
                self.conn.send(msg)
            except (OSError, EOFError, BrokenPipeError):
                self.stop.set()  # the controller is gone: nobody to decode for

    # ---------------------------------------------------------------- reading
    def _read_loop(self) -> None:
        t0 = time.monotonic()
        _warm_up(self.spec.symbologies)
        self.send(("ready", time.monotonic() - t0))
        backoff, rng, failures = Backoff(base_s=0.05, cap_s=2.0), random.Random(), 0
        while not self.stop.is_set():
            try:
                sock = socket.create_connection((self.spec.host, self.spec.port), timeout=2.0)
            except OSError as exc:
                failures += 1
                self.send(("down", f"cannot connect: {exc}"))
                self.stop.wait(backoff.delay(failures - 1, rng))
                continue
            sock.settimeout(None)
            _keepalive(sock)
            self._sock = sock
            self.send(("up",))
            got = 0
            try:
                got = self._read_frames(sock)
                why = "the camera closed the stream"
            except Exception as exc:  # anything that ends the stream (cv2 on a bad PNG too): reconnect
                why = f"stream ended: {type(exc).__name__}: {exc}"
            finally:
                self._sock = None
                with contextlib.suppress(OSError):
                    sock.close()
            if self.stop.is_set():
                return
            failures = 1 if got else failures + 1  # it worked for a while: not the same failure again
            self.send(("down", why))
            self.stop.wait(backoff.delay(failures - 1, rng))

    def _read_frames(self, sock: socket.socket) -> int:
        """Frames until the stream ends (returns how many were read, 0 at a clean end)."""
        n = 0
        last_seq: int | None = None
        while not self.stop.is_set():
            head = _recv_exact(sock, 8)
            if head is None:
                return n
            check_magic(head[:4])
            header = _recv_exact(sock, header_length(head[4:]) + 4)
            if header is None:
                raise StreamError("stream ended inside a frame")
            payload = _recv_exact(sock, payload_length(header[-4:]))
            if payload is None:
                raise StreamError("stream ended inside a frame")
            frame = decode_message(bytes(header[:-4]), payload)  # type: ignore[arg-type]
            arrived = time.monotonic()
            n += 1
            if last_seq is not None and frame.seq > last_seq + 1:
                self.send(("lost", frame.seq - last_seq - 1))
            last_seq = frame.seq
            with self._work:
                self._fresh.append((frame, arrived))
                self._work.notify()
        return n

    # ---------------------------------------------------------------- decoding
    def _next(self) -> tuple[CameraFrame, float, Effort] | None:
        """The next job: a frame's cheap pass before any escalation; None when stopping."""
        with self._work:
            while not self.stop.is_set():
                if self._fresh:
                    frame, arrived = self._fresh.popleft()
                    return frame, arrived, "cheap"
                if self._escalate:
                    frame, arrived = self._escalate.popleft()
                    return frame, arrived, "full"
                self._work.wait(0.5)
        return None

    def _decode_loop(self) -> None:
        spec = self.spec
        while (job := self._next()) is not None:
            frame, arrived, effort = job
            deadline = arrived + spec.deadline_s
            t0 = time.monotonic()
            if t0 >= deadline:  # its budget ran out while it waited: a decode now would be late
                self._answer_late(frame, "cheap pass" if effort == "cheap" else "escalation")
                continue
            try:
                reads = decode_frame(frame.image, symbologies=spec.symbologies, deadline=deadline, effort=effort)
            except Exception as exc:  # a decoder library failing on one image: that scan is a no-read
                self._answer(frame, "no_read", None, time.monotonic() - t0,
                             f"decode failed: {type(exc).__name__}: {exc}")
                continue
            took = time.monotonic() - t0
            got = aggregate(reads, 1, took, timed_out=effort == "full" and time.monotonic() > deadline)
            if effort == "cheap" and got.status == "no_read":  # nothing read: the full search, if time allows
                with self._work:
                    self._escalate.append((frame, arrived))
                    self._work.notify()
                continue
            self._answer(frame, got.status, got.identity, took, f"{effort} pass")

    def _answer(self, frame: CameraFrame, status: str, ident: Identity | None, took: float, detail: str) -> None:
        self.send((
            "frame", frame.tracking_id, frame.trigger_count, status,
            ident.id if ident is not None else "",
            ident.postal_code if ident is not None else None,
            ident.country if ident is not None else None,
            took, detail,
        ))

    def _answer_late(self, frame: CameraFrame, step: str) -> None:
        self._answer(frame, "timeout", None, 0.0, f"not decoded: its budget ran out before its {step}")


def _recv_exact(sock: socket.socket, n: int) -> bytearray | None:
    """Exactly n bytes; None at a clean end of stream before the first byte."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            if got == 0:
                return None
            raise StreamError("stream ended inside a frame")
        got += k
    return buf


def _warm_up(symbologies: Sequence[str]) -> None:
    """Load OpenCV and both decoders now (~0.4 s), not on the first parcel's frame."""
    decode_frame(np.full((64, 64), 255, dtype=np.uint8), symbologies=symbologies)


def _keepalive(sock: socket.socket) -> None:
    """Probe an idle connection: a camera gone without a FIN is noticed in ~10 s, not never."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 5)
