"""The PLC links of the cycle: a link that is down is reconnected beside the cycle, never in it.

A connect attempt can take the whole request timeout; inside the cycle it stalled the loop to
2 Hz while the other PLC was fine. So the cycle only asks ``usable(name)``: a connected link is
used, a link that is down gets one connect attempt in a background task when its backoff has
run out. The backoff is the link's own (`control.plc.ReconnectingLink`: capped exponential with
jitter, on the clock the link was given), so there is one reconnect policy, not one per caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from control.plc import Backoff, PlcError, PlcLink

__all__ = ["LINK_BACKOFF", "LinkKeeper"]

# The service's reconnect policy for both PLC links: 0.05 s doubling to 1 s, with jitter. A PLC
# back from a restart is found within about a second; a PLC that stays away costs one connect
# attempt a second.
LINK_BACKOFF = Backoff(base_s=0.05, cap_s=1.0)

log = logging.getLogger(__name__)


class LinkKeeper:
    """Background reconnects for the cycle's links (by name)."""

    def __init__(self, links: dict[str, PlcLink]) -> None:
        self.links = links
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def usable(self, name: str) -> bool:
        link = self.links[name]
        if link.connected:
            return True
        task = self._tasks.get(name)
        if (task is None or task.done()) and float(getattr(link, "retry_in", 0.0)) <= 0.0:
            self._tasks[name] = asyncio.create_task(self._attempt(name, link), name=f"reconnect-{name}")
        return False

    async def _attempt(self, name: str, link: PlcLink) -> None:
        try:
            await link.connect()  # a failure arms the link's backoff and is logged by the link
        except PlcError as exc:
            log.debug("%s: reconnect failed: %s", name, exc)

    async def close(self) -> None:
        """Stop reconnecting and close every link."""
        for t in self._tasks.values():
            t.cancel()
        for t in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        for link in self.links.values():
            with contextlib.suppress(Exception):
                await link.close()
