"""Procfile parsing: every accepted form and every bad input."""

from __future__ import annotations

import pytest

from minipaas.build.procfile import parse_procfile
from minipaas.errors import UserError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("\n\n# only a comment\n", {}),
        ("web: python app.py\n", {"web": "python app.py"}),
        ("web:python app.py", {"web": "python app.py"}),
        ("  web :   python app.py   \r\n", {"web": "python app.py"}),
        (
            "web: gunicorn app:app --bind 0.0.0.0:$PORT\nrelease: python migrate.py\n",
            {"web": "gunicorn app:app --bind 0.0.0.0:$PORT", "release": "python migrate.py"},
        ),
        ("\ufeffweb: node server.js", {"web": "node server.js"}),
        (
            "# comment\n\nworker_2: run --x  # not a comment\n",
            {"worker_2": "run --x  # not a comment"},
        ),
        ("Web-1: a\nweb-1: b\n", {"Web-1": "a", "web-1": "b"}),
    ],
)
def test_parses(text: str, expected: dict[str, str]) -> None:
    assert parse_procfile(text) == expected


def test_keeps_file_order() -> None:
    assert list(parse_procfile("worker: w\nweb: x\nclock: c\n")) == ["worker", "web", "clock"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("web: ok\nxyz\n", "Procfile line 2 is not 'type: command': 'xyz'."),
        ("\n\n: python app.py", "Procfile line 3 is not 'type: command': ': python app.py'."),
        ("web python app.py", "Procfile line 1 is not 'type: command': 'web python app.py'."),
        (
            "we b: python app.py",
            "Procfile line 1: Invalid process type 'we b': use up to 30 letters, digits, "
            "dashes and underscores.",
        ),
        ("web.1: x", "Procfile line 1: Invalid process type 'web.1'"),
        ("w" * 31 + ": x", "Procfile line 1: Invalid process type"),
        ("web:", "Procfile line 1 gives the process type 'web' no command."),
        ("web:    \n", "Procfile line 1 gives the process type 'web' no command."),
        (
            "web: a\n# c\nweb: b\n",
            "Procfile line 3 repeats the process type 'web' (first defined on line 1).",
        ),
    ],
)
def test_rejects(text: str, message: str) -> None:
    with pytest.raises(UserError) as info:
        parse_procfile(text)
    assert str(info.value).startswith(message)
