"""Errors a user can fix by changing their input; the CLI shows them in one line, exit code 2."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input from the user (config, spec, arguments, paths). Exit code 2, no traceback."""


class ConfigError(UsageError):
    """A config or spec value is wrong. Names the dotted key, and the file and line where known."""

    def __init__(
        self, key: str, message: str, *, source: str | None = None, line: int | None = None
    ):
        self.key = key
        self.message = message
        self.source = source
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.source:
            where = f"{self.source}:{self.line}: " if self.line else f"{self.source}: "
        elif self.line:
            where = f"line {self.line}: "
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.message}"
