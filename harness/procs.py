"""Child processes of the harness (broker, relay, HMI, demos): a free loopback port for one, and
a stop that asks first (SIGTERM: the child saves its state) and kills only when it will not go."""

from __future__ import annotations

import socket
import subprocess

__all__ = ["free_port", "stop_process"]


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
