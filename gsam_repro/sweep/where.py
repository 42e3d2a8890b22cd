"""Where a sweep spec's value was written: the file and line behind each spec key path.

Every spec error names the key path in the YAML (`grid.optimizer[1].rho`) and its line, even when
the value came from a base file, a profile or a command-line override; `Where` keeps that map.
"""

from __future__ import annotations

from typing import Any

from gsam_repro.errors import ConfigError
from gsam_repro.yamlio import KeyLines


class Where:
    """Maps a spec key path to the file and line it was written at: the spec itself, a base
    file, a profile, or a command-line override."""

    def __init__(self, source: str, lines: KeyLines):
        self.source = source
        self.lines = lines
        self.origins: dict[str, tuple[str, str | None, KeyLines | None]] = {}
        self.base_file: tuple[str, KeyLines] | None = None

    def redirect(self, path: str, shown: str, source: str | None, lines: KeyLines | None):
        """Values at `path` (and below) came from `shown` in `source` (None: an override)."""
        self.origins[path] = (shown, source, lines)

    def error(self, path: str, message: str) -> ConfigError:
        probe = path
        while probe:
            if probe in self.origins:
                shown, source, lines = self.origins[probe]
                shown = shown + path[len(probe):]
                if source is None:
                    return ConfigError(shown, message, source="override")
                return ConfigError(shown, message, source=source,
                                   line=lines.line(shown) if lines else None)
            cut = max(probe.rfind("."), probe.rfind("["))
            probe = probe[:cut] if cut > 0 else ""
        if self.base_file and (path == "base" or path.startswith("base.")) and path != "base":
            source, lines = self.base_file
            key = path[len("base."):]
            return ConfigError(key, message, source=source, line=lines.line(key))
        return ConfigError(path, message, source=self.source, line=self.lines.line(path))



def mapping(value: Any, path: str, where: Where) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise where.error(path, f"expected a mapping, got {value!r}")
    return value

