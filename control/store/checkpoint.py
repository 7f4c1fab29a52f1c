"""WAL checkpoints on a thread of their own, so that no commit of the control loop pays for one.

SQLite checkpoints a WAL database from inside whichever commit pushes the log past 1000 pages:
that commit then copies the log into the database file and fsyncs it, 10-35 ms on the
development VM instead of the ~0.6 ms of a plain commit, and the commit is on every arm
decision's path. The service's writer connection turns that off (``wal_autocheckpoint=0``)
and this thread checkpoints instead, from its own connection, in PASSIVE mode: it copies what
no reader still needs and never waits for, or blocks, the writer. SQLite restarts the log from
its beginning at the first commit after a checkpoint that copied everything, so the log stays
at about one interval's worth of commits.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

__all__ = ["Checkpointer"]

log = logging.getLogger(__name__)

JOURNAL_LIMIT_BYTES = 16 * 1024 * 1024  # a log that grew this large is cut back at its next restart


class Checkpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` on ``path`` every ``every_s`` seconds."""

    def __init__(self, path: str | Path, every_s: float = 1.0) -> None:
        self.path = Path(path)
        self.every_s = every_s
        self.runs = 0  # checkpoints done
        self.failures = 0
        self.last_log_pages = 0  # pages in the log at the last checkpoint (how much one interval writes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="event-store-checkpoint", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread (a checkpoint in progress finishes first)."""
        self._stop.set()
        self._thread.join()

    def _serve(self) -> None:
        con: sqlite3.Connection | None = None
        failing = False
        while not self._stop.wait(self.every_s):
            try:
                if con is None:
                    con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0.0)
                    con.execute(f"PRAGMA journal_size_limit={JOURNAL_LIMIT_BYTES}")
                _busy, pages, _copied = con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self.runs += 1
                self.last_log_pages = int(pages)
                if failing:
                    log.info("WAL checkpoints work again")
                    failing = False
            except sqlite3.Error as exc:  # a locked or vanished file: the next interval tries again
                self.failures += 1
                if not failing:
                    log.warning("WAL checkpoint failed: %s (retrying every %.1f s)", exc, self.every_s)
                    failing = True
                if con is not None:  # the next interval opens a fresh connection
                    con.close()
                    con = None
        if con is not None:
            con.close()
