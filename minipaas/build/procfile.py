"""Procfile parsing: text in, `{process type: command}` out.

Pure: no file access, no process spawning. The Heroku format is one `type: command` per line;
blank lines and `#` comments are ignored. Every error is a `UserError` naming the line and the
offending text, so a push can show it as is.
"""

from __future__ import annotations

from minipaas.errors import UserError
from minipaas.names import process_type


def parse_procfile(text: str) -> dict[str, str]:
    """Return the process types of a Procfile, in file order."""
    types: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, command = line.partition(":")
        name, command = name.strip(), command.strip()
        if not colon or not name:
            raise UserError(f"Procfile line {number} is not 'type: command': {line!r}.")
        try:
            process_type(name)
        except UserError as exc:
            raise UserError(f"Procfile line {number}: {exc}") from None
        if not command:
            raise UserError(f"Procfile line {number} gives the process type {name!r} no command.")
        if name in types:
            raise UserError(
                f"Procfile line {number} repeats the process type {name!r} "
                f"(first defined on line {first_line[name]})."
            )
        types[name] = command
        first_line[name] = number
    return types
