"""Child processes run under asyncio (the simulator under the harness, the PackTags server
under the controller): signalled without racing asyncio's own wait for them."""

from __future__ import annotations

import asyncio
import contextlib
import os

__all__ = ["signal_child"]


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
