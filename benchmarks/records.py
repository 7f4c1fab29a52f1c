"""Benchmark records: the `{"name", "unit", "value"}` shape CI benchmark trackers read."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True, slots=True)
class Record:
    """One figure of one benchmark; `extra` is free text for the human table only."""

    name: str
    unit: str
    value: float
    extra: str = ""

    def as_json(self) -> dict[str, object]:
        d = asdict(self)
        if not self.extra:
            d.pop("extra")
        return d


def print_table(title: str, records: Iterable[Record], console: Console | None = None) -> None:
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("unit")
    table.add_column("notes")
    for r in records:
        table.add_row(r.name, _fmt(r.value), r.unit, r.extra)
    (console or Console()).print(table)


def write_json(path: Path, records: Iterable[Record]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([r.as_json() for r in records], indent=2) + "\n")


def _fmt(v: float) -> str:
    if v != v:  # NaN
        return "n/a"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"
