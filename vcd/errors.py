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


def is_interrupt(exc: BaseException | None) -> bool:
    """True when ``exc`` is, or was caused by, Ctrl-C. Numba turns a KeyboardInterrupt that Python raises
    while a kernel's dispatcher hands back its result into ``SystemError: ... returned a result with an
    exception set`` (the KeyboardInterrupt is its cause), so callers test this rather than the type."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
