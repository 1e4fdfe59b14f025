"""app.json parsing: the fields minipaas uses, their defaults, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minipaas.build.appjson import (
    AddonSpec,
    AppJson,
    CronJob,
    EnvVar,
    Formation,
    initial_config,
    parse_app_json,
)
from minipaas.errors import UserError


def test_empty_object_gives_defaults() -> None:
    assert parse_app_json("{}") == AppJson()


def test_full_document() -> None:
    doc = {
        "name": "demo",
        "description": "ignored",
        "addons": ["heroku-postgresql"],
        "buildpacks": [{"url": "heroku/python"}, "https://example.com/bp.git#v2"],
        "scripts": {"postdeploy": "python seed.py", "pr-predestroy": {"command": "x", "size": "s"}},
        "env": {
            "SECRET_KEY": {"description": "Django key", "generator": "secret"},
            "GREETING": {"value": "hi", "required": False},
            "SHORT": "form",
        },
        "formation": {"web": {"quantity": 2, "size": "standard-1x"}, "worker": {}},
        "healthchecks": {"web": [{"type": "startup", "path": "/health", "attempts": 3}]},
        "cron": [{"command": "python tick.py", "schedule": " */5 * * * * "}],
    }
    app = parse_app_json(json.dumps(doc))
    assert app.buildpacks == ["heroku/python", "https://example.com/bp.git#v2"]
    assert app.script("postdeploy") == "python seed.py"
    assert app.script("pr-predestroy") == "x"
    assert app.script("missing") is None
    assert app.env == {
        "SECRET_KEY": EnvVar(None, "Django key", required=True, generator="secret"),
        "GREETING": EnvVar(value="hi", required=False),
        "SHORT": EnvVar(value="form"),
    }
    assert app.formation == {"web": Formation(2, "standard-1x"), "worker": Formation(1)}
    assert app.healthchecks == {"web": [{"type": "startup", "path": "/health", "attempts": 3}]}
    assert app.cron == [CronJob("python tick.py", "*/5 * * * *")]
    assert app.addons == [AddonSpec("heroku-postgresql")]


def test_addons_as_strings_or_objects() -> None:
    doc = {"addons": [" heroku-postgresql:essential-0 ", {"plan": "papertrail", "as": "LOGS"},
                      {"plan": "postgres", "as": None, "options": {"version": "15"}}]}
    assert parse_app_json(json.dumps(doc)).addons == [
        AddonSpec("heroku-postgresql:essential-0"),
        AddonSpec("papertrail", "LOGS"),
        AddonSpec("postgres"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "app.json is not valid JSON: Expecting value at line 1, column 1."),
        ('{"a": 1,}', "app.json is not valid JSON: Expecting property name enclosed"),
        ("[]", "app.json must hold a JSON object, not a list."),
        ('"x"', 'app.json must hold a JSON object, not "x".'),
        (
            '{"buildpacks": "heroku/python"}',
            'app.json buildpacks must be a list, not "heroku/python".',
        ),
        (
            '{"buildpacks": [{"uri": "x"}]}',
            "app.json buildpacks[0] must be a URL string or an object",
        ),
        ('{"buildpacks": ["ok", 3]}', "app.json buildpacks[1] must be a URL string or an object"),
        ('{"buildpacks": [""]}', "app.json buildpacks[0] must be a URL string"),
        ('{"scripts": []}', "app.json scripts must be an object, not a list."),
        (
            '{"scripts": {"postdeploy": 1}}',
            "app.json scripts.postdeploy must be a non-empty string, not 1.",
        ),
        (
            '{"scripts": {"postdeploy": {"size": "x"}}}',
            "app.json scripts.postdeploy.command must be",
        ),
        ('{"env": []}', "app.json env must be an object, not a list."),
        ('{"env": {"1BAD": "x"}}', "app.json env: Invalid config key '1BAD'"),
        ('{"env": {"A": 1}}', "app.json env.A must be an object, not 1."),
        ('{"env": {"A": {"value": 1}}}', "app.json env.A.value must be a string, not 1."),
        ('{"env": {"A": {"description": []}}}', "app.json env.A.description must be a string"),
        (
            '{"env": {"A": {"required": "yes"}}}',
            'app.json env.A.required must be true or false, not "yes".',
        ),
        ('{"env": {"A": {"generator": 5}}}', "app.json env.A.generator must be a string, not 5."),
        ('{"formation": []}', "app.json formation must be an object, not a list."),
        ('{"formation": {"we b": {}}}', "app.json formation: Invalid process type 'we b'"),
        ('{"formation": {"web": 2}}', "app.json formation.web must be an object, not 2."),
        (
            '{"formation": {"web": {"quantity": "two"}}}',
            'app.json formation.web.quantity must be a whole number from 0 to 100, not "two".',
        ),
        (
            '{"formation": {"web": {"quantity": -1}}}',
            "app.json formation.web.quantity must be a whole number from 0 to 100, not -1.",
        ),
        (
            '{"formation": {"web": {"quantity": 1.5}}}',
            "app.json formation.web.quantity must be a whole number",
        ),
        (
            '{"formation": {"web": {"quantity": true}}}',
            "app.json formation.web.quantity must be a whole number from 0 to 100, not true.",
        ),
        (
            '{"formation": {"web": {"size": 1}}}',
            "app.json formation.web.size must be a string, not 1.",
        ),
        ('{"healthchecks": []}', "app.json healthchecks must be an object, not a list."),
        (
            '{"healthchecks": {"web": {}}}',
            "app.json healthchecks.web must be a list, not an object.",
        ),
        (
            '{"healthchecks": {"web": ["x"]}}',
            'app.json healthchecks.web[0] must be an object, not "x".',
        ),
        ('{"healthchecks": {"w/b": []}}', "app.json healthchecks: Invalid process type 'w/b'"),
        ('{"cron": {}}', "app.json cron must be a list, not an object."),
        ('{"cron": ["x"]}', 'app.json cron[0] must be an object, not "x".'),
        (
            '{"cron": [{"schedule": "@daily"}]}',
            "app.json cron[0].command must be a non-empty string, not null.",
        ),
        (
            '{"cron": [{"command": "x", "schedule": " "}]}',
            'app.json cron[0].schedule must be a non-empty string, not " ".',
        ),
        ('{"addons": "heroku-postgresql"}', 'app.json addons must be a list, not "heroku-postg'),
        ('{"addons": [7]}', 'app.json addons[0] must be a plan string or an object with a "plan"'),
        ('{"addons": [""]}', 'app.json addons[0] must be a non-empty string, not "".'),
        ('{"addons": [{"as": "DB"}]}', "app.json addons[0].plan must be a non-empty string, not"),
    ],
)
def test_rejects(text: str, message: str) -> None:
    with pytest.raises(UserError) as info:
        parse_app_json(text)
    assert str(info.value).startswith(message), str(info.value)


# -- what `env` gives a new app ------------------------------------------------------------------


def _initial(doc: dict[str, object], config: dict[str, str] | None = None) -> dict[str, str]:
    env = parse_app_json(json.dumps({"env": doc})).env
    return initial_config(env, config or {}, lambda: "s3cr3t")


def test_initial_config_values_secrets_and_what_is_set_already() -> None:
    doc = {
        "GREETING": "hello",
        "LEVEL": {"value": "info", "description": "log level"},
        "SECRET_KEY": {"generator": "secret"},
        "OPTIONAL": {"description": "only if you want", "required": False},
        "DATABASE_URL": {"description": "set by you"},
    }
    added = _initial(doc, {"DATABASE_URL": "postgres://x", "LEVEL": "debug"})
    # What is set already wins (config:set before the first push); optional ones stay unset.
    assert added == {"GREETING": "hello", "SECRET_KEY": "s3cr3t"}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"DATABASE_URL": {"description": "yours"}},
            "app.json requires the config var DATABASE_URL, which is not set: run "
            "`minipaas config:set DATABASE_URL=...`",
        ),
        (
            {"A": {}, "B": {"required": True}, "C": {"required": False}},
            "app.json requires the config vars A, B, which are not set",
        ),
    ],
)
def test_initial_config_refuses_required_vars_without_a_value(
    doc: dict[str, object], message: str
) -> None:
    with pytest.raises(UserError) as caught:
        _initial(doc)
    assert str(caught.value).startswith(message)


def test_initial_config_needs_nothing_once_the_vars_are_set() -> None:
    assert _initial({"DATABASE_URL": {}}, {"DATABASE_URL": "postgres://x"}) == {}


def test_cron_maintenance_suspends_a_job(tmp_path: Path) -> None:
    """Dokku's `"maintenance": true` suspends a cron task; minipaas ignored the key and ran it."""
    from minipaas.deploy import release_settings

    doc = {
        "cron": [
            {"command": "python off.py", "schedule": "@daily", "maintenance": True},
            {"command": "python on.py", "schedule": "@hourly", "maintenance": False},
        ]
    }
    assert parse_app_json(json.dumps(doc)).cron == [
        CronJob("python off.py", "@daily", maintenance=True),
        CronJob("python on.py", "@hourly"),
    ]
    (tmp_path / "app.json").write_text(json.dumps(doc))
    on = {"command": "python on.py", "schedule": "@hourly"}
    assert release_settings(tmp_path)["cron"] == [on]
    bad = '{"cron": [{"command": "x", "schedule": "@daily", "maintenance": "yes"}]}'
    with pytest.raises(UserError, match=r'cron\[0\].maintenance must be true or false, not "yes"'):
        parse_app_json(bad)
