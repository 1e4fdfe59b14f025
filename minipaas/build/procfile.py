"""Procfile parsing: text in, `{process type: command}` out.

Pure: no file access, no process spawning. The Heroku format is one `type: command` per line;
blank lines and `#` comments are ignored. Every error is a `UserError` naming the line and the
offending text, so a push can show it as is.
"""

from __future__ import annotations

import re

from minipaas.errors import UserError
from minipaas.names import is_utf8, process_type, shown

# Only what editors end lines with: `str.splitlines` also splits at form feeds, U+0085 and
# U+2028, which would break a command in two and name the wrong line number.
_LINE_END = re.compile(r"\r\n|\r|\n")


def parse_procfile(text: str) -> dict[str, str]:
    """Return the process types of a Procfile, in file order."""
    types: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, raw in enumerate(_LINE_END.split(text.removeprefix("\ufeff")), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, command = line.partition(":")
        name, command = name.strip(), command.strip()
        if not colon or not name:
            raise UserError(f"Procfile line {number} is not 'type: command': {shown(line)}.")
        try:
            process_type(name)
        except UserError as exc:
            raise UserError(f"Procfile line {number}: {exc}") from None
        if not command:
            raise UserError(f"Procfile line {number} gives the process type {name!r} no command.")
        _check_command(command, name, number)
        if name in types:
            raise UserError(
                f"Procfile line {number} repeats the process type {name!r} "
                f"(first defined on line {first_line[name]})."
            )
        types[name] = command
        first_line[name] = number
    return types


def _check_command(command: str, name: str, number: int) -> None:
    # A dyno runs the command as an argument of `/bin/sh -c`: an argument cannot hold a NUL, nor
    # text that is not UTF-8 (a lone surrogate), and the spawn would fail at every start.
    if "\0" in command:
        problem = "a NUL character"
    elif not is_utf8(command):
        problem = "text that is not UTF-8"
    else:
        return
    raise UserError(
        f"Procfile line {number} gives the process type {name!r} a command with {problem}: "
        f"{shown(command)}."
    )
