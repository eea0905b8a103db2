"""Argument helpers shared by the ``vcd`` subcommands that take VC3D's two command-line forms."""

from __future__ import annotations

import sys
from typing import Iterable

from ..errors import InputError


def named_or_positional(args, pairs: Iterable[tuple[str, str]], usage: str, recorded: dict | None = None,
                        optional: Iterable[str] = ()) -> None:
    """Fill ``args.<dest>`` for each ``(dest, flag)`` of ``pairs`` from the named option
    ``args.opt_<dest>``, else the positional ``args.<dest>``, else ``recorded[dest]`` (what a resumed
    run recorded). Both forms given and different is an InputError; a value still missing (and
    ``dest`` not in ``optional``) is an InputError naming ``flag`` with ``usage`` as the fix."""
    recorded = recorded or {}
    for dest, flag in pairs:
        named, pos = getattr(args, f"opt_{dest}"), getattr(args, dest)
        if named is not None and pos is not None and named != pos:
            raise InputError(None, f"{flag} {named!r} and the positional {pos!r} disagree", "give only one of them")
        value = named if named is not None else pos if pos is not None else recorded.get(dest)
        if value is None and dest not in optional:
            raise InputError(None, f"missing {flag}", usage)
        setattr(args, dest, value)


def checked_tool_params(params: dict, tool_cls, source, keep: Iterable[str] = ()) -> dict:
    """A params file's dict checked once by ``tool_cls.from_dict`` (types; unknown keys: one warning
    each on stderr naming ``source`` and the closest key), returned without its unknown keys (so the
    job layer does not warn again). Keys in ``keep`` (a job's own keys) pass unchecked."""
    keep = set(keep)
    tool_cls.from_dict({k: v for k, v in params.items() if k not in keep}, source=str(source),
                       warn=lambda m: print(f"warning: {m}", file=sys.stderr))
    known = tool_cls.known_keys() | keep
    return {k: v for k, v in params.items() if k in known}
