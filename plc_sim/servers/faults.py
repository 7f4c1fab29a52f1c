"""Fault hooks both PLC servers share: slow responses, dropped connections, restarts.

Sockets are shut down, not just closed: a process forked after the server started (a
ProcessPoolExecutor worker with the default "fork" start method, for one) holds copies of
every descriptor, and ``close()`` only drops this process's copy. The listener would then
stay in LISTEN (a restart on the same port fails with EADDRINUSE and the kernel keeps
accepting connections nobody serves) and a "dropped" client would never see its FIN.
``shutdown()`` acts on the socket itself, whoever else holds a descriptor to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterable
from typing import Any


class ResponseDelay:
    """An injectable delay before the server answers a read or write (a slow or overloaded PLC)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    async def wait(self) -> None:
        if self.seconds > 0:
            await asyncio.sleep(self.seconds)


def shut(sock: Any) -> None:
    """Shut a socket down for every process holding it (a no-op on one already gone)."""
    if sock is None:
        return
    with contextlib.suppress(OSError, ValueError):
        sock.shutdown(socket.SHUT_RDWR)


def shut_connections(transports: Iterable[asyncio.BaseTransport]) -> int:
    """Shut down and abort accepted connections; returns how many there were."""
    n = 0
    for t in list(transports):
        shut(t.get_extra_info("socket"))
        if isinstance(t, asyncio.WriteTransport):
            t.abort()
        else:
            t.close()
        n += 1
    return n


def shut_listener(server: asyncio.AbstractServer | None) -> None:
    """Stop listening now: the port is free for a restart as soon as this returns."""
    if server is None:
        return
    loop = asyncio.get_running_loop()
    for s in getattr(server, "sockets", ()):
        with contextlib.suppress(OSError, ValueError):
            loop.remove_reader(s.fileno())  # no accept() on a socket being shut down (EINVAL)
        shut(s)
