"""The one error type for bad configuration: it names the file, the line and the field."""

from __future__ import annotations

from pathlib import Path


class ConfigError(Exception):
    """Raised at start-up for any invalid input file; the service refuses to start on it."""

    def __init__(self, file: str | Path, line: int | None, field: str, message: str) -> None:
        self.file = str(file)
        self.line = line
        self.field = field
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
