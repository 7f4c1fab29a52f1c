"""The Jinja environment: autoescaped templates from ``hmi/templates`` and display filters."""

from __future__ import annotations

import time

import jinja2

__all__ = ["make_templates"]


def _clock(t: float | None, with_date: bool = False) -> str:
    if not t:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S", time.localtime(float(t)))


def _number(v: float | int | None, digits: int = 0) -> str:
    if v is None:
        return "-"
    return f"{float(v):,.{digits}f}"


def _percent(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{100.0 * float(v):.{digits}f} %"


def make_templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("hmi", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a missing value is a bug to see, not an empty cell
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["clock"] = _clock
    env.filters["number"] = _number
    env.filters["percent"] = _percent
    return env
