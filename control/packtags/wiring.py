"""PackTags for a running Controller: the PackTags process (child.py), fed from the controller's
loop, and the commands it hands back queued through the controller's own store writer.

Per refresh (``rate_hz``) the controller's loop does one pure snapshot (model.py) and writes
one JSON line to the child's pipe; a new snapshot is sent only once the last one is
acknowledged, so a stuck child never makes the pipe (or memory) grow. Commands from the SCADA
become rows of the commands table, user ``scada``, exactly as an operator's; the supervisor
decides. Nothing here raises into the controller: a child that fails to start or dies logs one
error and the controller runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from control.packtags.commands import SCADA_USER
from control.packtags.model import Snapshotter, UnitView
from plant.children import signal_child

if TYPE_CHECKING:
    from control.service.controller import Controller
    from control.service.settings import PackTagsSettings
    from plant.opcua_security import OpcuaSecuritySettings

__all__ = ["PackTagsProcess", "unit_view"]

log = logging.getLogger("control.packtags")
START_TIMEOUT_S = 60.0


def unit_view(c: Controller) -> UnitView:
    """The controller's PackTags values (read on the controller's own loop, between cycles)."""
    return UnitView(c.unit.tags, c.faults.active, len(c.table), float(c.parcels.speed_mps), float(c.decider.speed_mps))


class PackTagsProcess:
    """``start()`` on the controller's loop, ``await close()`` at the end; never raises."""

    def __init__(self, c: Controller, cfg: PackTagsSettings, security: OpcuaSecuritySettings | None = None) -> None:
        self.controller = c
        self.cfg = cfg
        self.security = security
        self.port: int | None = None
        self.url = ""
        self.error = ""
        self.refreshes = 0
        self.commands_queued = 0
        self.snapshot_s = 0.0  # controller-loop time spent on PackTags (snapshot + send), summed
        self._ready = asyncio.Event()
        self._acked = True
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def serving(self) -> bool:
        return self.port is not None and not self.error

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="packtags")

    async def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        return self.serving

    async def close(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(Exception):
                assert proc.stdin is not None
                proc.stdin.write(b'{"stop":true}\n')
                await proc.stdin.drain()
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for task in (self._task, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self._task = self._reader = None

    async def kill(self) -> None:
        if self._proc is not None:
            signal_child(self._proc, signal.SIGKILL)  # not Process.kill(): see plant.children
        await self.close()

    # -- internals ----------------------------------------------------------------------------
    def _fail(self, why: str) -> None:
        if not self.error:
            self.error = why
            log.error("packtags: OPC UA server on %s:%s not serving (%s); the controller runs without it",
                      self.cfg.host, self.cfg.port, why)
        self._ready.set()

    async def _run(self) -> None:
        try:
            proc = self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "control.packtags.child",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 20,
            )
            assert proc.stdin is not None and proc.stdout is not None
            first = {"packtags": self.cfg.model_dump(),
                     "security": self.security.model_dump() if self.security is not None else {}}
            proc.stdin.write(json.dumps(first).encode() + b"\n")
            self._reader = asyncio.get_running_loop().create_task(self._read(proc.stdout), name="packtags-reader")
            await asyncio.wait_for(self._ready.wait(), START_TIMEOUT_S)
        except TimeoutError:
            self._fail(f"not up after {START_TIMEOUT_S:.0f} s")
            return
        except Exception as exc:
            self._fail(f"{type(exc).__name__}: {exc}")
            return
        if not self.serving:
            return
        snap = Snapshotter(time.monotonic)
        period = 1.0 / self.cfg.rate_hz
        while proc.returncode is None:
            if self._acked:
                t0 = time.perf_counter()
                line = json.dumps({"snap": snap.take(unit_view(self.controller)).to_json()}, separators=(",", ":"))
                self._acked = False
                proc.stdin.write(line.encode() + b"\n")
                self.snapshot_s += time.perf_counter() - t0
            await asyncio.sleep(period)

    async def _read(self, out: asyncio.StreamReader) -> None:
        try:
            while line := await out.readline():
                try:
                    msg: dict[str, Any] = json.loads(line)
                except ValueError:
                    continue
                if "log" in msg:
                    level, name, text = msg["log"]
                    logging.getLogger(name).log(int(level), "%s", text)
                elif "ready" in msg:
                    self.port, self.url = int(msg["ready"]), str(msg["url"])
                    log.info("packtags: serving PackML tags on %s (commands %s)", self.url,
                             "enabled" if self.cfg.commands_enabled else "read-only")
                    self._ready.set()
                elif "error" in msg:
                    self._fail(str(msg["error"]))
                elif "ack" in msg:
                    self.refreshes += 1
                    self._acked = True
                    for name, args in msg.get("commands", []):
                        await self._submit(str(name), args)
        finally:
            if not self._ready.is_set():
                self._fail("the PackTags process ended before it served")
            elif self.serving and self._proc is not None:
                code = await self._proc.wait()
                if code not in (0, None) and self._task is not None and not self._task.done():
                    log.error("packtags: the PackTags process ended (exit %s); the controller runs on", code)

    async def _submit(self, name: str, args: dict[str, object] | None) -> None:
        try:
            cid = await self.controller.writer.call(
                lambda s: s.add_command(name, time.time(), user=SCADA_USER, args=args))
        except Exception as exc:
            log.error("packtags: SCADA command %s not queued: %s", name, exc)
            return
        self.commands_queued += 1
        log.info("packtags: SCADA command %s%s queued (command %d)", name, f" {args}" if args else "", cid)
