"""A small JSON Schema checker for the subset ``host/schemas/*.json`` use (no new dependency).

Supported: ``type`` (one or a list), ``const``, ``enum``, ``properties``, ``required``,
``additionalProperties`` (false or a schema), ``items``, ``minLength``/``maxLength``,
``pattern``, ``minimum``. The relay checks the host's requests with it, and the tests check
every payload the relay publishes with it.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA_DIR", "errors", "load_schema"]

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,), "null": (type(None),),
    "integer": (int,), "number": (int, float),
}


@cache
def load_schema(name: str) -> dict[str, Any]:
    """``host/schemas/<name>.json``."""
    data: dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return data


def _is(value: object, type_name: str) -> bool:
    if isinstance(value, bool) and type_name in ("integer", "number"):
        return False
    return isinstance(value, _TYPES[type_name])


def errors(schema: dict[str, Any], value: object, path: str = "$") -> list[str]:
    """Every way ``value`` breaks ``schema``, as ``path: what`` lines (empty: it conforms)."""
    out: list[str] = []
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_is(value, n) for n in names):
            return [f"{path}: expected {' or '.join(names)}, got {type(value).__name__}"]
    if "const" in schema and value != schema["const"]:
        out.append(f"{path}: must be {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: must be one of {schema['enum']!r}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            out.append(f"{path}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            out.append(f"{path}: longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{path}: does not match {schema['pattern']}")
    if _is(value, "number") and "minimum" in schema and value < schema["minimum"]:
        out.append(f"{path}: below {schema['minimum']}")
    if isinstance(value, dict):
        props: dict[str, Any] = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                out.append(f"{path}: missing {key!r}")
        extra = schema.get("additionalProperties", True)
        for key, v in value.items():
            if key in props:
                out += errors(props[key], v, f"{path}.{key}")
            elif extra is False:
                out.append(f"{path}: unexpected field {str(key)[:64]!r}")
            elif isinstance(extra, dict):
                out += errors(extra, v, f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            out += errors(schema["items"], v, f"{path}[{i}]")
    return out
