"""``vcd`` — one entry point; every ``vcd/cli/cmd_*.py`` module adds subcommands.

A ``cmd_*`` module defines ``register(subparsers)`` which adds parsers and sets
``func=callable(args) -> int``. Argument orders mirror the VC3D tools. A :class:`VcdError`
becomes ``error: <message>`` on stderr and exit code 1, Ctrl-C exits 130 with one line and a closed
pipe (``vcd ... | head``) is silent — never a traceback (:func:`guarded`, also used by ``vcdctl``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sqlite3
import sys

from ..errors import VcdError, is_interrupt


def build_parser() -> argparse.ArgumentParser:
    """The ``vcd`` argument parser, every ``cmd_*`` module's subcommands registered."""
    parser = argparse.ArgumentParser(prog="vcd", description="Volume Cartographer daemon and tools")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import vcd.cli as pkg
    for mod in sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name.startswith("cmd_")):
        importlib.import_module(f"vcd.cli.{mod}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``vcd``'s entry point: parse ``argv`` and run the subcommand; returns the exit code."""
    return guarded(lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)
    return dispatch(build_parser(), argv)


def dispatch(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse ``argv`` and run the chosen subcommand's ``func(args) -> int``; without a subcommand,
    print the help and return 2. The body of ``vcd`` and ``vcdctl`` (run it under :func:`guarded`)."""
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


def _silence_stdout() -> None:
    """After a closed pipe (``vcd ... | head``): point stdout at /dev/null so the interpreter's final
    flush cannot print ``BrokenPipeError`` either."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError):
        pass


def sqlite_line(exc) -> str:
    """One line for an SQLite error that reached the CLI (the file is named by the store's own errors;
    here only what the error says and the fix)."""
    text = str(exc)
    if "full" in text:
        return (f"the disk holding the volpkg's .vcd/vcd.sqlite is full ({text}). Fix: free disk space; "
                "nothing was written")
    if type(exc) is sqlite3.DatabaseError:
        from ..daemon.store import REPAIR_FIX
        return (f".vcd/vcd.sqlite: the daemon's database is damaged ({text}). "
                f"Fix: {REPAIR_FIX.format(volpkg='VOLPKG')}")
    return f".vcd/vcd.sqlite: {text}. Fix: retry; if it persists, check the disk and that one daemon runs"


def guarded(call) -> int:
    """Run a CLI body; every ending is an exit code and at most one line on stderr, never a traceback:
    a :class:`VcdError` or OS error -> ``error: ...``, 1; Ctrl-C -> ``interrupted``, 130; a closed
    stdout pipe -> silent, 141 (as a shell reports SIGPIPE)."""
    try:
        return call()
    except VcdError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except sqlite3.DatabaseError as exc:  # the daemon's .vcd/vcd.sqlite: damaged, or its disk full
        print(f"error: {sqlite_line(exc)}", file=sys.stderr)
        return 1
    except OSError as exc:  # disk full, file too large, permissions: one line, nothing half-written
        where = exc.filename or "output"
        print(f"error: {where}: {exc.strerror or exc}. Fix: free disk space or check permissions and quotas; "
              "nothing partial was left in place", file=sys.stderr)
        return 1
    except SystemError as exc:
        if is_interrupt(exc):
            print("interrupted", file=sys.stderr)
            return 130
        raise


if __name__ == "__main__":
    sys.exit(main())
