"""app.json parsing: text in, an `AppJson` value out.

Pure: no file access. Understands the parts of Heroku's app.json that minipaas uses
(`buildpacks`, `scripts`, `env`, `formation`, `addons`) plus Dokku-style `healthchecks` and
`cron`, and ignores the rest (`name`, `description`, ...); `initial_config` is what `env` gives a
new app. Every error is a `UserError` naming the field, e.g.
`app.json formation.web.quantity must be a whole number from 0 to 100, not "two".`"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from minipaas import jsonin
from minipaas.errors import UserError
from minipaas.names import config_key, process_type

MAX_QUANTITY = 100
"""The most dynos of one process type app.json may ask for (`ps:scale` allows as many)."""
FIELDS = ("buildpacks", "scripts", "env", "formation", "healthchecks", "cron", "addons")
"""The top-level fields minipaas reads; the rest (`name`, `logo`, ...) is ignored unchecked."""


@dataclass(frozen=True)
class EnvVar:
    """One entry of app.json `env`: a config var the app expects."""

    value: str | None = None
    description: str | None = None
    required: bool = True  # Heroku's default
    generator: str | None = None  # "secret" on Heroku; kept for the caller to honour or not


@dataclass(frozen=True)
class Formation:
    """One entry of app.json `formation`: how many dynos of a process type to run."""

    quantity: int = 1
    size: str | None = None


@dataclass(frozen=True)
class CronJob:
    """One entry of app.json `cron`: run `command` on `schedule` (cron syntax, kept as given).
    `maintenance: true` suspends it (Dokku's key): it is kept but never run."""

    command: str
    schedule: str
    maintenance: bool = False


@dataclass(frozen=True)
class AddonSpec:
    """One entry of app.json `addons`: `heroku-postgresql[:PLAN]` as a string or as
    `{"plan": ..., "as": ...}`; `attach_as` is the name its config var is made from (Heroku's
    `as`: `DATABASE` gives `DATABASE_URL`), None for the add-on's own."""

    plan: str
    attach_as: str | None = None


@dataclass(frozen=True)
class AppJson:
    """The parts of app.json minipaas understands. An empty `{}` gives all defaults."""

    buildpacks: list[str] = field(default_factory=list)
    scripts: dict[str, Any] = field(default_factory=dict)
    env: dict[str, EnvVar] = field(default_factory=dict)
    formation: dict[str, Formation] = field(default_factory=dict)
    healthchecks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    cron: list[CronJob] = field(default_factory=list)
    addons: list[AddonSpec] = field(default_factory=list)

    def script(self, name: str) -> str | None:
        """The command of script `name` (`postdeploy`, ...), whether given as a string or as
        `{"command": ...}`; None when absent."""
        value = self.scripts.get(name)
        if isinstance(value, dict):
            value = value.get("command")
        return value if isinstance(value, str) else None


def initial_config(
    env: Mapping[str, EnvVar], config: Mapping[str, str], secret: Callable[[], str]
) -> dict[str, str]:
    """The config vars app.json's `env` adds to a new app whose `config` is as given: each var
    not set yet gets its `value`, or `secret()` for `"generator": "secret"`; a required var
    with neither raises `UserError` naming it (as a Heroku app setup does)."""
    added: dict[str, str] = {}
    missing: list[str] = []
    for key, var in env.items():
        if key in config:
            continue
        if var.value is not None:
            added[key] = var.value
        elif var.generator == "secret":
            added[key] = secret()
        elif var.required:
            missing.append(key)
    if missing:
        names = ", ".join(missing)
        raise UserError(
            f"app.json requires the config var{'s' if len(missing) > 1 else ''} {names}, "
            f"which {'are' if len(missing) > 1 else 'is'} not set: run `minipaas config:set "
            f"{missing[0]}=...` (the app's other vars likewise) and push again."
        )
    return added


def _error(where: str, expected: str, value: object) -> UserError:
    return UserError(f"app.json {where} must be {expected}, not {jsonin.kind(value)}.")


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _error(where, "an object", value)
    return value


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _error(where, "a list", value)
    return value


def _text(value: object, where: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _error(where, "a non-empty string", value)
    return value


def _name(check: Any, value: str, where: str) -> str:
    try:
        return str(check(value))
    except UserError as exc:
        raise UserError(f"app.json {where}: {exc}") from None


def _buildpacks(value: object) -> list[str]:
    urls = []
    for i, entry in enumerate(_list(value, "buildpacks")):
        url = entry.get("url") if isinstance(entry, dict) else entry
        if not isinstance(url, str) or not url.strip():
            raise _error(f"buildpacks[{i}]", 'a URL string or an object with a "url" string', entry)
        urls.append(url.strip())
    return urls


def _scripts(value: object) -> dict[str, Any]:
    scripts = _object(value, "scripts")
    for name, script in scripts.items():
        if isinstance(script, dict):
            _text(script.get("command"), f"scripts.{name}.command")
        else:
            _text(script, f"scripts.{name}")
    return dict(scripts)


def _env(value: object) -> dict[str, EnvVar]:
    env = {}
    for key, spec in _object(value, "env").items():
        _name(config_key, key, "env")
        where = f"env.{key}"
        if isinstance(spec, str):
            env[key] = EnvVar(value=spec)
            continue
        spec = _object(spec, where)
        default = spec.get("value")
        if default is not None and not isinstance(default, str):
            raise _error(f"{where}.value", "a string", default)
        description = spec.get("description")
        if description is not None and not isinstance(description, str):
            raise _error(f"{where}.description", "a string", description)
        required = spec.get("required", True)
        if not isinstance(required, bool):
            raise _error(f"{where}.required", "true or false", required)
        generator = spec.get("generator")
        if generator is not None and not isinstance(generator, str):
            raise _error(f"{where}.generator", "a string", generator)
        env[key] = EnvVar(default, description, required, generator)
    return env


def _formation(value: object) -> dict[str, Formation]:
    formation = {}
    for name, spec in _object(value, "formation").items():
        _name(process_type, name, "formation")
        spec = _object(spec, f"formation.{name}")
        quantity = spec.get("quantity", 1)
        if (
            isinstance(quantity, bool)
            or not isinstance(quantity, int)
            or not 0 <= quantity <= MAX_QUANTITY
        ):
            raise _error(
                f"formation.{name}.quantity", f"a whole number from 0 to {MAX_QUANTITY}", quantity
            )
        size = spec.get("size")
        if size is not None and not isinstance(size, str):
            raise _error(f"formation.{name}.size", "a string", size)
        formation[name] = Formation(quantity, size)
    return formation


def _healthchecks(value: object) -> dict[str, list[dict[str, Any]]]:
    checks = {}
    for name, entries in _object(value, "healthchecks").items():
        _name(process_type, name, "healthchecks")
        items = _list(entries, f"healthchecks.{name}")
        for i, item in enumerate(items):
            _object(item, f"healthchecks.{name}[{i}]")
        checks[name] = [dict(item) for item in items]
    return checks


def _cron(value: object) -> list[CronJob]:
    jobs = []
    for i, entry in enumerate(_list(value, "cron")):
        entry = _object(entry, f"cron[{i}]")
        command = _text(entry.get("command"), f"cron[{i}].command")
        schedule = _text(entry.get("schedule"), f"cron[{i}].schedule")
        assert command is not None and schedule is not None
        maintenance = entry.get("maintenance", False)
        if not isinstance(maintenance, bool):
            raise _error(f"cron[{i}].maintenance", "true or false", maintenance)
        jobs.append(CronJob(command, schedule.strip(), maintenance))
    return jobs


def _addons(value: object) -> list[AddonSpec]:
    addons = []
    for i, entry in enumerate(_list(value, "addons")):
        where = f"addons[{i}]"
        if isinstance(entry, str):
            plan = _text(entry, where)
            attach_as = None
        elif isinstance(entry, dict):
            plan = _text(entry.get("plan"), f"{where}.plan")
            attach_as = _text(entry.get("as"), f"{where}.as", optional=True)
        else:
            raise _error(where, 'a plan string or an object with a "plan" string', entry)
        assert plan is not None
        addons.append(AddonSpec(plan.strip(), attach_as.strip() if attach_as else None))
    return addons


def parse_app_json(text: str) -> AppJson:
    """Parse the text of an app.json file; raise `UserError` naming the bad field."""
    try:
        # A byte order mark is what some editors start UTF-8 files with; the Procfile allows it.
        data = jsonin.loads(text.removeprefix("\ufeff"), "app.json")
    except json.JSONDecodeError as exc:
        raise UserError(
            f"app.json is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from None
    if not isinstance(data, dict):
        raise UserError(f"app.json must hold a JSON object, not {jsonin.kind(data)}.")
    # Only the fields minipaas reads: a NUL in `description` harms nothing.
    unfit = jsonin.first_unfit({key: data[key] for key in FIELDS if key in data}, "app.json")
    if unfit is not None:
        what = f"a key with {unfit.problem}" if unfit.is_key else unfit.problem
        raise UserError(f"app.json {unfit.where} has {what}: {jsonin.kind(unfit.text)}.")
    return AppJson(
        buildpacks=_buildpacks(data.get("buildpacks", [])),
        scripts=_scripts(data.get("scripts", {})),
        env=_env(data.get("env", {})),
        formation=_formation(data.get("formation", {})),
        healthchecks=_healthchecks(data.get("healthchecks", {})),
        cron=_cron(data.get("cron", [])),
        addons=_addons(data.get("addons", [])),
    )
