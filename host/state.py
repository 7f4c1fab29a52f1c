"""The relay's own durable state, a small SQLite file beside the event store: how far each
stream was published (advanced only after the broker acknowledged every message up to it),
the totals of what was published, and every host request it took, with its answer.

Separate from the event store because the relay must never write there (the controller owns
it) except through the commands table. ``synchronous=FULL``: a cursor lost to a power cut only
means re-sends (duplicates with the same event ids), but a lost request record could let a
replayed request be applied twice.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["PendingRequest", "RelayState"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cursor (stream TEXT PRIMARY KEY, last_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS totals (key TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY, request_id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, t REAL NOT NULL,
    state TEXT NOT NULL,            -- pending (to hand to the controller), answered, sent
    command TEXT NOT NULL DEFAULT '', args TEXT NOT NULL DEFAULT '',
    command_id INTEGER, response TEXT NOT NULL DEFAULT ''
);
"""


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """A validated request the controller has not answered yet."""

    request_id: str
    kind: str
    command: str
    args: dict[str, Any]
    command_id: int | None


class RelayState:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('since', ?)", (repr(time.time()),))

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------------ publishing
    def cursors(self) -> dict[str, int]:
        return {str(s): int(i) for s, i in self._db.execute("SELECT stream, last_id FROM cursor")}

    def advance(self, cursors: dict[str, int], counts: Counter[str]) -> None:
        """After the broker acknowledged everything up to ``cursors``: move them and add the
        outcomes published to the totals, in one transaction."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO cursor (stream, last_id) VALUES (?, ?) ON CONFLICT(stream) DO UPDATE"
                           " SET last_id=MAX(last_id, excluded.last_id)", list(cursors.items()))
            db.executemany("INSERT INTO totals (key, n) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET n=n+excluded.n",
                           list(counts.items()))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def totals(self) -> tuple[float, dict[str, int]]:
        since = float(self._db.execute("SELECT value FROM meta WHERE key='since'").fetchone()[0])
        return since, {str(k): int(n) for k, n in self._db.execute("SELECT key, n FROM totals")}

    # ------------------------------------------------------------------ host requests
    def known(self, request_id: str) -> tuple[str, str] | None:
        """``(state, response JSON)`` of a request id taken before, or None."""
        row = self._db.execute("SELECT state, response FROM requests WHERE request_id=?", (request_id,)).fetchone()
        return (str(row[0]), str(row[1])) if row else None

    def take(self, request_id: str, kind: str, t: float, *, command: str = "", args: dict[str, Any] | None = None,
             response: dict[str, Any] | None = None) -> bool:
        """Record a new request: to be handed over (``command``), or already answered
        (``response``: the relay's own nack). False if the id was taken before."""
        cur = self._db.execute(
            "INSERT OR IGNORE INTO requests (request_id, kind, t, state, command, args, response) VALUES (?,?,?,?,?,?,?)",
            (request_id, kind, t, "answered" if response is not None else "pending", command,
             json.dumps(args or {}, separators=(",", ":")), json.dumps(response) if response is not None else ""),
        )
        return cur.rowcount == 1

    def pending(self) -> list[PendingRequest]:
        """Requests still to hand over or waiting for the controller's answer, oldest first."""
        return [PendingRequest(str(r), str(k), str(c), json.loads(a), None if i is None else int(i))
                for r, k, c, a, i in self._db.execute(
                    "SELECT request_id, kind, command, args, command_id FROM requests WHERE state='pending' ORDER BY seq")]

    def handed_over(self, request_id: str, command_id: int) -> None:
        self._db.execute("UPDATE requests SET command_id=? WHERE request_id=?", (command_id, request_id))

    def answer(self, request_id: str, response: dict[str, Any]) -> None:
        self._db.execute("UPDATE requests SET state='answered', response=?, args='' WHERE request_id=?",
                         (json.dumps(response), request_id))

    def unsent(self) -> list[tuple[str, dict[str, Any]]]:
        """Answers not yet acknowledged by the broker: ``(request id, response)``."""
        return [(str(r), json.loads(p)) for r, p in
                self._db.execute("SELECT request_id, response FROM requests WHERE state='answered' ORDER BY seq")]

    def sent(self, request_id: str) -> None:
        self._db.execute("UPDATE requests SET state='sent' WHERE request_id=?", (request_id,))
