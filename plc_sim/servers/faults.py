"""Fault hooks both PLC servers share: slow responses, dropped connections, restarts."""

from __future__ import annotations

import asyncio


class ResponseDelay:
    """An injectable delay before the server answers a read or write (a slow or overloaded PLC)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    async def wait(self) -> None:
        if self.seconds > 0:
            await asyncio.sleep(self.seconds)
