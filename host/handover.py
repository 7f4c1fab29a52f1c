"""Host requests handed to the running controller: the store's command table, the one place
the relay writes into the event store (as `sortctl plan activate` and the HMI do), with user
``host``; and the controller's answer read back.

The command's arguments carry the host's request id, so a relay that crashed between queueing
a command and recording its id finds it again instead of queueing it twice.
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from control.store import EventStore

__all__ = ["HOST_USER", "Handover", "errors_of"]

HOST_USER = "host"
# the controller's refusals name the place: "refused: tonight.csv:6: chutes: chute 999 is not in the site"
_WHERE = re.compile(r"(?P<file>[^:\s][^:]*):(?P<line>\d+): (?:(?P<field>[A-Za-z_][\w.]*): )?(?P<message>.+)")


def errors_of(result: str) -> list[dict[str, Any]]:
    """The file, line and field a controller's refusal names, when it names them."""
    text = result.removeprefix("refused: ")
    m = _WHERE.match(text)
    if m is None:
        return []
    return [{"file": m["file"], "line": int(m["line"]), "field": m["field"] or "", "message": m["message"][:1000]}]


class Handover:
    def __init__(self, db: Path) -> None:
        self.db = db
        self._ro: sqlite3.Connection | None = None

    def _reader(self) -> sqlite3.Connection:
        if self._ro is None:
            self._ro = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, check_same_thread=False, timeout=1.0)
        return self._ro

    def close(self) -> None:
        if self._ro is not None:
            self._ro.close()
            self._ro = None

    def find(self, command: str, request_id: str) -> int | None:
        """The command already queued for this request id, if any."""
        row = self._reader().execute(
            "SELECT id FROM commands WHERE user=? AND command=? AND json_valid(args)"
            " AND json_extract(args, '$.request_id')=? ORDER BY id LIMIT 1", (HOST_USER, command, request_id),
        ).fetchone()
        return int(row[0]) if row else None

    def queue(self, command: str, args: dict[str, Any]) -> int:
        """Queue the command (a short-lived writer connection); its id."""
        store = EventStore(self.db)
        try:
            return store.add_command(command, time.time(), user=HOST_USER, args=args)
        finally:
            store.close()

    def result(self, command_id: int) -> tuple[bool, str]:
        row = self._reader().execute("SELECT done, result FROM commands WHERE id=?", (command_id,)).fetchone()
        return (bool(row[0]), str(row[1])) if row else (False, "")
