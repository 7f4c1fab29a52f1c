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


# libyaml's parser when PyYAML has it: ten times faster, same nodes and marks.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_DEPTH = 32  # nesting of mappings and lists: our files use at most 6
MAX_NODES = 200_000  # values after aliases are expanded: a small file must not expand to gigabytes


def _build(node: yaml.Node, path: PathKey, lines: dict[PathKey, int]) -> Any:
    """Plain data of ``node``, recording each path's line. Anything PyYAML would raise while
    building a value (an unknown tag, ``2001-02-30``, a list as a key, an alias cycle or an
    alias bomb) becomes a ConfigError at that node's line, so no input gives a traceback."""
    line = node.start_mark.line + 1
    lines[path] = line
    if len(path) > MAX_DEPTH:
        raise ConfigError("", line, _dotted(path[:4]) + "...", f"nested more than {MAX_DEPTH} levels deep (or an alias refers to itself)")
    if len(lines) > MAX_NODES:
        raise ConfigError("", line, _dotted(path), f"more than {MAX_NODES} values (aliases expand too far)")
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError("", key_node.start_mark.line + 1, _dotted(path), "a key must be a plain value, not a list or mapping")
            key = _scalar(key_node, path) if key_node.tag != "tag:yaml.org,2002:str" else key_node.value
            if key in out:
                raise ConfigError("", key_node.start_mark.line + 1, _dotted((*path, key)), "duplicate key")
            out[key] = _build(value_node, (*path, key), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(v, (*path, i), lines) for i, v in enumerate(node.value)]
    return _scalar(node, path)


def _scalar(node: yaml.Node, path: PathKey) -> Any:
    """One scalar as the safe loader reads it; a value it cannot construct is a ConfigError."""
    try:  # the safe loader's own constructor, without a serialise/parse round trip per value
        return yaml.constructor.SafeConstructor().construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        problem = exc.problem if isinstance(exc, yaml.MarkedYAMLError) and exc.problem else str(exc)
        raise ConfigError("", node.start_mark.line + 1, _dotted(path), f"not a valid value: {problem}") from None


def _check_depth(text: str) -> None:
    """Refuse deep nesting before composing: PyYAML's composer recurses once per level, so
    ``[[[[...`` a few hundred deep would end in RecursionError instead of a message."""
    depth = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else None
                raise ConfigError("", line, "", f"nested more than {MAX_DEPTH} levels deep")
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


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
        _check_depth(text)
        node = yaml.compose(text, Loader=_LOADER)
    except ConfigError as exc:
        raise ConfigError(path, exc.line, exc.field, exc.message) from None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ConfigError(path, line, "", f"not valid YAML: {exc.problem}") from exc
    except yaml.reader.ReaderError as exc:  # a control character (NUL, ESC...) in otherwise UTF-8 text
        line = text[: exc.position].count("\n") + 1
        raise ConfigError(path, line, "", f"not valid YAML: character U+{exc.character:04X} is not allowed") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, None, "", f"not valid YAML: {exc}") from None
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
        # An empty document (only comments, or nothing) has no node lines: its errors are on line 1.
        raise ConfigError(path, line_of(lines, loc) or 1, _dotted(loc), err["msg"]) from None


def yaml_model_from_text(model: type[M], text: str, source: str) -> M:
    """Validate YAML text that did not come from a file (an upload, a host message)."""
    data, lines = parse_yaml(text, source)
    return validate(model, data, Path(source), lines)


def load_yaml_model(model: type[M], path: str | Path) -> M:
    """Read and validate one YAML file into ``model``."""
    p = Path(path)
    data, lines = read_yaml(p)
    return validate(model, data, p, lines)
