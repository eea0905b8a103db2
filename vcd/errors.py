"""One exception type for every user-facing problem: it names the file and the fix."""

from __future__ import annotations

import os


class VcdError(Exception):
    """A problem the user can fix.

    ``str(err)`` is one line: ``<path>: <problem>. Fix: <fix>`` — the CLI prints it and exits 1,
    a daemon job records it as the failure reason.
    """

    def __init__(self, path: str | os.PathLike | None, problem: str, fix: str | None = None):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = f"{self.path}: {self.problem}" if self.path else self.problem
        if self.fix:
            text += f". Fix: {self.fix}"
        return text


class FormatError(VcdError):
    """A file on disk does not follow the VC3D format."""


class InputError(VcdError):
    """A command-line argument or parameter is unusable."""
