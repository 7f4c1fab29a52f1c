"""Child processes of the harness (broker, relay, HMI, demos): a free loopback port for one, and
a stop that asks first (SIGTERM: the child saves its state) and kills only when it will not go."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess

__all__ = ["free_port", "signal_child", "stop_process"]


def free_port(preferred: int = 0) -> int:
    """``preferred`` if nothing listens there on 127.0.0.1, else a port the kernel picks."""
    for port in dict.fromkeys((preferred, 0)):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free port on 127.0.0.1")


def stop_process(proc: subprocess.Popen[bytes] | None, grace_s: float) -> None:
    """SIGTERM, then SIGKILL if it has not ended within ``grace_s``; reaped either way."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def signal_child(proc: asyncio.subprocess.Process, sig: int) -> None:
    """Signal an asyncio child without reaping it behind asyncio's back.

    ``asyncio.subprocess.Process.send_signal`` (and ``kill``, ``terminate``) goes through
    ``subprocess.Popen.send_signal``, which polls the child first (``waitpid(WNOHANG)``). A
    child that has just exited is reaped there, and asyncio's watcher thread, blocked in
    ``waitpid`` on the same pid, gets ECHILD and reports exit code 255 instead of the child's
    own (CI saw a simulator that exited 2 for a bad site file reported as 255). ``os.kill`` on a
    zombie does nothing and reaps nothing; the watcher stays the only one to wait.
    """
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
