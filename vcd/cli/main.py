"""``vcd`` — one entry point; every ``vcd/cli/cmd_*.py`` module adds subcommands.

A ``cmd_*`` module defines ``register(subparsers)`` which adds parsers and sets
``func=callable(args) -> int``. Argument orders mirror the VC3D tools. A :class:`VcdError`
becomes ``error: <message>`` on stderr and exit code 1 — never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from ..errors import VcdError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vcd", description="Volume Cartographer daemon and tools")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import vcd.cli as pkg
    for mod in sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name.startswith("cmd_")):
        importlib.import_module(f"vcd.cli.{mod}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except VcdError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # disk full, file too large, permissions: one line, nothing half-written
        where = exc.filename or "output"
        print(f"error: {where}: {exc.strerror or exc}. Fix: free disk space or check permissions and quotas; "
              "nothing partial was left in place", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
