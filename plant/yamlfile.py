"""YAML files validated into pydantic models, with errors that point at file, line and field.

PyYAML's composer keeps a mark on every node; we keep the mark of each path so that a
pydantic error location such as ``("chutes", 3, "capacity")`` becomes ``site.yaml:41``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from plant.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
PathKey = tuple[str | int, ...]


def _build(node: yaml.Node, path: PathKey, lines: dict[PathKey, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.safe_load(yaml.serialize(key_node)) if key_node.tag != "tag:yaml.org,2002:str" else key_node.value
            if key in out:
                raise ConfigError("", key_node.start_mark.line + 1, _dotted((*path, key)), "duplicate key")
            out[key] = _build(value_node, (*path, key), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(v, (*path, i), lines) for i, v in enumerate(node.value)]
    return yaml.safe_load(yaml.serialize(node))


def _dotted(path: PathKey) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def read_text(path: str | Path) -> str:
    """A config file's text; unreadable or not UTF-8 is a ConfigError naming the file."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(p, None, "", f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        line = p.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError(p, line, "", f"not UTF-8 text (byte {exc.start})") from None


def read_yaml(path: Path) -> tuple[Any, dict[PathKey, int]]:
    """Parse a YAML file; return the data and a map from each value's path to its line."""
    return parse_yaml(read_text(path), path)


def parse_yaml(text: str, path: Path | str) -> tuple[Any, dict[PathKey, int]]:
    """Parse YAML text (from ``path``, named in errors)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ConfigError(path, line, "", f"not valid YAML: {exc.problem}") from exc
    lines: dict[PathKey, int] = {}
    if node is None:
        return {}, lines
    try:
        return _build(node, (), lines), lines
    except ConfigError as exc:
        raise ConfigError(path, exc.line, exc.field, exc.message) from None


def line_of(lines: dict[PathKey, int], loc: PathKey) -> int | None:
    """The line of the deepest known prefix of ``loc`` (a missing field points at its parent)."""
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def validate(model: type[M], data: Any, path: Path, lines: dict[PathKey, int]) -> M:
    """Validate ``data`` into ``model``; the first error becomes a ConfigError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(p for p in err["loc"] if isinstance(p, (str, int)))
        raise ConfigError(path, line_of(lines, loc), _dotted(loc), err["msg"]) from None


def yaml_model_from_text(model: type[M], text: str, source: str) -> M:
    """Validate YAML text that did not come from a file (an upload, a host message)."""
    data, lines = parse_yaml(text, source)
    return validate(model, data, Path(source), lines)


def load_yaml_model(model: type[M], path: str | Path) -> M:
    """Read and validate one YAML file into ``model``."""
    p = Path(path)
    data, lines = read_yaml(p)
    return validate(model, data, p, lines)
