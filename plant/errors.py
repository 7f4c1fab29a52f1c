"""The one error type for bad configuration: it names the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

MAX_QUOTE = 200  # characters of a field or message shown: a binary file's "line" can be megabytes


def printable(text: str, limit: int = MAX_QUOTE) -> str:
    """``text`` safe to print on a terminal or a web page: control and other non-printable
    characters escaped (``\\x1b``, ``\\x00``), cut to ``limit`` characters with a note.

    Input files quote their own bytes back in errors; a binary file must not put escape
    sequences on the operator's terminal nor a megabyte of garbage in a log line.
    """
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[: limit + 1])
    return out if len(text) <= limit else out[:limit] + f"... ({len(text)} characters)"


class ConfigError(Exception):
    """Raised at start-up for any invalid input file; the service refuses to start on it.

    ``field`` and ``message`` are made printable here (see :func:`printable`), so no caller
    can echo raw input bytes by accident.
    """

    def __init__(self, file: str | Path, line: int | None, field: str, message: str) -> None:
        self.file = str(file)
        self.line = line
        self.field = printable(field, 80)
        self.message = printable(message, 400)
        super().__init__(str(self))

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, int | None, str, str]]:
        """Picklable with its fields (a process pool sends it back to the parent)."""
        return (ConfigError, (self.file, self.line, self.field, self.message))

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
