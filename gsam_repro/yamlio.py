"""YAML reading that remembers the line of every key, so errors can point into the user's file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gsam_repro.errors import ConfigError, UsageError


class KeyLines(dict):
    """Maps a dotted key path ("optimizer.rho_max", "grid.seed[1]") to its 1-based line number."""

    def line(self, key: str) -> int | None:
        """The line of `key`, or of its closest enclosing key that has one."""
        while key:
            if key in self:
                return self[key]
            key = key.rpartition(".")[0]
        return None


def _walk(node: yaml.Node, prefix: str, lines: KeyLines, source: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:  # YAML keeps the last silently; a user meant one of them
                raise ConfigError(key, f"given twice (lines {seen[key]} and {line})",
                                  source=source, line=line)
            seen[key] = line
            lines[key] = line
            _walk(value_node, key, lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            key = f"{prefix}[{i}]"
            lines[key] = item.start_mark.line + 1
            _walk(item, key, lines, source)


def parse_yaml(text: str, source: str = "<string>") -> tuple[Any, KeyLines]:
    """Parse YAML text into plain Python data plus the line of every key."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError("", f"invalid YAML: {problem}", source=source, line=line) from None
    lines = KeyLines()
    if node is not None:
        _walk(node, "", lines, source)
    return data, lines


def load_yaml(path: str | Path) -> tuple[Any, KeyLines]:
    """Read a YAML file; a missing file is a UsageError naming the path."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    return parse_yaml(read_utf8(path), source=str(path))


def read_utf8(path: str | Path) -> str:
    """A text file's content; bytes that are not UTF-8 are a ConfigError giving the byte offset
    and line (the encoding YAML files are specified in, whatever the machine's locale)."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ConfigError("", f"not UTF-8 text: byte 0x{data[err.start]:02x} at byte offset "
                          f"{err.start}", source=str(path), line=line) from None


def parse_override(item: str) -> tuple[str, Any]:
    """Split a `dotted.key=value` override; the value is read as YAML (numbers, bools, lists)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"override {item!r}: expected dotted.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def set_dotted(tree: dict, key: str, value: Any) -> None:
    """Set tree[a][b][c] = value for key "a.b.c", creating mappings as needed."""
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value
