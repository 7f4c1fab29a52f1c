"""The HMI's two ways into the event store: one read-only connection, and a short-lived writer
that does nothing but insert an operator command.

The read connection is opened ``mode=ro``: whatever goes wrong in the HMI, it cannot damage the
store the control cycle writes. The store may not exist yet (the service has not run) or be
mid-creation; the reader then says so (`StoreUnavailable`) and tries again on the next call.
Commands go through `EventStore.add_command`, the one write the HMI is allowed, on a connection
opened for that insert and closed straight after (it never holds a lock between commands).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from control.store import SCHEMA_VERSION, EventStore

__all__ = ["ReadStore", "StoreUnavailable", "send_command"]


class StoreUnavailable(Exception):
    """The event store cannot be read (or written) right now; the message says why."""


class ReadStore:
    """One read-only connection, opened on first use and again after any error.

    Not thread-safe: the HMI uses it from one worker thread only (see `hmi.workers`).
    """

    def __init__(self, path: Path, busy_timeout_s: float = 1.0) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self._db: sqlite3.Connection | None = None
        self.opened = 0  # how many times a connection was opened (a reopen resets data_version)

    def connect(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        if not self.path.exists():
            raise StoreUnavailable(f"no event store at {self.path} yet (is the controller service running?)")
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False,
                                 timeout=self.busy_timeout_s, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as exc:
            db.close()
            raise StoreUnavailable(f"cannot read {self.path}: {exc}") from exc
        if version < SCHEMA_VERSION:
            db.close()
            raise StoreUnavailable(
                f"{self.path} has schema version {version}, not {SCHEMA_VERSION}: the controller service "
                "has not created or upgraded it yet")
        self._db = db
        self.opened += 1
        return db

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """One consistent snapshot (a read transaction) for a group of queries; any SQLite error
        closes the connection (the next call reopens it) and becomes `StoreUnavailable`."""
        db = self.connect()
        try:
            db.execute("BEGIN")
            try:
                yield db
            finally:
                if db.in_transaction:
                    db.execute("COMMIT")
        except sqlite3.Error as exc:
            self.close()
            raise StoreUnavailable(f"reading {self.path} failed: {exc}") from exc

    def data_version(self) -> tuple[int, int]:
        """Changes whenever another connection committed (SQLite's ``PRAGMA data_version``),
        paired with the reopen count: the cheapest "did anything change?" there is."""
        db = self.connect()
        try:
            return self.opened, int(db.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error as exc:
            self.close()
            raise StoreUnavailable(f"reading {self.path} failed: {exc}") from exc

    def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            db.close()


def send_command(path: Path, command: str, user: str, args: dict[str, object],
                 busy_timeout_s: float = 2.0) -> int:
    """Insert one command for the service; returns its id.

    The store must exist at the current schema version: opening an older one writable would
    migrate it, and the HMI must never be the program that changes the store's shape.
    """
    if not path.exists():
        raise StoreUnavailable(f"no event store at {path}: the command cannot reach the service")
    try:
        probe = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=busy_timeout_s)
        try:
            version = int(probe.execute("PRAGMA user_version").fetchone()[0])
        finally:
            probe.close()
        if version != SCHEMA_VERSION:
            raise StoreUnavailable(f"{path} has schema version {version}, not {SCHEMA_VERSION}")
        store = EventStore(path, busy_timeout_s=busy_timeout_s)
        try:
            return store.add_command(command, time.time(), user=user, args=args)
        finally:
            store.close()
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"storing the command in {path} failed: {exc}") from exc
