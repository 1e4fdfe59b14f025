"""Starlette routes of the API: validation at the boundary, then the store or the deployer.

Every route answers JSON; `deploy` and followed `logs` stream NDJSON. `UserError`s become
4xx answers with `{"error": sentence}`; bad JSON is a 400, never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.types import ASGIApp
from starlette.websockets import WebSocket

from minipaas import __version__, checks, jsonin, names, sshkeys
from minipaas import addons as registry
from minipaas import app_errors as errors
from minipaas.api.auth import LOCAL_KEY, TokenAuth, Tokens
from minipaas.api.metrics import metrics_routes
from minipaas.api.remote_run import serve_attach
from minipaas.backups import Backups, backup_number, daily_time
from minipaas.build import buildpack
from minipaas.deploy import Deployer
from minipaas.drains import Drains, parse_drain_url, redacted
from minipaas.errors import Conflict, DiskFull, NotFound, TooLarge, Unavailable, UserError
from minipaas.logs import LogStore
from minipaas.metrics import Metrics
from minipaas.models import Addon, App, Drain
from minipaas.redis import POLICIES
from minipaas.router.certs import certificates
from minipaas.settings import Settings
from minipaas.store import Store
from minipaas.supervisor import Supervisor

log = logging.getLogger("minipaas.api")

LOG_SOURCES = frozenset({"app", "router", "build", "release", "minipaas"})
STARTING_WAIT = 10.0
BUSY_WAIT = 20.0
"""How long a change to an app waits for the one under way (a deploy, a rolling restart) before
the API answers 409: the client gives up after 60 s, and the change must not then be made
behind its back."""
"""How long an answer about dynos waits for a starting server to take back the running ones."""
BUSY_WAIT_ENV = "MINIPAAS_TEST_BUSY_WAIT"
"""Hidden test hook, inert unless set: seconds that replace BUSY_WAIT (read when the API is
made, at the server's start), so that tests of a refused change do not wait 20 s each. Not a
setting: no user should ever set it."""


def busy_wait() -> float:
    """BUSY_WAIT, or the test hook's seconds when BUSY_WAIT_ENV is set to a number from 0.1
    to BUSY_WAIT (anything else is ignored, with a warning in the log)."""
    text = os.environ.get(BUSY_WAIT_ENV, "").strip()
    if not text:
        return BUSY_WAIT
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0.1 <= seconds <= BUSY_WAIT:
        log.warning("%s=%r is not 0.1 to %g seconds: ignored", BUSY_WAIT_ENV, text, BUSY_WAIT)
        return BUSY_WAIT
    return seconds


@dataclass
class ApiContext:
    settings: Settings
    store: Store
    deployer: Deployer
    supervisor: Supervisor
    logs: LogStore
    tokens: Tokens
    admin_token: Callable[[], str]
    sync_keys: Callable[[], Any]
    git_app: ASGIApp | None = None
    metrics: Metrics | None = None
    shutdown: Callable[[], None] | None = None
    drains: Drains | None = None
    backups: Backups | None = None
    #: The streamed answers under way (deploys, `run`): a stopping server ends them first.
    streams: set[asyncio.Task[None]] = field(default_factory=set)


MAX_BODY = 1024 * 1024
"""The largest request body the API reads (config vars, keys, checks: all far smaller)."""
MAX_RELEASE = 2**31 - 1
FOLLOW_HEARTBEAT = 15.0
"""Seconds between the blank lines a quiet `logs` follow stream sends (`client.FOLLOW_READ`)."""
MAX_KEY_NAME = 100
DETACHED_TIMEOUT = 24 * 3600
"""Seconds a `run:detached` dyno may run (Heroku's one-off dynos stop after a day too)."""
MAX_DRAINS = 5
"""Drains one app may have (Heroku's limit too)."""
DYNO_SET = {"PORT": "the port it listens on", "DYNO": "its name, e.g. web.1", "HOME": "/app"}
"""What every dyno's environment holds whatever the config says (the dyno contract): a config
var of that name would never be seen, so setting one is refused."""
MAX_CONFIG_VAR = 128 * 1024
"""The most one config var (`KEY=VALUE` in UTF-8, with its NUL) may take: execve() refuses a
longer environment string (Linux's MAX_ARG_STRLEN), so every start of the app would fail."""
MAX_CONFIG_TOTAL = 1024 * 1024
"""The most all of an app's config vars may take together: a dyno's environment and arguments
share execve()'s limit (a quarter of the stack limit, 2 MiB by default)."""


async def json_body(request: Request) -> Any:
    raw = await _read_body(request)
    if not raw:
        return {}
    try:
        data = jsonin.loads(raw, "The request body")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"The request body is not valid JSON: {exc}.") from exc
    if (unfit := jsonin.first_unfit(data, "The request body", nul=False)) is not None:
        raise UserError(
            f"The request body has the string {unfit.text[:40]!r}, which holds {unfit.problem}."
        )
    return data


async def _read_body(request: Request) -> bytes:
    """The whole body, refused (413) once past MAX_BODY: it is held in memory to be parsed."""
    too_large = TooLarge(
        f"The request body is larger than {MAX_BODY // 1024} KiB, the most the API reads."
    )
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared[:12]) > MAX_BODY:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _env_size(key: str, value: str) -> int:
    """What `KEY=VALUE` takes in a process's environment: its UTF-8 bytes and a NUL."""
    return len(key.encode()) + len(value.encode()) + 2


def body_dict(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise UserError(f"The request body must be a JSON object, not {jsonin.kind(data)}.")
    return data


def text_field(data: dict[str, Any], key: str) -> str:
    """The string `data[key]` ("" when absent); `UserError` for null, a number, a list…: `str()`
    would turn `{"hostname": null}` into a domain named "none"."""
    value = data.get(key, "")
    if not isinstance(value, str):
        text = json.dumps(value)
        shown = text if len(text) <= names.SHOWN_CHARS else f"{text[: names.SHOWN_CHARS]}…"
        raise UserError(f"The field {key!r} must be a string, not {shown}.")
    return value


def key_name(name: str) -> str:
    """An SSH key's name as given to keys:add / keys:remove, checked."""
    if len(name) > MAX_KEY_NAME or not names.CONFIG_KEY.fullmatch(
        name.replace("-", "_").replace(".", "_").replace("@", "_")
    ):
        raise UserError(
            f"Invalid key name {names.shown(name)}: use up to {MAX_KEY_NAME} letters, digits, "
            "dots, dashes, @ and underscores."
        )
    return name


def release_version(value: Any) -> int:
    """A release number from `vN`, `N` or a JSON integer, else `UserError` naming the value."""
    if isinstance(value, str):
        return names.release_version(value)
    number = value if isinstance(value, int) and not isinstance(value, bool) else -1
    if not 0 <= number <= MAX_RELEASE:
        raise UserError(f"Invalid release {value!r}: use vN, e.g. v3.")
    return number


def buildpack_index(value: Any) -> int | None:
    """A 1-based buildpack index from JSON (an integer, or null/absent: none given) or from a
    path segment (digits), else `UserError` naming the value."""
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_RELEASE:
        return value
    text = value if isinstance(value, str) else json.dumps(value)
    raise UserError(f"Invalid buildpack index {names.shown(text)}: use 1 for the first one.")


def buildpacks_json(urls: list[str]) -> list[dict[str, Any]]:
    return [{"index": n, "url": url} for n, url in enumerate(urls, start=1)]


Emit = Callable[[dict[str, Any]], None]


def ndjson_task(
    work: Callable[[Emit], Awaitable[None]], background: set[asyncio.Task[None]]
) -> StreamingResponse:
    """Run `work` as a task of its own (it finishes even if the client leaves) and stream what
    it emits as NDJSON until it is done."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def run() -> None:
        try:
            await work(queue.put_nowait)
        finally:
            queue.put_nowait(None)

    task = asyncio.get_running_loop().create_task(run())
    background.add(task)
    task.add_done_callback(background.discard)

    async def stream() -> AsyncIterator[bytes]:
        while (item := await queue.get()) is not None:
            yield (json.dumps(item) + "\n").encode()

    return StreamingResponse(stream(), media_type="application/x-ndjson")


def is_local(request: Request) -> bool:
    return bool(request.scope.get(LOCAL_KEY))


def create_app(ctx: ApiContext) -> ASGIApp:
    store, deployer, settings = ctx.store, ctx.deployer, ctx.settings
    busy = busy_wait()  # BUSY_WAIT unless a test set its hook

    def app_name(request: Request) -> str:
        return names.app_name(request.path_params["app"])

    def who(request: Request, data: dict[str, Any] | None = None) -> str:
        if data and isinstance(data.get("who"), str) and is_local(request):
            return str(data["who"])[:100]
        return "admin"

    async def not_busy(name: str) -> None:
        """Wait up to BUSY_WAIT for the app's lock, else `Conflict`: before, `apps:destroy` or
        `config:set` during a long build timed out in the CLI ("failed: timed out") and was
        then carried out anyway once the build was done."""
        lock = deployer.lock(name)
        if not lock.locked():
            return

        async def free() -> None:
            async with lock:
                pass

        try:
            await asyncio.wait_for(free(), busy)
        except TimeoutError:
            raise Conflict(
                f"{name!r} is busy with a deploy or another change (for over {busy:g} s); "
                "nothing was changed: try again once it is done."
            ) from None

    async def started() -> bool:
        """True once start-up has taken back the dynos still running (waits a little for it):
        until then the supervisor knows none of them and `ps` would list an app as down."""
        if not deployer.ready.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(deployer.ready.wait(), STARTING_WAIT)
        return deployer.ready.is_set()

    def addon_json(addon: Addon) -> dict[str, Any]:
        # No secret here: the password is only in the config var.
        return {**addon.to_json(), "plan": "local"}

    async def dynos_json(app: App) -> list[dict[str, Any]]:
        await started()
        sizes = await store.sizes(app)
        return [
            {
                "name": d.name,
                "type": d.process_type,
                "state": d.state,
                "release": d.release,
                "pid": d.pid,
                "port": d.port,
                "started_at": d.started_at,
                "restarts": d.restarts,
                "command": d.command,
                "exit_code": d.exit_code,
                "reason": d.reason,  # why it is crashed or down
                "size": sizes.get(d.process_type),  # `ps:type`; None: no memory quota
                "memory": d.memory,  # the quota in bytes it runs with
                "last_error": d.last_error,  # why minipaas last killed it (R15)
            }
            for d in ctx.supervisor.status(app.name)
        ]

    async def status(request: Request) -> Response:
        if not await started():
            return JSONResponse(
                {"error": "minipaas is still starting: it is taking back the running dynos."},
                status_code=503,
            )
        return JSONResponse(
            {
                "ok": True,
                "version": __version__,
                "domain": settings.domain,
                "control_url": settings.control_url,
                "apps": len(await store.apps()),
            }
        )

    def _latest(app: str) -> dict[str, Any]:
        if ctx.metrics is None:
            return {}
        latest = ctx.metrics.latest(app)
        return {k: latest.get(k) for k in ("rps", "p95", "cpu", "rss")}

    async def apps_list(request: Request) -> Response:
        await started()
        out = []
        for app in await store.apps():
            formation = await store.formation(app)
            dynos = ctx.supervisor.status(app.name)
            out.append(
                {
                    "name": app.name,
                    "release": app.current_release,
                    "url": settings.app_url(app.name),
                    "maintenance": app.maintenance,
                    "dynos_up": sum(1 for d in dynos if d.state == "up"),
                    "dynos_desired": sum(formation.values()),
                    "start_pending": app.name in deployer.waiting,
                    **_latest(app.name),
                }
            )
        return JSONResponse(out)

    async def apps_create(request: Request) -> Response:
        data = body_dict(await json_body(request))
        name = names.new_app_name(text_field(data, "name"))
        async with deployer.lock(name):  # not while `apps:rename` gives this name to an app
            app = await store.create_app(name)
            try:
                await asyncio.to_thread(deployer.repos.create, name)
            except BaseException:
                # All or nothing (a full disk): an app without its repository could not be
                # pushed.
                with contextlib.suppress(Exception):
                    await store.delete_app(name)
                raise
        # Its hostname gets a route (and a certificate) now: until its first deploy it answers
        # 503 "no dynos" instead of failing the TLS handshake.
        await deployer.sync_routes()
        return JSONResponse(
            {"name": app.name, "url": settings.app_url(app.name), "git_url": git_url(name)},
            status_code=201,
        )

    def git_url(name: str) -> str:
        return f"{settings.control_url}/git/{name}.git"

    async def apps_info(request: Request) -> Response:
        app = await store.app(app_name(request))
        release = await store.current_release(app)
        return JSONResponse(
            {
                "name": app.name,
                "url": settings.app_url(app.name),
                "git_url": git_url(app.name),
                "release": app.current_release,
                "maintenance": app.maintenance,
                "created_at": app.created_at,
                "formation": await store.formation(app),
                "sizes": await store.sizes(app),  # `ps:type`; a type missing has no quota
                "process_types": release.process_types if release else {},
                "dynos": await dynos_json(app),
                "start_pending": app.name in deployer.waiting,
                "domains": [d.hostname for d in await store.domains(app)],
                "addons": [addon_json(a) for a in await store.addons(app)],
                "buildpacks": await store.buildpacks(app),  # empty: each build detects one
                "uid": deployer.uid(app),
            }
        )

    async def apps_destroy(request: Request) -> Response:
        name = app_name(request)
        confirm = request.query_params.get("confirm")
        if confirm != name:
            raise UserError(
                f"Destroying {name!r} deletes its code, releases, dynos and logs; confirm with "
                f"`--confirm {name}`."
            )
        await not_busy(name)
        removed = await deployer.destroy(name)
        await reload_drains()
        return JSONResponse({"destroyed": name, "backups_removed": removed})

    async def apps_rename(request: Request) -> Response:
        """`apps:rename NEW -a OLD` (Heroku's PATCH /apps/OLD {"name": NEW})."""
        name = app_name(request)
        data = body_dict(await json_body(request))
        new = names.new_app_name(text_field(data, "name"))
        if new == name:
            raise UserError(f"The app is already named {name!r}; give it another name.")
        await store.app(name)  # NotFound before waiting for its lock
        await not_busy(name)
        app = await deployer.rename(name, new, who=who(request, data))
        await reload_drains()  # they follow the app's lines under its new name
        return JSONResponse(
            {
                "renamed": name,
                "name": app.name,
                "url": settings.app_url(app.name),
                "git_url": git_url(app.name),
            }
        )

    async def config_get(request: Request) -> Response:
        app = await store.app(app_name(request))
        return JSONResponse(await store.config(app))

    async def config_patch(request: Request) -> Response:
        name = app_name(request)
        data = body_dict(await json_body(request))
        changes: dict[str, str | None] = {}
        for key, value in data.items():
            names.config_key(key)
            if value is not None and not isinstance(value, str):
                raise UserError(f"The value of {key!r} must be a string or null, not {value!r}.")
            if value is not None and key in DYNO_SET:
                raise UserError(
                    f"{key} is set by minipaas in every dyno ({DYNO_SET[key]}); "
                    "it cannot be a config var."
                )
            if value is not None and "\0" in value:
                # execve() cannot pass it: every later start of the app's dynos would fail.
                raise UserError(
                    f"The value of {key!r} holds a NUL character, which no config var can."
                )
            if value is not None and (size := _env_size(key, value)) > MAX_CONFIG_VAR:
                raise UserError(
                    f"The config var {key!r} takes {size // 1024} KiB; one can take at most "
                    f"{MAX_CONFIG_VAR // 1024} KiB (a process's environment holds no longer one)."
                )
            changes[key] = value
        if not changes:
            raise UserError("No config vars given; use KEY=VALUE.")
        app = await store.app(name)
        for addon in await store.addons(app):
            # Its password is nowhere else: a changed or unset URL would lose the database.
            if addon.config_var in changes:
                raise Conflict(
                    f"{addon.config_var} belongs to the {addon.service} add-on of {name!r} "
                    f"({addon.name}) and cannot be set or unset; destroy the add-on with "
                    f"`minipaas addons:destroy {addon.service} -a {name} --confirm {name}`."
                )
        merged = {**await store.config(app), **changes}
        total = sum(_env_size(k, v) for k, v in merged.items() if v is not None)
        if total > MAX_CONFIG_TOTAL:
            raise UserError(
                f"With these changes the config vars of {name!r} would take {total // 1024} KiB; "
                f"they can take at most {MAX_CONFIG_TOTAL // 1024} KiB together."
            )
        await not_busy(name)
        config = await deployer.set_config(name, changes, who=who(request))
        return JSONResponse(config)

    async def dynos(request: Request) -> Response:
        app = await store.app(app_name(request))
        return JSONResponse(
            {
                "formation": await store.formation(app),
                # `ps:type`: a size per process type; a type missing here has no memory quota.
                "sizes": await store.sizes(app),
                "dynos": await dynos_json(app),
                # After a server (re)start: its missing dynos are still to be started.
                "start_pending": app.name in deployer.waiting,
                # `ps:stop TYPE`: none run, whatever the formation says, until `ps:start TYPE`.
                "stopped": sorted(await store.stopped_types(app)),
                # Running `run` and cron job dynos, as Heroku's ps lists its one-off processes.
                "one_offs": [
                    {
                        "name": o.name,
                        "type": o.name.partition(".")[0],
                        "command": o.command,
                        "release": o.release,
                        "pid": o.pid,
                        "started_at": o.started_at,
                    }
                    for o in ctx.supervisor.one_offs(app.name)
                ],
            }
        )

    async def formation_patch(request: Request) -> Response:
        name = app_name(request)
        data = body_dict(await json_body(request))
        counts: dict[str, int] = {}
        for ptype, count in data.items():
            names.process_type(ptype)
            if not isinstance(count, int) or isinstance(count, bool):
                raise UserError(f"The count for {ptype!r} must be a whole number, not {count!r}.")
            counts[ptype] = count
        if not counts:
            raise UserError("No process types given; use TYPE=COUNT, e.g. web=2.")
        await not_busy(name)
        return JSONResponse(await deployer.scale(name, counts))

    async def sizes_patch(request: Request) -> Response:
        """`ps:type web=standard-2x worker=1G` ({type: size, or null for no quota})."""
        name = app_name(request)
        data = body_dict(await json_body(request))
        changes: dict[str, str | None] = {}
        for ptype, size in data.items():
            names.process_type(ptype)
            if size is not None and not isinstance(size, str):
                text = json.dumps(size)
                shown = text if len(text) <= names.SHOWN_CHARS else f"{text[: names.SHOWN_CHARS]}…"
                raise UserError(
                    f"The size for {ptype!r} must be a string such as standard-2x or 512M "
                    f"(or null: no quota), not {shown}."
                )
            changes[ptype] = None if size is None or size.strip().lower() == "none" else size
        if not changes:
            raise UserError("No process types given; use TYPE=SIZE, e.g. web=standard-2x.")
        await not_busy(name)
        return JSONResponse(await deployer.resize(name, changes))

    async def restart(request: Request) -> Response:
        name = app_name(request)
        data = body_dict(await json_body(request))
        ptype, number = (
            (None, None)
            if data.get("type") is None
            else names.process_type_or_dyno(text_field(data, "type"))
        )
        await not_busy(name)
        await deployer.restart(name, ptype, number)
        return JSONResponse({"restarted": name, "type": ptype, "number": number})

    async def logs(request: Request) -> Response:
        app = await store.app(app_name(request))
        query = request.query_params
        source = query.get("source") or None
        if source is not None and source not in LOG_SOURCES:
            raise UserError(
                f"Unknown log source {source!r}; use one of {', '.join(sorted(LOG_SOURCES))}."
            )
        dyno = query.get("dyno") or None
        try:
            n = int(query.get("n", "100"))
        except ValueError as exc:
            raise UserError(f"Invalid line count {query.get('n')!r}: use a number.") from exc
        if not 0 <= n <= 100_000:
            raise UserError(f"Invalid line count {n}: use 0 to 100000.")
        follow = query.get("tail") in ("1", "true")
        if follow and ctx.logs.follows_ended:
            raise Unavailable("minipaas is restarting: follow the log again in a moment.")
        lines = ctx.logs.tail(app.name, n=n, source=source, dyno=dyno)
        if not follow:
            return JSONResponse([{"line": ln.format()} for ln in lines])

        async def stream() -> AsyncIterator[bytes]:
            for ln in lines:
                yield (json.dumps({"line": ln.format()}) + "\n").encode()
            async for batch in ctx.logs.follow_batches(
                app.name, source, dyno, idle=FOLLOW_HEARTBEAT
            ):
                # A blank line while nothing is logged: clients (the CLI, the TUI) read with a
                # time limit and so notice a connection that died without a word.
                if batch is None:
                    yield b"\n"
                else:
                    yield "".join(
                        json.dumps({"line": new.format()}) + "\n" for new in batch
                    ).encode()
            # Why the follow ended: the server stops (follow again soon) or the app is gone.
            end = "restarting" if ctx.logs.follows_ended else "destroyed"
            yield (json.dumps({"end": end}) + "\n").encode()

        return StreamingResponse(stream(), media_type="application/x-ndjson")

    async def releases(request: Request) -> Response:
        app = await store.app(app_name(request))
        return JSONResponse(
            [
                {**r.to_json(), "current": r.version == app.current_release}
                for r in await store.releases(app)
            ]
        )

    async def app_errors(request: Request) -> Response:
        app = await store.app(app_name(request))
        hours = errors.parse_hours(request.query_params.get("hours"))
        now = datetime.now(UTC)
        answer = await asyncio.to_thread(errors.app_errors, ctx.logs, app.name, hours, now)
        return JSONResponse(answer)

    async def release_info(request: Request) -> Response:
        app = await store.app(app_name(request))
        release = await store.release(app, release_version(request.path_params["version"]))
        return JSONResponse(
            {**release.to_json(), "current": release.version == app.current_release}
        )

    async def release_output(request: Request) -> Response:
        """`releases:output [vN]`: a release's release phase output (default: of the newest
        release that had a release phase)."""
        app = await store.app(app_name(request))
        given = request.query_params.get("version")
        version = release_version(given) if given is not None else None
        found = await store.release_output(app, version)
        if found is None:
            why = "only a deploy whose Procfile has a `release:` process type runs one"
            if version is None:
                raise NotFound(f"No release of {app.name!r} ran a release phase ({why}).")
            raise NotFound(f"v{version} of {app.name!r} ran no release phase ({why}).")
        release = await store.release(app, found.version)
        return JSONResponse({**found.to_json(), "status": release.status})

    def commit_field(data: dict[str, Any], key: str) -> str:
        sha = text_field(data, key)
        if len(sha) != 40 or any(c not in "0123456789abcdef" for c in sha):
            raise UserError(f"Invalid commit {sha!r}: use a full 40-character sha.")
        return sha

    async def deploy(request: Request) -> Response:
        name = app_name(request)
        data = body_dict(await json_body(request))
        sha = commit_field(data, "sha")
        # A push's branch and the commit it pointed at: the deploy moves it once live.
        ref = text_field(data, "ref") if data.get("ref") is not None else None
        if ref is not None and ref not in ("refs/heads/main", "refs/heads/master"):
            raise UserError(
                f"Invalid ref {names.shown(ref)}: use refs/heads/main or refs/heads/master."
            )
        old = commit_field(data, "old") if ref is not None and data.get("old") is not None else None
        await store.app(name)
        by = who(request, data)

        async def run(emit: Emit) -> None:
            try:
                result = await deployer.deploy(
                    name, sha, lambda ln: emit({"line": ln}), who=by, ref=ref, old=old
                )
                emit({"status": "ok", "release": result.release, "url": result.url})
            except UserError as exc:
                emit({"status": "failed", "message": str(exc)})
            except Exception as exc:  # a bug: say so in the push instead of hanging it
                emit({"status": "failed", "message": f"Internal error: {exc!r}"})
                log.exception("deploy of %s %s failed", name, sha[:7])

        # The deploy runs to completion even if the pusher goes away.
        return ndjson_task(run, background)

    async def rollback(request: Request) -> Response:
        name = app_name(request)
        data = body_dict(await json_body(request))
        raw = data.get("version")
        version = None if raw is None else release_version(raw)
        await not_busy(name)
        release = await deployer.rollback(name, version, who=who(request, data))
        return JSONResponse({"release": release.version, "description": release.description})

    async def ps_stop_start(request: Request) -> Response:
        name = app_name(request)
        action = request.path_params["action"]
        if action not in ("stop", "start"):
            raise NotFound(f"No such API route: {request.url.path}.")
        data = body_dict(await json_body(request))
        raw = text_field(data, "type")
        if action == "stop" and "." in raw:
            # `ps:stop run.1` / `cron.2`: a one-off dyno (a hung job), as on Heroku.
            ptype, number = names.process_type_or_dyno(raw)
            await store.app(name)
            await ctx.supervisor.stop_one_off(name, f"{ptype}.{number}")
            return JSONResponse({"type": raw, "stopped": True})
        ptype = names.process_type(raw)
        stopped = action == "stop"
        await not_busy(name)
        await deployer.set_stopped(name, ptype, stopped)
        return JSONResponse({"type": ptype, "stopped": stopped})

    async def checks_get(request: Request) -> Response:
        app = await store.app(app_name(request))
        release = await store.current_release(app)
        configured = await store.check(app)
        from_app_json = release.app_json.get("check") if release else None
        return JSONResponse(
            {
                "check": configured or from_app_json,
                "source": "checks:set" if configured else ("app.json" if from_app_json else None),
            }
        )

    async def checks_put(request: Request) -> Response:
        app = await store.app(app_name(request))
        check = checks.validate(body_dict(await json_body(request)))
        await store.set_check(app, check)
        return JSONResponse({"check": check})

    async def checks_delete(request: Request) -> Response:
        app = await store.app(app_name(request))
        await store.set_check(app, None)
        return JSONResponse({"check": None})

    async def run(request: Request) -> Response:
        name = app_name(request)
        data = body_dict(await json_body(request))
        command = names.one_off_command(data.get("command"))
        detached = jsonin.flag(data, "detached")
        bare = jsonin.flag(data, "bare")  # without the slug: pg:psql, redis:cli
        await deployer.one_off_spec(name, command, bare=bare)  # no app or no release: 4xx now
        if detached:
            return JSONResponse(
                {"dyno": await start_detached(name, command, bare), "command": command},
                status_code=202,
            )

        async def go(emit: Emit) -> None:
            try:
                code = await deployer.run(
                    name, command, lambda ln: emit({"line": ln}), bare=bare
                )
                emit({"exit": code})
            except UserError as exc:
                emit({"error": str(exc), "exit": 1})

        return ndjson_task(go, background)

    async def run_attach(websocket: WebSocket) -> None:
        """`minipaas run` over MINIPAAS_URL with the caller's stdin and terminal (remote_run)."""
        async def check(app: str, command: str, bare: bool) -> object:
            return await deployer.one_off_spec(app, command, bare=bare)

        await serve_attach(websocket, deployer.run_attached, check, background)

    async def start_detached(app: str, command: str, bare: bool = False) -> str:
        """Start a one-off dyno whose output only goes to the app's logs (`run:detached`);
        its name once it runs. It may run DETACHED_TIMEOUT seconds (`ps:stop run.N` ends it)."""
        started: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_start(dyno: str) -> None:
            started.set_result(dyno)

        async def go() -> None:
            try:
                await deployer.run(
                    app,
                    command,
                    lambda _line: None,
                    timeout=DETACHED_TIMEOUT,
                    on_start=on_start,
                    bare=bare,
                )
            except asyncio.CancelledError:
                started.cancel()
                raise
            except BaseException as exc:
                if not started.done():  # not started: the request answers with the reason
                    started.set_exception(exc)
                if not isinstance(exc, UserError):  # (UserError: also the time limit's kill)
                    raise

        task = asyncio.get_running_loop().create_task(go())
        background.add(task)
        task.add_done_callback(background.discard)
        return await started

    async def domains_list(request: Request) -> Response:
        app = await store.app(app_name(request))
        return JSONResponse([d.to_json() for d in await store.domains(app)])

    async def domains_add(request: Request) -> Response:
        app = await store.app(app_name(request))
        data = body_dict(await json_body(request))
        host = names.custom_domain(text_field(data, "hostname"))
        if host == f"minipaas.{settings.domain}" or host.endswith(f".{settings.domain}"):
            raise UserError(
                f"The domain {host!r} is under minipaas's own domain {settings.domain!r}; "
                "apps already answer at NAME." + settings.domain + "."
            )
        domain = await store.add_domain(app, host)
        await deployer.sync_routes()
        return JSONResponse(domain.to_json(), status_code=201)

    async def domains_remove(request: Request) -> Response:
        app = await store.app(app_name(request))
        host = names.hostname(request.path_params["hostname"])
        await store.remove_domain(app, host)
        await deployer.sync_routes()
        return JSONResponse({"removed": host})

    async def certs_list(request: Request) -> Response:
        """`certs`: one row per hostname of the app (its own, then `domains:add` ones)."""
        app = await store.app(app_name(request))
        hosts = [settings.app_host(app.name), *(d.hostname for d in await store.domains(app))]
        router = deployer.router
        rows = await asyncio.to_thread(
            certificates, settings.domain, hosts, router.storage_dir, router.process_log,
            datetime.now(UTC),
        )
        return JSONResponse([row.to_json() for row in rows])

    async def buildpacks_list(request: Request) -> Response:
        app = await store.app(app_name(request))
        return JSONResponse(buildpacks_json(await store.buildpacks(app)))

    async def buildpacks_add(request: Request) -> Response:
        """`buildpacks:add URL [-i N]`: {"url", "index"}. Like every change of the list, no
        release: the next build uses it (as on Heroku)."""
        app = await store.app(app_name(request))
        data = body_dict(await json_body(request))
        url = buildpack.check_url(text_field(data, "url"))
        index = buildpack_index(data.get("index"))
        urls = await store.change_buildpacks(
            app, lambda urls: buildpack.added(urls, url, index, app.name)
        )
        return JSONResponse(buildpacks_json(urls))

    async def buildpacks_set_at(request: Request) -> Response:
        """`buildpacks:set URL [-i N]`: {"url"} in place of buildpack N (or one past the last)."""
        app = await store.app(app_name(request))
        index = buildpack_index(request.path_params["index"])
        data = body_dict(await json_body(request))
        url = buildpack.check_url(text_field(data, "url"))
        urls = await store.change_buildpacks(
            app, lambda urls: buildpack.set_at(urls, url, index, app.name)
        )
        return JSONResponse(buildpacks_json(urls))

    async def buildpacks_replace(request: Request) -> Response:
        """The whole list: {"buildpacks": [URL, …]} (`buildpacks:clear` sends [])."""
        app = await store.app(app_name(request))
        data = body_dict(await json_body(request))
        given = data.get("buildpacks")
        if not isinstance(given, list) or not all(isinstance(u, str) for u in given):
            text = json.dumps(given)
            shown = text if len(text) <= names.SHOWN_CHARS else f"{text[: names.SHOWN_CHARS]}…"
            raise UserError(f"The field 'buildpacks' must be a list of URL strings, not {shown}.")
        urls = await store.change_buildpacks(
            app, lambda urls: buildpack.replaced(urls, given, app.name)
        )
        return JSONResponse(buildpacks_json(urls))

    async def buildpacks_remove(request: Request) -> Response:
        """`buildpacks:remove URL` or `-i N`: {"url"} or {"index"}."""
        app = await store.app(app_name(request))
        data = body_dict(await json_body(request))
        url = text_field(data, "url") if data.get("url") is not None else None
        index = buildpack_index(data.get("index"))
        urls = await store.change_buildpacks(
            app, lambda urls: buildpack.removed(urls, url, index, app.name)
        )
        return JSONResponse(buildpacks_json(urls))

    async def reload_drains() -> None:
        if ctx.drains is not None:
            await ctx.drains.reload()

    def drain_json(drain: Drain) -> dict[str, Any]:
        """A drain as the API shows it: the URL's password never leaves the server (the
        forwarder needs it; nobody reading a list does), as `***`."""
        status = ctx.drains.status(drain.token) if ctx.drains is not None else None
        return {
            **drain.to_json(),
            "url": redacted(drain.url),
            "status": status.to_json() if status is not None else None,
        }

    async def drains_list(request: Request) -> Response:
        app = await store.app(app_name(request))
        return JSONResponse([drain_json(d) for d in await store.drains(app)])

    async def drains_add(request: Request) -> Response:
        app = await store.app(app_name(request))
        data = body_dict(await json_body(request))
        url = parse_drain_url(text_field(data, "url"))
        token = f"d.{uuid.uuid4()}"
        drain = await store.add_drain(app, url.url, token, MAX_DRAINS, names.shown(url.shown()))
        await reload_drains()
        return JSONResponse(drain_json(drain), status_code=201)

    async def drains_remove(request: Request) -> Response:
        app = await store.app(app_name(request))
        data = body_dict(await json_body(request))
        key = text_field(data, "drain")
        if not key:
            raise UserError("No drain given; name it by its URL or its token (d.…).")
        drain = await store.remove_drain(app, key, names.shown(redacted(key)))
        await reload_drains()
        return JSONResponse({"removed": drain.token, "url": redacted(drain.url)})

    async def addons_all(request: Request) -> Response:
        return JSONResponse([addon_json(a) for a in await store.addons()])

    async def addons_list(request: Request) -> Response:
        app = await store.app(app_name(request))
        return JSONResponse([addon_json(a) for a in await store.addons(app)])

    async def addons_create(request: Request) -> Response:
        name = app_name(request)
        await store.app(name)
        data = body_dict(await json_body(request))
        kind, plan = registry.service(text_field(data, "service"))
        await not_busy(name)
        addon = await deployer.create_addon(name, who=who(request, data), service=kind.name)
        return JSONResponse({**addon_json(addon), "plan_ignored": plan}, status_code=201)

    async def addons_destroy(request: Request) -> Response:
        name = app_name(request)
        await store.app(name)
        given = request.path_params["service"]
        try:
            service = registry.service(given)[0].name
        except UserError:  # or the add-on's own name (Heroku takes either)
            named = [a for a in await store.addons(await store.app(name)) if a.name == given]
            if not named:
                raise
            service = named[0].service
        if request.query_params.get("confirm") != name:
            raise UserError(
                f"Destroying {service} of {name!r} deletes its "
                f"{registry.by_name(service).data} and all its data; "
                f"confirm with `--confirm {name}`."
            )
        await not_busy(name)
        addon, removed = await deployer.destroy_addon(name, who=who(request), service=service)
        return JSONResponse({"destroyed": addon_json(addon), "backups_removed": removed})

    async def addons_info(request: Request) -> Response:
        name = app_name(request)
        kind, _plan = registry.service(request.path_params["service"])
        if kind is registry.REDIS:
            addon, redis = await deployer.redis_info(name)
            return JSONResponse({**addon_json(addon), **redis.to_json()})
        addon, info = await deployer.addon_info(name)
        return JSONResponse({**addon_json(addon), **info.to_json(), "name": addon.name})

    async def addons_maxmemory(request: Request) -> Response:
        """`redis:maxmemory`: {"policy": "allkeys-lru"} sets the eviction policy of the app's
        Redis."""
        name = app_name(request)
        if registry.service(request.path_params["service"])[0] is not registry.REDIS:
            raise UserError("Only a heroku-redis add-on has a maxmemory policy.")
        data = body_dict(await json_body(request))
        addon, policy = await deployer.redis_maxmemory(
            name, text_field(data, "policy"), who=who(request, data)
        )
        return JSONResponse({**addon_json(addon), "maxmemory_policy": policy,
                             "description": POLICIES[policy]})

    # -- pg:backups and pg:reset ------------------------------------------------------------

    def backups() -> Backups:
        if ctx.backups is None:
            raise UserError("This server runs without the PostgreSQL add-on.")
        return ctx.backups

    def backup_ref(request: Request) -> str | None:
        """The backup named in the path (checked): None for `latest`, the newest completed."""
        ref = str(request.path_params["backup"])
        if ref == "latest":
            return None
        backup_number(ref)
        return ref

    async def confirmed(request: Request, name: str, what: str) -> None:
        await store.app(name)  # an unknown app is named as such, whatever the confirmation
        if request.query_params.get("confirm") != name:
            raise UserError(f"{what}; confirm with `--confirm {name}`.")

    async def backups_list(request: Request) -> Response:
        found = await backups().of_app(app_name(request))
        return JSONResponse([b.to_json() for b in found])

    async def backups_capture(request: Request) -> Response:
        backup = await backups().capture(app_name(request))
        return JSONResponse(backup.to_json(), status_code=201)

    async def backups_download(request: Request) -> Response:
        backup, chunks = await backups().download(app_name(request), backup_ref(request))
        return StreamingResponse(
            chunks,
            media_type="application/octet-stream",
            headers={
                "Content-Length": str(backup.size),
                "Content-Disposition": f'attachment; filename="{backup.id}.dump"',
                "X-Minipaas-Backup": backup.id,
            },
        )

    async def backups_restore(request: Request) -> Response:
        name = app_name(request)
        ref = backup_ref(request)  # a bad id is named before the confirmation is asked for
        await confirmed(
            request, name,
            f"Restoring a backup into the database of {name!r} overwrites its data",
        )
        backup, addon = await backups().restore(name, ref)
        return JSONResponse({"restored": backup.to_json(), "database": addon.name})

    async def backups_upload(request: Request) -> Response:
        """pg:backups:restore --file: the body is the dump (streamed to disk, any size)."""
        name = app_name(request)
        await confirmed(
            request, name,
            f"Restoring a dump into the database of {name!r} overwrites its data",
        )

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in request.stream():
                    yield chunk
            except ClientDisconnect:
                raise UserError(
                    "The upload broke off before the whole dump arrived; nothing was restored."
                ) from None

        addon = await backups().restore_upload(name, body())
        return JSONResponse({"restored": "upload", "database": addon.name})

    async def backups_delete(request: Request) -> Response:
        name = app_name(request)
        ref = str(request.path_params["backup"])
        backup_number(ref)
        await confirmed(request, name, f"Deleting backup {ref} of {name!r} cannot be undone")
        backup = await backups().delete(name, ref)
        return JSONResponse({"deleted": backup.to_json()})

    async def backups_schedule_get(request: Request) -> Response:
        at = await backups().schedule_of(app_name(request))
        return JSONResponse({"at": at, "keep": backups().keep})

    async def backups_schedule_put(request: Request) -> Response:
        name = app_name(request)
        data = body_dict(await json_body(request))
        at = daily_time(text_field(data, "at"))
        return JSONResponse({"at": await backups().schedule(name, at), "keep": backups().keep})

    async def backups_schedule_delete(request: Request) -> Response:
        await backups().unschedule(app_name(request))
        return JSONResponse({"at": None})

    async def addons_reset(request: Request) -> Response:
        name = app_name(request)
        if registry.service(request.path_params["service"])[0] is not registry.POSTGRES:
            raise UserError(
                "Only a heroku-postgresql database can be reset; empty Redis with FLUSHALL "
                "(`minipaas redis:cli -a APP -c FLUSHALL`)."
            )
        await confirmed(
            request, name, f"Resetting the database of {name!r} deletes all its data"
        )
        addon = await backups().reset(name)
        return JSONResponse({"reset": addon_json(addon)})

    # -- credentials (pg:credentials:rotate, redis:credentials) and pg:ps/kill/killall -----------

    async def addons_credentials(request: Request) -> Response:
        """`redis:credentials`: the add-on's URL (what `config:get` shows of it)."""
        name = app_name(request)
        kind, _plan = registry.service(request.path_params["service"])
        addon, url = await deployer.addon_credentials(name, kind.name)
        return JSONResponse({**addon_json(addon), "url": url})

    async def addons_rotate(request: Request) -> Response:
        """`pg:credentials:rotate`, `redis:credentials --reset` (`?confirm=APP`): a new
        password, the URL by a config release, the old password's connections ended."""
        name = app_name(request)
        kind, _plan = registry.service(request.path_params["service"])
        await confirmed(
            request, name,
            f"Rotating the credentials of {kind.name} of {name!r} ends its connections and "
            "restarts its dynos",
        )
        await not_busy(name)
        addon = await deployer.rotate_credentials(name, kind.name, who=who(request))
        release = await store.current_release(await store.app(name))
        return JSONResponse({**addon_json(addon),
                             "release": release.version if release else None})

    def postgres_only(request: Request, word: str) -> None:
        if registry.service(request.path_params["service"])[0] is not registry.POSTGRES:
            raise UserError(f"Only a heroku-postgresql database has {word}.")

    async def addons_activity(request: Request) -> Response:
        """`pg:ps`: the queries running on the app's database now; `?verbose=true`
        (`pg:ps --verbose`, as Heroku's): its idle connections too."""
        name = app_name(request)
        postgres_only(request, "connections to list")
        verbose = request.query_params.get("verbose", "false")
        if verbose not in ("true", "false"):
            raise UserError(f"Invalid verbose {names.shown(verbose)}: use true or false.")
        addon, found = await deployer.database_activity(name, idle=verbose == "true")
        return JSONResponse({**addon_json(addon), "connections": found})

    async def addons_kill(request: Request) -> Response:
        """`pg:kill`: {"pid": N, "force": false} cancels the query of backend N of the app's
        database (`force`: ends its connection); a pid of another database is refused."""
        name = app_name(request)
        postgres_only(request, "connections to cancel")
        data = body_dict(await json_body(request))
        if "pid" not in data:
            raise UserError('No pid given: send {"pid": N}, a pid `minipaas pg:ps` shows.')
        pid = data["pid"]
        if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid < 2**31:
            raise UserError(
                f"Invalid pid {jsonin.kind(pid)}: give a number `minipaas pg:ps` shows."
            )
        force = jsonin.flag(data, "force")
        addon = await deployer.kill_backend(name, pid, force=force)
        return JSONResponse({**addon_json(addon), "pid": pid,
                             "done": "terminated" if force else "cancelled"})

    async def addons_killall(request: Request) -> Response:
        """`pg:killall`: end every connection to the app's database."""
        name = app_name(request)
        postgres_only(request, "connections to end")
        addon, count = await deployer.kill_all_backends(name)
        return JSONResponse({**addon_json(addon), "terminated": count})

    async def maintenance(request: Request) -> Response:
        app = await store.app(app_name(request))
        data = body_dict(await json_body(request))
        on = data.get("on")
        if "on" not in data:
            raise UserError('Send {"on": true} or {"on": false}.')
        if not isinstance(on, bool):
            raise UserError(
                f'Invalid maintenance setting {json.dumps(on)[:100]}: send {{"on": true}} or '
                '{"on": false}.'
            )
        await store.set_maintenance(app, on)
        await deployer.sync_routes()
        return JSONResponse({"maintenance": on})

    async def keys_list(request: Request) -> Response:
        return JSONResponse([k.to_json() for k in await store.keys()])

    async def keys_add(request: Request) -> Response:
        data = body_dict(await json_body(request))
        name = key_name(text_field(data, "name"))
        key = sshkeys.parse_public_key(text_field(data, "public_key"))
        record = await store.add_key(name, key.fingerprint, key.line)
        await ctx.sync_keys()
        return JSONResponse(record.to_json(), status_code=201)

    async def keys_remove(request: Request) -> Response:
        name = key_name(request.path_params["name"])
        await store.remove_key(name)
        await ctx.sync_keys()
        return JSONResponse({"removed": name})

    async def whoami_key(request: Request) -> Response:
        key = await store.key_by_fingerprint(request.path_params["fingerprint"])
        if key is None:
            raise NotFound(
                f"Unknown SSH key {request.path_params['fingerprint']!r}; add it with "
                "`minipaas keys:add NAME`."
            )
        return JSONResponse(key.to_json())

    async def down(request: Request) -> Response:
        if not is_local(request) or ctx.shutdown is None:
            raise UserError("`minipaas down` works only on the server itself.")
        ctx.shutdown()
        return JSONResponse({"stopping": True})

    async def auth_token(request: Request) -> Response:
        if not is_local(request):
            raise UserError("The admin token is only shown on the server itself.")
        return JSONResponse({"token": ctx.admin_token()})

    async def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": f"No such API route: {request.url.path}."}, status_code=404)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = str(exc.detail)
        if exc.status_code == 405:
            message = f"The method {request.method} is not allowed on {request.url.path}."
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    async def user_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, UserError)
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    async def os_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, OSError)
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise exc  # a bug: 500, with its traceback in the server's log
        return await user_error(request, DiskFull(settings.data_dir))

    background = ctx.streams
    routes: list[BaseRoute] = [
        Route("/api/status", status),
        Route("/api/apps", apps_list),
        Route("/api/apps", apps_create, methods=["POST"]),
        Route("/api/apps/{app}", apps_info),
        Route("/api/apps/{app}", apps_destroy, methods=["DELETE"]),
        Route("/api/apps/{app}", apps_rename, methods=["PATCH"]),
        Route("/api/apps/{app}/config", config_get),
        Route("/api/apps/{app}/config", config_patch, methods=["PATCH"]),
        Route("/api/apps/{app}/dynos", dynos),
        Route("/api/apps/{app}/formation", formation_patch, methods=["PATCH"]),
        Route("/api/apps/{app}/sizes", sizes_patch, methods=["PATCH"]),
        Route("/api/apps/{app}/restart", restart, methods=["POST"]),
        Route("/api/apps/{app}/logs", logs),
        Route("/api/apps/{app}/releases", releases),
        Route("/api/apps/{app}/errors", app_errors),
        Route("/api/apps/{app}/releases/{version}", release_info),
        Route("/api/apps/{app}/release-output", release_output),
        Route("/api/apps/{app}/deploy", deploy, methods=["POST"]),
        Route("/api/apps/{app}/rollback", rollback, methods=["POST"]),
        Route("/api/apps/{app}/ps/{action:str}", ps_stop_start, methods=["POST"]),
        Route("/api/apps/{app}/checks", checks_get),
        Route("/api/apps/{app}/checks", checks_put, methods=["PUT"]),
        Route("/api/apps/{app}/checks", checks_delete, methods=["DELETE"]),
        Route("/api/apps/{app}/run", run, methods=["POST"]),
        WebSocketRoute("/api/apps/{app}/run/attach", run_attach),
        Route("/api/apps/{app}/domains", domains_list),
        Route("/api/apps/{app}/certs", certs_list),
        Route("/api/apps/{app}/domains", domains_add, methods=["POST"]),
        Route("/api/apps/{app}/domains/{hostname}", domains_remove, methods=["DELETE"]),
        Route("/api/apps/{app}/buildpacks", buildpacks_list),
        Route("/api/apps/{app}/buildpacks", buildpacks_add, methods=["POST"]),
        Route("/api/apps/{app}/buildpacks", buildpacks_replace, methods=["PUT"]),
        Route("/api/apps/{app}/buildpacks", buildpacks_remove, methods=["DELETE"]),
        Route("/api/apps/{app}/buildpacks/{index}", buildpacks_set_at, methods=["PUT"]),
        Route("/api/apps/{app}/drains", drains_list),
        Route("/api/apps/{app}/drains", drains_add, methods=["POST"]),
        Route("/api/apps/{app}/drains", drains_remove, methods=["DELETE"]),
        Route("/api/apps/{app}/maintenance", maintenance, methods=["PUT"]),
        Route("/api/addons", addons_all),
        Route("/api/apps/{app}/addons", addons_list),
        Route("/api/apps/{app}/addons", addons_create, methods=["POST"]),
        Route("/api/apps/{app}/addons/{service}", addons_destroy, methods=["DELETE"]),
        Route("/api/apps/{app}/addons/{service}/info", addons_info),
        Route("/api/apps/{app}/addons/{service}/reset", addons_reset, methods=["POST"]),
        Route("/api/apps/{app}/addons/{service}/maxmemory", addons_maxmemory,
              methods=["PUT"]),
        Route("/api/apps/{app}/addons/{service}/credentials", addons_credentials),
        Route("/api/apps/{app}/addons/{service}/credentials/rotate", addons_rotate,
              methods=["POST"]),
        Route("/api/apps/{app}/addons/{service}/activity", addons_activity),
        Route("/api/apps/{app}/addons/{service}/kill", addons_kill, methods=["POST"]),
        Route("/api/apps/{app}/addons/{service}/killall", addons_killall, methods=["POST"]),
        Route("/api/apps/{app}/backups", backups_list),
        Route("/api/apps/{app}/backups", backups_capture, methods=["POST"]),
        Route("/api/apps/{app}/backups/upload", backups_upload, methods=["POST"]),
        Route("/api/apps/{app}/backups/schedule", backups_schedule_get),
        Route("/api/apps/{app}/backups/schedule", backups_schedule_put, methods=["PUT"]),
        Route("/api/apps/{app}/backups/schedule", backups_schedule_delete, methods=["DELETE"]),
        Route("/api/apps/{app}/backups/{backup}/download", backups_download),
        Route("/api/apps/{app}/backups/{backup}/restore", backups_restore, methods=["POST"]),
        Route("/api/apps/{app}/backups/{backup}", backups_delete, methods=["DELETE"]),
        Route("/api/keys", keys_list),
        Route("/api/keys", keys_add, methods=["POST"]),
        Route("/api/keys/by-fingerprint/{fingerprint:path}", whoami_key),
        # `path`: a name with a slash (%2F is decoded before routing) gets the name check's
        # answer, not "no such route".
        Route("/api/keys/{name:path}", keys_remove, methods=["DELETE"]),
        Route("/api/auth/token", auth_token),
        Route("/api/admin/down", down, methods=["POST"]),
    ]
    if ctx.metrics is not None:
        routes += metrics_routes(ctx.metrics, store, ctx.tokens)
    if ctx.git_app is not None:
        routes.append(Mount("/git", app=ctx.git_app))
    app = Starlette(
        routes=routes,
        exception_handlers={
            UserError: user_error,
            OSError: os_error,
            404: not_found,
            HTTPException: http_error,
        },
    )
    # git does its own basic auth (token as password) so it can answer git's way.
    guarded = TokenAuth(app, ctx.tokens, public=())
    return _GitBypass(app, guarded) if ctx.git_app is not None else guarded


class _GitBypass:
    """Routes /git/* around TokenAuth: the git app checks the token itself (basic auth)."""

    def __init__(self, app: ASGIApp, guarded: ASGIApp) -> None:
        self.app = app
        self.guarded = guarded

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith("/git/"):
            await self.app(scope, receive, send)
        else:
            await self.guarded(scope, receive, send)
