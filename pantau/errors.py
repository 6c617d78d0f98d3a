"""Errors that cross module boundaries."""

from __future__ import annotations

from pathlib import Path


class PantauError(Exception):
    """Base of every error Pantau raises on purpose."""


class UserError(PantauError):
    """Something the person running Pantau caused and can fix (a second run in the same
    folder, a port in use, a missing secret): its message is one line that says what to
    do, and `pantau` prints only that line, never a traceback."""


class ConfigError(PantauError):
    """A config file is wrong: names the file, the line and what is wrong."""

    def __init__(self, path: Path | str, line: int | None, problem: str) -> None:
        self.path = Path(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {problem}")


class ConfigErrors(PantauError):
    """Several config problems found in one pass, so an operator fixes them all at once."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class RejectedInput(PantauError):
    """Untrusted input refused by a decoder or validator.

    `reason` is a short machine-readable slug (it becomes the dead-letter topic level);
    `detail` says what exactly is wrong for a human.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")
