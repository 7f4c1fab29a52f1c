"""The camera worker process dies with the service that started it, however the service ends
(real processes, watched through /proc): a ~100 MB decoder must not outlive a killed controller."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.proctools import alive, gone_within

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")

ROOT = Path(__file__).resolve().parents[2]

SERVICE = """
import asyncio, socket, sys
from control.service.camera import CameraFeed

async def main() -> None:
    unused = socket.socket(); unused.bind(("127.0.0.1", 0))  # a camera that is not up: the worker retries
    feed = CameraFeed("127.0.0.1", unused.getsockname()[1], executor="process")
    await feed.warm_up(60.0)
    print(feed._proc.pid, flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await feed.close()

asyncio.run(main())
"""


def _start() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-c", SERVICE], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60.0)
    line = proc.stdout.readline() if ready else ""
    assert line, "the service did not start"
    return proc, int(line)


@pytest.mark.parametrize("how", ["kill-9", "clean"])
def test_the_camera_worker_ends_with_the_service(how: str) -> None:
    proc, worker = _start()
    with proc:
        _end(proc, worker, how)


def _end(proc: subprocess.Popen[str], worker: int, how: str) -> None:
    try:
        assert alive(worker)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdout.close()
        if how == "kill-9":
            proc.send_signal(signal.SIGKILL)
        else:
            proc.stdin.close()
        proc.wait(30)
        assert gone_within(worker, 10.0), f"camera worker {worker} outlived the service ({how})"
    finally:
        if alive(worker):
            os.kill(worker, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
