"""Bad input to the Procfile and app.json parsers (and to what a release keeps from app.json:
the health check and the cron schedules): each input is either parsed as written or refused
with a `UserError` whose message is one short sentence naming the bad line or field. Never
another exception, never a message that echoes a megabyte back.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from minipaas.build.appjson import AppJson, CronJob, Formation, parse_app_json
from minipaas.build.procfile import parse_procfile
from minipaas.build.runner import read_app_file
from minipaas.deploy import release_settings
from minipaas.errors import UserError

MB = 1_000_000


def refused(parse: Callable[[str], Any], text: str) -> str:
    """The message `parse` refuses `text` with: a UserError, one line, of readable length."""
    with pytest.raises(UserError) as info:
        parse(text)
    message = str(info.value)
    assert "\n" not in message, message
    assert len(message) < 400, message[:400]
    assert message.endswith("."), message
    return message


# --- Procfile -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("\n\n\n", {}),
        ("   \t  \n", {}),
        ("# web: not this\n  # nor this\n", {}),
        ("\ufeffweb: x", {"web": "x"}),
        ("web: x\r\nworker: y\r\n", {"web": "x", "worker": "y"}),
        ("web: x\rworker: y\r", {"web": "x", "worker": "y"}),
        ("\tweb:\tpython\tapp.py\t", {"web": "python\tapp.py"}),
        ("web:python app.py", {"web": "python app.py"}),
        ("web::x", {"web": ":x"}),
        ("web: a: b: c", {"web": "a: b: c"}),
        ("web: python app.py # stays", {"web": "python app.py # stays"}),
        ("web: échec ✓ 日本", {"web": "échec ✓ 日本"}),
        ("web: $(id) `id`; echo '\"", {"web": "$(id) `id`; echo '\""}),
        ("web: a\x1b[31mb", {"web": "a\x1b[31mb"}),
        # Only \n, \r\n and \r end a line: these are part of the command, and line 2 is line 2.
        ("web: a\u2028b\nworker: c", {"web": "a\u2028b", "worker": "c"}),
        ("web: a\x0cb\x0bc\nworker: d", {"web": "a\x0cb\x0bc", "worker": "d"}),
        ("web: a\x85b", {"web": "a\x85b"}),
        ("w" * 30 + ": x", {"w" * 30: "x"}),
        ("Web_1-x: a", {"Web_1-x": "a"}),
    ],
    ids=lambda value: repr(value)[:30],
)
def test_procfile_parses(text: str, expected: dict[str, str]) -> None:
    assert parse_procfile(text) == expected


def test_procfile_long_lines_and_many_types() -> None:
    assert parse_procfile("web: " + "x" * MB) == {"web": "x" * MB}
    text = "".join(f"t{i}: run {i}\n" for i in range(10_000))
    types = parse_procfile(text)
    assert len(types) == 10_000
    assert list(types)[:3] == ["t0", "t1", "t2"] and types["t9999"] == "run 9999"
    message = refused(parse_procfile, text + "t0: again\n")
    assert message == (
        "Procfile line 10001 repeats the process type 't0' (first defined on line 1)."
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\x00", "Procfile line 1 is not 'type: command': '\\x00'."),
        ("web", "Procfile line 1 is not 'type: command': 'web'."),
        ("\n\n: x", "Procfile line 3 is not 'type: command': ': x'."),
        ("web\n: x", "Procfile line 1 is not 'type: command': 'web'."),
        ("x" * MB, "Procfile line 1 is not 'type: command': 'xxxxxxxxxx"),
        ("web:", "Procfile line 1 gives the process type 'web' no command."),
        ("web:\r\n", "Procfile line 1 gives the process type 'web' no command."),
        ("web:  \t ", "Procfile line 1 gives the process type 'web' no command."),
        ("web: a\x00b", "Procfile line 1 gives the process type 'web' a command with a NUL"),
        ("web: a\udcffb", "Procfile line 1 gives the process type 'web' a command with text that"),
        ("web: a\nweb: b", "Procfile line 2 repeats the process type 'web' (first defined on line"),
        ("web: a\r\n\r\nweb: b", "Procfile line 3 repeats the process type 'web'"),
        ("web: a\u2028\nweb: b", "Procfile line 2 repeats the process type 'web'"),
        ("web.1: x", "Procfile line 1: Invalid process type 'web.1'"),
        ("we b: x", "Procfile line 1: Invalid process type 'we b'"),
        ("wéb: x", "Procfile line 1: Invalid process type 'wéb'"),
        ("web\x00: x", "Procfile line 1: Invalid process type 'web\\x00'"),
        ("$(id): x", "Procfile line 1: Invalid process type '$(id)'"),
        ("w" * 31 + ": x", "Procfile line 1: Invalid process type 'wwwwwwwwww"),
        ("w" * MB + ": x", "Procfile line 1: Invalid process type 'wwwwwwwwww"),
        ("\ufeff\ufeffweb: x", "Procfile line 1: Invalid process type '\\ufeffweb'"),
    ],
    ids=lambda value: repr(value)[:30],
)
def test_procfile_refuses(text: str, expected: str) -> None:
    assert refused(parse_procfile, text).startswith(expected)


def test_procfile_random_bytes_never_crash() -> None:
    """Whatever bytes a Procfile holds (as text, or as text that is not UTF-8), the answer is
    process types or one sentence."""
    rng = random.Random(20240611)
    alphabet = b"web:worker# \t\r\n\x00\x0b\x0c\x1b\xc3\xa9\xe2\x80\xa8\xff\xfe\xef\xbb\xbf-_."
    for _ in range(2_000):
        data = bytes(rng.choice(alphabet) for _ in range(rng.randrange(40)))
        for text in (data.decode("utf-8", "surrogateescape"), data.decode("latin-1")):
            try:
                types = parse_procfile(text)
            except UserError as exc:
                assert str(exc).startswith("Procfile line ") and "\n" not in str(exc), str(exc)
            else:
                assert all("\0" not in command for command in types.values())


# --- app.json -----------------------------------------------------------------------------------


def test_app_json_accepts_what_minipaas_can_use() -> None:
    text = json.dumps(
        {
            "name": "x" * MB,  # ignored fields may hold anything
            "environments": [
                [
                    [
                        [
                            [
                                [
                                    [
                                        [
                                            [
                                                [
                                                    [
                                                        [
                                                            [
                                                                [
                                                                    [
                                                                        [
                                                                            [
                                                                                [
                                                                                    [
                                                                                        [
                                                                                            [
                                                                                                [
                                                                                                    [
                                                                                                        [
                                                                                                            [
                                                                                                                [
                                                                                                                    [
                                                                                                                        [
                                                                                                                            [
                                                                                                                                [
                                                                                                                                    [
                                                                                                                                        [
                                                                                                                                            [
                                                                                                                                                [
                                                                                                                                                    [
                                                                                                                                                        [
                                                                                                                                                            [
                                                                                                                                                                [
                                                                                                                                                                    [
                                                                                                                                                                        [
                                                                                                                                                                            [
                                                                                                                                                                                "deep"
                                                                                                                                                                            ]
                                                                                                                                                                        ]
                                                                                                                                                                    ]
                                                                                                                                                                ]
                                                                                                                                                            ]
                                                                                                                                                        ]
                                                                                                                                                    ]
                                                                                                                                                ]
                                                                                                                                            ]
                                                                                                                                        ]
                                                                                                                                    ]
                                                                                                                                ]
                                                                                                                            ]
                                                                                                                        ]
                                                                                                                    ]
                                                                                                                ]
                                                                                                            ]
                                                                                                        ]
                                                                                                    ]
                                                                                                ]
                                                                                            ]
                                                                                        ]
                                                                                    ]
                                                                                ]
                                                                            ]
                                                                        ]
                                                                    ]
                                                                ]
                                                            ]
                                                        ]
                                                    ]
                                                ]
                                            ]
                                        ]
                                    ]
                                ]
                            ]
                        ]
                    ]
                ]
            ],
            "description": "\ud800 \x00",
            "buildpacks": ["https://example.com/" + "b" * MB],
            "formation": {"web": {"quantity": 100}, "w" * 30: {"quantity": 0}},
            "cron": [{"command": "échec ✓", "schedule": "*/5 * * * *"}],
        }
    )
    app = parse_app_json("\ufeff" + text)
    assert app.buildpacks == ["https://example.com/" + "b" * MB]
    assert app.formation == {"web": Formation(100), "w" * 30: Formation(0)}
    assert app.cron == [CronJob("échec ✓", "*/5 * * * *")]
    assert parse_app_json('{"a": 1, "a": 2, "formation": {}}') == AppJson()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "app.json is not valid JSON: Expecting value at line 1, column 1."),
        ("   \n ", "app.json is not valid JSON: Expecting value at line 2, column 2."),
        ("{", "app.json is not valid JSON: Expecting property name enclosed in double quotes"),
        ("}", "app.json is not valid JSON: Expecting value"),
        ("{'a': 1}", "app.json is not valid JSON: Expecting property name"),
        ("{a: 1}", "app.json is not valid JSON: Expecting property name"),
        ('{"a": 1,}', "app.json is not valid JSON: Expecting property name enclosed"),
        ("{}{}", "app.json is not valid JSON: Extra data at line 1, column 3."),
        ("// comment\n{}", "app.json is not valid JSON: Expecting value at line 1, column 1."),
        ("\x00", "app.json is not valid JSON: Expecting value"),
        ('{"a": "\x00"}', "app.json is not valid JSON: Invalid control character"),
        ("\ufeff\ufeff{}", "app.json is not valid JSON: Unexpected UTF-8 BOM"),
        ("\udcff\udcfe", "app.json is not valid JSON: Expecting value"),
        ("[]", "app.json must hold a JSON object, not a list."),
        ("null", "app.json must hold a JSON object, not null."),
        ("true", "app.json must hold a JSON object, not true."),
        ("1.5", "app.json must hold a JSON object, not 1.5."),
        ("1e999", "app.json must hold a JSON object, not Infinity."),
        ("NaN", "app.json must hold a JSON object, not NaN."),
        ('"' + "x" * MB + '"', 'app.json must hold a JSON object, not "xxxxxxxxxx'),
        ("9" * 5000, "app.json has a number of 5000 digits (99999999999999999999…); use at most"),
        ("-" + "9" * 101, "app.json has a number of 101 digits (-9999999999999999999…)"),
        ('{"x": ' + "1" * 4301 + "}", "app.json has a number of 4301 digits"),
        ("[" * 100_000, "app.json is nested too deeply: use at most 32 levels."),
        ('{"a":' * 100_000, "app.json is nested too deeply: use at most 32 levels."),
        ('{"cron": ' + "[" * 40 + "]" * 40 + "}", "app.json is nested too deeply"),
        ('{"scripts": {"a": ' * 40 + "1" + "}" * 80, "app.json is nested too deeply"),
    ],
    ids=lambda value: repr(value)[:30],
)
def test_app_json_refuses_what_is_not_an_object(text: str, expected: str) -> None:
    assert refused(parse_app_json, text).startswith(expected)


# Where a value sits, and which JSON kinds it may be there.
SLOTS: list[tuple[str, str, set[str]]] = [
    ("buildpacks", "{}", {"list"}),
    ("buildpacks[0]", '{"buildpacks": [{}]}', {"string"}),
    ("scripts", "{}", {"object"}),
    ("scripts.postdeploy", '{"scripts": {"postdeploy": {}}}', {"string", "object"}),
    ("scripts.postdeploy.command", '{"scripts": {"postdeploy": {"command": {}}}}', {"string"}),
    ("env", "{}", {"object"}),
    ("env.A", '{"env": {"A": {}}}', {"string", "object"}),
    ("env.A.value", '{"env": {"A": {"value": {}}}}', {"string", "null"}),
    ("env.A.description", '{"env": {"A": {"description": {}}}}', {"string", "null"}),
    ("env.A.required", '{"env": {"A": {"required": {}}}}', {"bool"}),
    ("env.A.generator", '{"env": {"A": {"generator": {}}}}', {"string", "null"}),
    ("formation", "{}", {"object"}),
    ("formation.web", '{"formation": {"web": {}}}', {"object"}),
    ("formation.web.quantity", '{"formation": {"web": {"quantity": {}}}}', {"int"}),
    ("formation.web.size", '{"formation": {"web": {"size": {}}}}', {"string", "null"}),
    ("healthchecks", "{}", {"object"}),
    ("healthchecks.web", '{"healthchecks": {"web": {}}}', {"list"}),
    ("healthchecks.web[0]", '{"healthchecks": {"web": [{}]}}', {"object"}),
    ("cron", "{}", {"list"}),
    ("cron[0]", '{"cron": [{}]}', {"object"}),
    ("cron[0].command", '{"cron": [{"command": {}, "schedule": "* * * * *"}]}', {"string"}),
    ("cron[0].schedule", '{"cron": [{"command": "x", "schedule": {}}]}', {"string"}),
    ("addons", "{}", {"list"}),
    ("addons[0]", '{"addons": [{}]}', {"string", "object"}),
    ("addons[0].plan", '{"addons": [{"plan": {}}]}', {"string"}),
    ("addons[0].as", '{"addons": [{"plan": "x", "as": {}}]}', {"string", "null"}),
]
KINDS = {
    "object": {},
    "list": [],
    "string": "x",
    "null": None,
    "bool": False,
    "int": 3,
    "float": 1.5,
    "huge": 10**99,
    "infinity": float("inf"),
}


def _place(template: str, where: str, value: Any) -> str:
    """The app.json of `template` with `value` at `where` (the `{}` the template leaves)."""
    if template == "{}":
        return json.dumps({where: value})
    head, _, tail = template.rpartition("{}")
    return head + json.dumps(value) + tail


@pytest.mark.parametrize(
    ("where", "template", "allowed", "kind"),
    [(w, t, a, k) for w, t, a in SLOTS for k in KINDS],
    ids=lambda value: str(value)[:30] if not isinstance(value, set) else "",
)
def test_app_json_wrong_kind_anywhere_names_the_field(
    where: str, template: str, allowed: set[str], kind: str
) -> None:
    text = _place(template, where, KINDS[kind])
    try:
        parse_app_json(text)
    except UserError:
        message = refused(parse_app_json, text)
        # A kind allowed here may still lack what it must hold (`{}` for a cron job).
        inside = kind in allowed and message.startswith(f"app.json {where}.")
        assert inside or message.startswith(f"app.json {where} must be "), message
    else:
        assert kind in allowed, text


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"buildpacks": [""]}, "app.json buildpacks[0] must be a URL string or an object with"),
        ({"buildpacks": [" \t"]}, "app.json buildpacks[0] must be a URL string"),
        ({"buildpacks": [{"url": ""}]}, "app.json buildpacks[0] must be a URL string"),
        ({"buildpacks": ["\x00"]}, 'app.json buildpacks[0] has a NUL character: "\\u0000".'),
        ({"buildpacks": [{"url": "a\ud800"}]}, "app.json buildpacks[0].url has an unpaired"),
        ({"scripts": {"postdeploy": ""}}, "app.json scripts.postdeploy must be a non-empty string"),
        ({"scripts": {"postdeploy": " " * MB}}, 'string, not "          '),
        ({"scripts": {"postdeploy": "a\x00"}}, "app.json scripts.postdeploy has a NUL character"),
        (
            {"scripts": {"x\x00": "a"}},
            'app.json scripts has a key with a NUL character: "x\\u0000"',
        ),
        ({"env": {"": "x"}}, "app.json env: Invalid config key ''"),
        ({"env": {"1A": "x"}}, "app.json env: Invalid config key '1A'"),
        ({"env": {"A B": "x"}}, "app.json env: Invalid config key 'A B'"),
        ({"env": {"É": "x"}}, "app.json env: Invalid config key 'É'"),
        ({"env": {"A" * MB + "-": "x"}}, "app.json env: Invalid config key 'AAAAAAAAAA"),
        ({"env": {"A": "\x00"}}, 'app.json env.A has a NUL character: "\\u0000".'),
        ({"env": {"A": {"value": "\ud800"}}}, "app.json env.A.value has an unpaired UTF-16"),
        ({"env": {"\udcff": "x"}}, "app.json env has a key with an unpaired UTF-16 surrogate"),
        ({"formation": {"": {}}}, "app.json formation: Invalid process type ''"),
        ({"formation": {"web.1": {}}}, "app.json formation: Invalid process type 'web.1'"),
        ({"formation": {"w" * MB: {}}}, "app.json formation: Invalid process type 'wwwwwwwwww"),
        (
            {"formation": {"web": {"quantity": -1}}},
            "quantity must be a whole number from 0 to 100, not -1.",
        ),
        (
            {"formation": {"web": {"quantity": -(10**99)}}},
            "must be a whole number from 0 to 100, not -1000",
        ),
        (
            {"formation": {"web": {"quantity": True}}},
            "must be a whole number from 0 to 100, not true.",
        ),
        (
            {"formation": {"web": {"quantity": "1"}}},
            'must be a whole number from 0 to 100, not "1".',
        ),
        (
            {"formation": {"web": {"quantity": 101}}},
            "must be a whole number from 0 to 100, not 101.",
        ),
        (
            {"formation": {"web": {"quantity": 10**99}}},
            "must be a whole number from 0 to 100, not 1000",
        ),
        ({"healthchecks": {"w b": []}}, "app.json healthchecks: Invalid process type 'w b'"),
        ({"healthchecks": {"web": [{"path": "/\x00"}]}}, "healthchecks.web[0].path has a NUL"),
        ({"healthchecks": {"web": [{"content": "\ud800"}]}}, "web[0].content has an unpaired"),
        ({"cron": [{"command": "x"}]}, "app.json cron[0].schedule must be a non-empty string, not"),
        ({"cron": [{"command": " ", "schedule": "@daily"}]}, "cron[0].command must be a non-empty"),
        ({"cron": [{"command": "a\x00b", "schedule": "@daily"}]}, "cron[0].command has a NUL"),
        ({"cron": [{"command": "x", "schedule": "\ud800"}]}, "cron[0].schedule has an unpaired"),
        ({"cron": [{}] * 5 + [1]}, "app.json cron[0].command must be"),
        ({"cron": [{"command": "x", "schedule": "* * * * *"}] * 5 + [1]}, "cron[5] must be an"),
    ],
    ids=lambda value: repr(value)[:30],
)
def test_app_json_bad_values_name_the_field(doc: dict[str, Any], expected: str) -> None:
    text = json.dumps(doc)
    assert expected in refused(parse_app_json, text)


# --- what a release keeps: the health check and the cron schedules (deploy.release_settings) ---


def settings(tmp_path: Path, text: str) -> dict[str, Any]:
    (tmp_path / "app.json").write_text(text)
    return release_settings(tmp_path)


def _cron(schedule: str) -> dict[str, Any]:
    return {"cron": [{"command": "x", "schedule": schedule}]}


def _size(size: str) -> dict[str, Any]:
    return {"formation": {"web": {"size": size}}}


def _check(**entry: Any) -> dict[str, Any]:
    return {"healthchecks": {"web": [entry]}}


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({}, {"check": None, "cron": [], "formation": {}, "sizes": {}, "postdeploy": None}),
        ({"scripts": {"postdeploy": {"command": "python seed.py"}}}, "python seed.py"),
        (
            {"formation": {"web": {"quantity": 2}, "worker": {}, "clock": {"quantity": 0}}},
            {"web": 2, "worker": 1, "clock": 0},
        ),
        (
            {"formation": {"web": {"size": "Standard-2X"}, "worker": {"size": "2048M"}}},
            {"sizes": {"web": "standard-2x", "worker": "2G"}},
        ),
        (
            {"healthchecks": {"web": [{"path": "/up", "content": "ok", "timeout": 30}]}},
            {"path": "/up", "expect": "ok", "min_uptime": 0.0, "timeout": 30.0},
        ),
        ({"healthchecks": {"web": [{"type": "liveness", "path": "/x"}]}}, None),
        ({"healthchecks": {"worker": [{"path": "x"}]}}, None),
        (
            {"cron": [{"command": "tick", "schedule": "0 3 * jan-dec mon-fri"}]},
            [{"command": "tick", "schedule": "0 3 * jan-dec mon-fri"}],
        ),
        # February 29th exists in leap years; with a weekday too, either may match.
        (_cron("0 0 29 2 *"), [{"command": "x", "schedule": "0 0 29 2 *"}]),
        (_cron("0 0 30 2 mon"), [{"command": "x", "schedule": "0 0 30 2 mon"}]),
    ],
    ids=lambda value: repr(value)[:30],
)
def test_release_settings_accept(tmp_path: Path, doc: dict[str, Any], expected: Any) -> None:
    got = settings(tmp_path, json.dumps(doc))
    if "cron" in doc:
        assert got["cron"] == expected
    elif "formation" in doc and "sizes" in expected:
        assert got["sizes"] == expected["sizes"]
    elif "formation" in doc:
        assert got["formation"] == expected
    elif "scripts" in doc:
        assert got["postdeploy"] == expected
    elif doc:
        assert got["check"] == expected
    else:
        assert got == expected


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (_size("huge"), "app.json formation.web.size: Unknown dyno size 'huge': use one of eco"),
        (_size("0M"), "app.json formation.web.size: The dyno size '0M' is too small"),
        (_size("1000000G"), "(1000000G) is more than this server's memory"),
        (_cron("@reboot"), "Invalid cron schedule '@reboot': use five fields"),
        (_cron("* * * *"), "Invalid cron schedule '* * * *': use five fields"),
        (_cron("60 * * * *"), "the minute field '60' is not valid"),
        (_cron("0 0 30 2 *"), "The cron schedule '0 0 30 2 *' never runs: none of its months"),
        (_cron("0 0 31 4,6,9,11 *"), "never runs: none of its months has day 31"),
        (_cron("² * * * *"), "the minute field '²' is not valid"),
        (_cron("٣ * * * *"), "the minute field '٣' is not valid"),
        (_cron("*/² * * * *"), "the minute field '*/²' is not valid"),
        (_cron("*/0 * * * *"), "the minute field '*/0' is not valid"),
        (_cron("9" * 5000 + " * * * *"), "the minute field '9999999999"),
        (_cron("*/" + "9" * 4000 + " * * * *"), "the minute field '*/99999999"),
        (_cron("1-" + "9" * 20 + " * * * *"), "the minute field '1-99999999"),
        (_cron("5-1 * * * *"), "the minute field '5-1' is not valid"),
        (_cron("* * * * 8"), "the day of week field '8' is not valid"),
        (_cron("* * * foo *"), "the month field 'foo' is not valid"),
        (_cron("* " * 4 + "x" * MB), "Invalid cron schedule '* * * * xxxxxx"),
        (_check(path="health"), "Invalid health check path 'health'"),
        (_check(path="/a b"), "Invalid health check path '/a b'"),
        (_check(path="/" + "x" * 600), "Invalid health check path '/xxxxxxx"),
        (_check(path=5), "Invalid health check path '5'"),
        (_check(content="ok"), "A health check `expect` needs a `path` to GET."),
        (_check(timeout="soon"), "Invalid health check timeout 'soon'"),
        (_check(timeout=0.5), "Invalid health check timeout 0.5: use at least 1 s."),
        (_check(timeout=10**99), "Invalid health check timeout 1000000000"),
        (_check(timeout=1e308), "Invalid health check timeout 1e+308"),
        (_check(uptime=-1), "Invalid health check min_uptime -1"),
        (_check(uptime=[1]), "Invalid health check min_uptime [1]"),
        ({"healthchecks": {"web": [{"path": "/"}, 1]}}, "healthchecks.web[1] must be an object"),
    ],
    ids=lambda value: repr(value)[:30],
)
def test_release_settings_refuse(tmp_path: Path, doc: dict[str, Any], expected: str) -> None:
    text = json.dumps(doc)
    assert expected in refused(lambda t: settings(tmp_path, t), text)


def test_release_settings_numbers_past_what_python_reads(tmp_path: Path) -> None:
    """Huge numbers in a check's timeout or uptime are refused before they reach float()."""
    text = '{"healthchecks": {"web": [{"timeout": ' + "9" * 400 + "}]}}"
    assert "400 digits" in refused(lambda t: settings(tmp_path, t), text)


# --- the files as a push delivers them: bytes, BOM, size ----------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("Procfile", b"web: ok\n\xff\xfe\n", "Procfile is not UTF-8 text."),
        ("Procfile", b"\xef\xbb\xbfweb: x\r\n", {"web": "x"}),
        ("Procfile", b"web: caf\xc3\xa9\n", {"web": "café"}),
        ("Procfile", b"web: " + b"x" * (1 << 20), "Procfile is larger than 1024 KiB."),
        ("Procfile", b"\x00\x01\x02\x03", "Procfile line 1 is not 'type: command'"),
        ("app.json", b'{"buildpacks": ["\xff"]}', "app.json is not UTF-8 text."),
        ("app.json", b'\xef\xbb\xbf{"buildpacks": ["x"]}', ["x"]),
        ("app.json", b"\x89PNG\r\n\x1a\n", "app.json is not UTF-8 text."),
        ("app.json", b"\x00" * 10, "app.json is not valid JSON"),
        ("app.json", b'{"a": "' + b"x" * (1 << 20) + b'"}', "app.json is larger than 1024 KiB."),
    ],
    ids=lambda value: repr(value)[:30],
)
def test_app_files_as_pushed(tmp_path: Path, name: str, data: bytes, expected: Any) -> None:
    (tmp_path / name).write_bytes(data)

    def parse(_: str) -> Any:
        text = read_app_file(tmp_path, name)
        assert text is not None
        return parse_procfile(text) if name == "Procfile" else parse_app_json(text).buildpacks

    if isinstance(expected, str):
        assert refused(parse, "").startswith(expected)
    else:
        assert parse("") == expected
