"""Log set-up for the long-running commands: readable lines for people, JSON lines for machines.

The sorting floor ships service logs to a collector; one JSON object per line (time, level,
logger, message, and any ``extra=`` fields) is what those parse without a custom pattern.
Third-party protocol stacks log every connect and session step at INFO, and warn on every
reconnect attempt while a PLC is away (asyncua: "close_secure_channel was called but connection
is closed", once a second); they are held to ERROR unless asked for (``-v``): the service's own
link logging says "link lost" and "link recovered" once each, which is what an operator needs.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

__all__ = ["JsonFormatter", "setup_logging"]

LogFormat = Literal["text", "json"]
CHATTY = ("asyncua", "pymodbus", "transitions")  # transitions logs every state callback at INFO
_RESERVED = frozenset({*vars(logging.makeLogRecord({})), "message", "asctime", "taskName"})


class JsonFormatter(logging.Formatter):
    """One JSON object per record; fields given with ``extra=`` are kept as they are."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(fmt: LogFormat = "text", *, verbose: bool = False, level: int = logging.INFO) -> None:
    """Configure the root logger on stderr (replacing any earlier set-up)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else level)
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.ERROR)
