"""THE pipeline, and every other change to what runs: deploy, config releases, scaling, routes.

`Deployer.deploy()` reads top to bottom like the runbook: export the pushed commit, build it
with buildpacks into an immutable slug, record release vN, run the `release:` phase, start the
new dynos beside the old ones, switch Caddy once they are ready, retire the old ones. Any
failure before the switch leaves the previous release serving and raises a `UserError` whose
sentence ends the push.

This module composes the parts through their public APIs; it never speaks SQL, Caddy JSON or
Dulwich directly, and it owns the per-app locks that keep two changes to one app from
interleaving.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from minipaas import addons as registry
from minipaas import checks, cron, names, renaming, sizes
from minipaas.backups import Backups
from minipaas.build import Builder, BuildRequest, initial_config, parse_app_json
from minipaas.build.runner import read_app_file
from minipaas.errors import BuildError, Conflict, DeployError, NotFound, UserError
from minipaas.git import MOVED, Repos
from minipaas.logs import LogStore
from minipaas.metrics import HostMap
from minipaas.models import Addon, App, Release
from minipaas.postgres import SERVICE, Cluster, DatabaseInfo, database_name
from minipaas.redis import RedisInfo, RedisServers, check_policy, password_of
from minipaas.router import AppRoute, Router, RouterState
from minipaas.scheduler import CronJob
from minipaas.settings import Settings
from minipaas.store import Store
from minipaas.supervisor import (
    DynoEvent,
    DynoRecord,
    DynoSpec,
    HealthCheck,
    Supervisor,
    move_homes,
)

Log = Callable[[str], None]

#: Process types that never run as long-lived dynos.
ONE_OFF_TYPES = frozenset({"release"})
#: The most of a release phase's output `releases:output` keeps (the newest lines), in chars.
RELEASE_OUTPUT_MAX = 1 << 20
INTERRUPTED = "the server stopped while it ran (killed or crashed); push again"
"""Why a build that a killed server left 'pending' failed (its log line, after ` !     `)."""
STARTS_PER_CORE = 2
"""Apps whose dynos start-up starts side by side, per CPU core (after a reboot every app starts
again): waiting for readiness overlaps, and boots are not slowed so much that they time out."""


def release_settings(slug: Path) -> dict[str, Any]:
    """What a release keeps from the slug's app.json: the web health check, cron jobs, the
    `formation` counts and sizes a process type starts with and the `postdeploy` script.

    Raises `UserError` for an invalid app.json, health check, cron schedule or dyno size, which
    fails the build (nothing changes)."""
    text = read_app_file(slug, "app.json")
    if text is None:
        return {}
    parsed = parse_app_json(text)
    jobs = []
    for job in parsed.cron:
        cron.parse(job.schedule)
        if not job.maintenance:  # suspended (Dokku's `"maintenance": true`): never run
            jobs.append({"command": job.command, "schedule": job.schedule})
    return {
        "check": checks.from_app_json(parsed.healthchecks),
        "cron": jobs,
        "formation": {ptype: f.quantity for ptype, f in parsed.formation.items()},
        "sizes": _app_json_sizes(parsed.formation),
        "postdeploy": parsed.script("postdeploy"),
    }


def _app_json_sizes(formation: dict[str, Any]) -> dict[str, str]:
    """app.json `formation.<type>.size`, each checked as `ps:type` checks it."""
    found = {ptype: f.size for ptype, f in formation.items() if f.size is not None}
    if not found:
        return {}
    total = sizes.host_memory()
    out = {}
    for ptype, size in found.items():
        try:
            out[ptype] = sizes.parse_size(size, total)
        except UserError as exc:
            raise UserError(f"app.json formation.{ptype}.size: {exc}") from None
    return out


def app_json_config(slug: Path, config: dict[str, str]) -> dict[str, str]:
    """The config vars the slug's app.json `env` gives a new app (see `initial_config`);
    `UserError` for an invalid app.json or a required var that is not set."""
    text = read_app_file(slug, "app.json")
    if text is None:
        return {}
    return initial_config(parse_app_json(text).env, config, lambda: secrets.token_hex(32))


@dataclass(frozen=True)
class DeployResult:
    release: int
    url: str


class Deployer:
    """Owns the sequence of every change to an app's running state."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        repos: Repos,
        builder: Builder,
        supervisor: Supervisor,
        router: Router,
        logs: LogStore,
        api_upstream: Callable[[], str],
        hosts: HostMap | None = None,
        postgres: Cluster | None = None,
        backups: Backups | None = None,
        redis: RedisServers | None = None,
    ) -> None:
        self.settings = settings
        self.paths = settings.paths
        self.store = store
        self.repos = repos
        self.builder = builder
        self.supervisor = supervisor
        self.router = router
        self.logs = logs
        self._api_upstream = api_upstream
        self._hosts = hosts
        self.postgres = postgres
        self.backups = backups
        self.redis = redis
        self._locks: dict[str, asyncio.Lock] = {}
        #: Per app: held by `destroy` while it stops the app and by a one-off dyno (cron, run)
        #: until its process is known to the supervisor, so none starts unseen by the stop.
        self._starts: dict[str, asyncio.Lock] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._deploys: set[asyncio.Task[Any]] = set()  # the tasks running `deploy`
        self._routes_lock = asyncio.Lock()
        self._renaming = asyncio.Lock()  # one rename at a time: one journal
        #: Old name -> new, while a rename switches the routes: the old hostname still serves
        #: the app until Caddy surely serves the new one (see `_switch_names`).
        self._aliases: dict[str, str] = {}
        #: Apps without any release, as of the last routes rendered: the router log's H81.
        self.unreleased: frozenset[str] = frozenset()
        self._trash_lock = asyncio.Lock()  # two deploys ending together empty it once
        #: Set once start-up has taken back the dynos still running (`readopt_all`).
        self.ready = asyncio.Event()
        #: Apps whose missing dynos start-up has yet to start (`start_missing`; not those whose
        #: `readopt_all` failed): after a reboot they have none for a while, and `ps` says they
        #: are on their way, not that none exist.
        self.waiting: set[str] = set()

    def lock(self, app: str) -> asyncio.Lock:
        return self._locks.setdefault(app, asyncio.Lock())

    def uid(self, app: App) -> int | None:
        return app.uid if self.root else None

    @property
    def root(self) -> bool:
        return os.geteuid() == 0

    # -- the pipeline ----------------------------------------------------------------------

    async def deploy(
        self,
        app_name: str,
        sha: str,
        log: Log,
        *,
        who: str,
        ref: str | None = None,
        old: str | None = None,
    ) -> DeployResult:
        """Build commit `sha` of `app_name` and make it the serving release.

        For a push to branch `ref`, which the pusher saw at `old` (None: new branch): refused if
        the branch has moved since (another deploy went live meanwhile, say one whose pusher
        hung up and so no longer held the push lock); moved to `sha` the moment the release goes
        live, by this deploy, not by the pusher, who may be gone by then."""
        task = asyncio.current_task()
        if task is not None:
            self._deploys.add(task)
        try:
            return await self._deploy(app_name, sha, log, who=who, ref=ref, old=old)
        finally:
            self._deploys.discard(task)

    async def stop_deploys(self) -> None:
        """Server stop: cancel the deploys under way. Their build or release command is killed
        and what they leave pending fails at the next start (`end_interrupted`); left running,
        they outlived the API and uvicorn cancelled their streams after its grace (a traceback
        in the log) or the process exit killed them half-way anyway."""
        tasks = list(self._deploys)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _deploy(
        self, app_name: str, sha: str, log: Log, *, who: str, ref: str | None, old: str | None
    ) -> DeployResult:
        async with self.lock(app_name):
            app = await self.store.app(app_name)
            if ref is not None:
                now = await asyncio.to_thread(self.repos.ref_sha, app.name, ref)
                if now != old:
                    raise DeployError(MOVED[0].upper() + MOVED[1:] + ".")
            build = await self.store.create_build(app, sha)
            slug = self.paths.slug(app.name, f"b{build.id}")
            lines: list[str] = []

            def build_log(line: str) -> None:
                lines.append(line)
                self.logs.append(app.name, "build", "build", line)
                log(line)

            build_log(f"-----> Building {app.name} ({sha[:7]}) with minipaas")
            slug.parent.mkdir(parents=True, exist_ok=True)
            config = await self.store.config(app)
            buildpacks = await self.store.buildpacks(app)  # `buildpacks:set`; not a release's
            scratch = self.paths.run / f"build-{build.id}"
            scratch.mkdir(parents=True, exist_ok=True)
            added: dict[str, str] = {}
            first = await self._never_deployed(app)
            try:
                # 1. receive: the pushed tree becomes the build dir, which becomes the slug.
                # (Inside the `try`: a tree refused here, say an unsafe file name, fails the
                # build like any other error instead of leaving it pending with a half-written
                # slug.)
                submodules = await asyncio.to_thread(self.repos.export, app.name, sha, slug)
                for path in submodules:
                    # Heroku fetches them; minipaas builds what was pushed (and cannot reach
                    # their URLs in general): say so before the app fails for lack of files.
                    build_log(
                        f" !     The submodule {path!r} is not fetched and stays an empty "
                        "directory: commit its files into the app's repository instead"
                    )

                # 2. build with buildpacks, in the app's sandbox.
                if first:  # app.json `env` sets a new app up
                    added = await asyncio.to_thread(app_json_config, slug, config)
                    config = {**config, **added}
                    if added:  # names only: values may be secrets
                        build_log(f"-----> Config vars from app.json: {', '.join(sorted(added))}")
                result = await self.builder.build(
                    BuildRequest(
                        app=app.name,
                        build_dir=slug,
                        cache_dir=self.paths.app_cache(app.name),
                        env=config,
                        uid=self.uid(app),
                        scratch=scratch,
                        buildpacks=buildpacks,
                    ),
                    build_log,
                )
                app_json = await asyncio.to_thread(release_settings, slug)
                if first:  # app.json `addons`, last: a build that failed provisions nothing
                    provided = await self._app_json_addons(app, slug, config, build_log)
                    added.update(provided)
                    config = {**config, **provided}
            except UserError as exc:
                # Kept in the build's log, not sent to the pusher: the push's gate ends with
                # this sentence (it was shown twice in a row).
                lines.append(f" !     {exc}")
                self.logs.append(app.name, "build", "build", f" !     {exc}")
                await self.store.finish_build(
                    build, status="failed", log="\n".join(lines), buildpacks=[], slug=None
                )
                await asyncio.to_thread(shutil.rmtree, slug, True)
                raise BuildError(str(exc)) from exc
            except Exception:
                # A bug, or the machine (a full disk): the push reports an internal error, and
                # the build must not stay 'pending' with its half-written slug left behind.
                await self.store.finish_build(
                    build, status="failed", log="\n".join(lines), buildpacks=[], slug=None
                )
                await asyncio.to_thread(shutil.rmtree, slug, True)
                raise
            finally:
                await asyncio.to_thread(shutil.rmtree, scratch, True)
            await self.store.finish_build(
                build,
                status="succeeded",
                log="\n".join(lines),
                buildpacks=result.buildpacks,
                slug=str(slug),
            )

            # 3. release vN = slug + config snapshot.
            if added:  # kept once the build succeeded; a failed one sets nothing
                changes: dict[str, str | None] = {**added}
                await self.store.update_config(app, changes)
            static_root = str(slug / result.static_root) if result.static_root else None
            release = await self.store.create_release(
                app,
                build_id=build.id,
                sha=sha,
                slug=str(slug),
                static_root=static_root,
                config=config,
                process_types=result.process_types,
                description=f"Deploy {sha[:7]}",
                created_by=who,
                app_json=app_json,
            )

            # 4-6. release phase, start new dynos, switch routes, retire the old ones.
            await self._go_live(app, release, log)
            # Compare-and-swap: after the check above, under the app's lock, only a write to
            # the repository from outside minipaas can make it fail.
            if ref is not None and not await asyncio.to_thread(
                self.repos.move_ref, app.name, ref, old, sha
            ):
                text = f"{ref} had moved meanwhile and was left as it was"
                self.logs.append(app.name, "minipaas", "minipaas", text)
            if first and (command := app_json.get("postdeploy")):
                await self._postdeploy(app, release, str(command), log)
            url = self.settings.app_url(app.name)
            await self.prune_slugs(app)
            log(f"-----> Deployed v{release.version} to {url}")
            self.logs.append(
                app.name,
                "minipaas",
                "minipaas",
                f"Deployed v{release.version} ({sha[:7]}) by {who}",
            )
        # Deleting trees and measuring the cache can take seconds for a big app: the push does
        # not wait for it (the next deploy of the app does, through the app's lock).
        self._in_background(self._housekeeping(app.name))
        return DeployResult(release=release.version, url=url)

    async def _never_deployed(self, app: App) -> bool:
        """No release with code yet (`config:set` before the first push makes one without)."""
        release = await self.store.current_release(app)
        return release is None or release.slug is None

    async def _go_live(self, app: App, release: Release, log: Log) -> None:
        """Release phase → start → check → switch → retire; on failure the old release serves."""
        try:
            if "release" in release.process_types:
                await self._release_phase(app, release, log)
            await self._apply(app, release, log)
        except UserError:
            await self.store.set_release_status(release, "failed")
            raise
        await self.store.set_release_status(release, "succeeded")
        await self.store.set_current_release(app, release.version)
        await self.sync_routes()

    async def _release_phase(self, app: App, release: Release, log: Log) -> None:
        log("-----> Running release command...")
        # The supervisor keeps one-off output in the logs too (source "release"), but by dyno
        # name, not release version, and pruned: `releases:output vN` reads these lines.
        lines: collections.deque[str] = collections.deque()
        kept = 0

        def release_log(line: str) -> None:
            nonlocal kept
            log(f"       {line}")
            lines.append(line)
            kept += len(line) + 1
            while kept > RELEASE_OUTPUT_MAX and len(lines) > 1:
                kept -= len(lines.popleft()) + 1

        spec = self._spec(app, release, "release")
        started = time.time()
        code: int | None = None
        try:
            code = await self.supervisor.run_once(spec, release_log)
        finally:
            await self.store.set_release_output(release, "\n".join(lines), code, started)
        if code != 0:
            raise DeployError(
                f"The release command `{release.process_types['release']}` exited with status "
                f"{code}; v{release.version} was not deployed and the previous release "
                "keeps serving."
            )

    async def _postdeploy(self, app: App, release: Release, command: str, log: Log) -> None:
        """app.json `scripts.postdeploy`, once, after an app's first deploy went live (as a
        Heroku app setup runs it). The release is live whatever it does: a failure is reported."""
        log("-----> Running postdeploy command (first deploy only)...")
        spec = self._spec(app, release, "postdeploy", command=command)
        code = await self.supervisor.run_once(spec, lambda line: log(f"       {line}"))
        if code != 0:
            log(
                f" !     The postdeploy command exited with status {code}; v{release.version} "
                f"is live. Run it again with `minipaas run -a {app.name} -- {command}`."
            )

    async def _groups(self, app: App, release: Release) -> dict[str, tuple[DynoSpec, int]]:
        """The desired dynos of `release`: {process type: (spec, count)}.

        A process type seen for the first time starts with its app.json `formation` quantity
        (else web=1 and the others 0) and size (else none: no memory quota); from then on the
        app's formation (`ps:scale`, `ps:type`) decides.
        """
        formation = await self.store.formation(app)
        initial = release.app_json.get("formation") or {}
        defaults = {
            ptype: int(initial.get(ptype, 1 if ptype == "web" else 0))
            for ptype in release.process_types
            if ptype not in ONE_OFF_TYPES and ptype not in formation
        }
        if defaults:
            formation = await self.store.set_formation(app, defaults)
            initial_sizes = release.app_json.get("sizes") or {}
            new_sizes = {p: str(initial_sizes[p]) for p in defaults if p in initial_sizes}
            if new_sizes:
                await self.store.set_sizes(app, dict(new_sizes))
        quotas = {p: sizes.quota_bytes(size) for p, size in (await self.store.sizes(app)).items()}
        stopped = await self.store.stopped_types(app)
        check = await self.store.check(app) or release.app_json.get("check")
        health = HealthCheck(**check) if check else None
        return {
            ptype: (
                replace(
                    self._spec(app, release, ptype, health if ptype == "web" else None),
                    memory=quotas.get(ptype),
                ),
                0 if ptype in stopped else count,
            )
            for ptype, count in formation.items()
            if ptype in release.process_types and ptype not in ONE_OFF_TYPES
        }

    def _switch(self, app: App, release: Release) -> Callable[[], Awaitable[None]]:
        async def switch() -> None:
            await self.store.set_current_release(app, release.version)
            await self.sync_routes()

        return switch

    async def _apply(self, app: App, release: Release, log: Log | None = None) -> None:
        """Reconcile dynos to the release and the formation; Caddy switches once they are ready,
        and the old web dynos are stopped only once Caddy has no request in flight to them."""
        groups = await self._groups(app, release)
        if log is not None and groups:
            summary = ", ".join(f"{t}={c}" for t, (_, c) in sorted(groups.items()))
            log(f"-----> Starting dynos: {summary}")
        await self.supervisor.apply(
            app.name, groups, switch=self._switch(app, release), drain=self.drain
        )

    async def drain(self, upstreams: Sequence[str]) -> None:
        """Wait until Caddy has no request in flight to `upstreams` (bounded by the grace)."""
        # By port: Caddy names dynos looked up over DNS "localhost.:PORT", others "127.0.0.1:PORT".
        wanted = {upstream.rpartition(":")[2] for upstream in upstreams}
        deadline = time.monotonic() + self.settings.stop_grace
        while time.monotonic() < deadline:
            counters = await self.router.admin.upstreams()
            busy = [
                u
                for u in counters
                if str(u.get("address", "")).rpartition(":")[2] in wanted and u.get("num_requests")
            ]
            if not busy:
                return
            await asyncio.sleep(0.02)

    def _spec(
        self,
        app: App,
        release: Release,
        ptype: str,
        check: HealthCheck | None = None,
        *,
        command: str | None = None,
    ) -> DynoSpec:
        """A dyno of `release`: process type `ptype` runs its Procfile command, or `command`."""
        if release.slug is None:
            raise DeployError(f"Release v{release.version} of {app.name!r} has no slug to run.")
        return DynoSpec(
            app=app.name,
            process_type=ptype,
            release=release.version,
            slug=Path(release.slug),
            command=release.process_types[ptype] if command is None else command,
            env=release.config,
            uid=self.uid(app),
            check=check,
        )

    # -- config, scaling, restarts ---------------------------------------------------------

    async def set_config(
        self, app_name: str, changes: dict[str, str | None], *, who: str,
        description: str | None = None,
        locked: bool = False,
    ) -> dict[str, str]:
        """Change config vars: a new release with the same slug, dynos restarted with it. The
        release says `description` (default: which vars were set and unset). `locked`: the
        caller holds the app's lock already."""
        async with contextlib.nullcontext() if locked else self.lock(app_name):
            app = await self.store.app(app_name)
            before = await self.store.config(app)
            config = await self.store.update_config(app, changes)
            if config == before:
                return config
            set_keys = sorted(k for k, v in changes.items() if v is not None)
            unset_keys = sorted(k for k, v in changes.items() if v is None)
            parts = []
            if set_keys:
                parts.append("Set " + ", ".join(set_keys))
            if unset_keys:
                parts.append("Unset " + ", ".join(unset_keys))
            current = await self.store.current_release(app)
            release = await self.store.create_release(
                app,
                build_id=current.build_id if current else None,
                sha=current.sha if current else None,
                slug=current.slug if current else None,
                static_root=current.static_root if current else None,
                config=config,
                process_types=current.process_types if current else {},
                description=description or "; ".join(parts),
                created_by=who,
            )
            if current is None or current.slug is None:
                await self.store.set_release_status(release, "succeeded")
                await self.store.set_current_release(app, release.version)
                return config
            try:
                await self._apply(app, release)
            except UserError:
                await self.store.set_release_status(release, "failed")
                await self.store.update_config(
                    app, {**{k: None for k in config if k not in before}, **before}
                )
                raise
            await self.store.set_release_status(release, "succeeded")
            await self.store.set_current_release(app, release.version)
            self.logs.append(
                app.name,
                "minipaas",
                "minipaas",
                f"{release.description} by {who}: released v{release.version}",
            )
            return config

    async def rollback(
        self, app_name: str, version: int | None, *, who: str, only_from: int | None = None
    ) -> Release:
        """A new release with an earlier release's slug and config: no build, just a restart.
        With `only_from`, only while that release is the current one (checked under the app's
        lock: the automatic rollback decides before it, while a deploy may be under way)."""
        async with self.lock(app_name):
            app = await self.store.app(app_name)
            current = await self.store.current_release(app)
            if current is None:
                raise UserError(f"{app_name!r} has no release to roll back from; push first.")
            if only_from is not None and current.version != only_from:
                raise UserError(
                    f"v{only_from} is no longer the current release of {app_name!r} "
                    f"(v{current.version} is); nothing was rolled back."
                )
            if version is None:
                earlier = [
                    r
                    for r in await self.store.releases(app, limit=1000)
                    if r.version < current.version and r.status == "succeeded"
                ]
                if not earlier:
                    raise UserError(f"{app_name!r} has no release before v{current.version}.")
                target = earlier[0]
            else:
                target = await self.store.release(app, version)
            if target.version == current.version:
                raise UserError(
                    f"v{target.version} is already the current release of {app_name!r}."
                )
            if target.status != "succeeded":
                raise UserError(
                    f"v{target.version} of {app_name!r} never went live ({target.status}); "
                    "choose a release that did."
                )
            if target.slug is None or not await asyncio.to_thread(os.path.isdir, target.slug):
                raise UserError(
                    f"The slug of v{target.version} was pruned; roll back to a newer release."
                )
            before = await self.store.config(app)
            # Add-ons are not rolled back (as on Heroku), so neither are their config vars: the
            # app keeps the URL of the database it has, not one from before (or without) it.
            config = dict(target.config)
            for addon in await self.store.addons(app):
                if addon.config_var in before:
                    config[addon.config_var] = before[addon.config_var]
            release = await self.store.create_release(
                app,
                build_id=target.build_id,
                sha=target.sha,
                slug=target.slug,
                static_root=target.static_root,
                config=config,
                process_types=target.process_types,
                description=f"Rollback to v{target.version}",
                created_by=who,
                app_json=target.app_json,
            )
            await self.store.update_config(
                app, {**dict.fromkeys(k for k in before if k not in config), **config}
            )
            try:
                await self._apply(app, release)
            except UserError:
                await self.store.set_release_status(release, "failed")
                await self.store.update_config(
                    app, {**dict.fromkeys(k for k in config if k not in before), **before}
                )
                raise
            await self.store.set_release_status(release, "succeeded")
            await self.store.set_current_release(app, release.version)
            await self.sync_routes()
            self.logs.append(
                app.name,
                "minipaas",
                "minipaas",
                f"Rollback to v{target.version} by {who}: released v{release.version}",
            )
            return release

    # -- cron and disk ---------------------------------------------------------------------

    async def cron_jobs(self) -> list[CronJob]:
        """The app.json `cron` jobs of every app's current release."""
        jobs = []
        for app in await self.store.apps():
            release = await self.store.current_release(app)
            if release is None:
                continue
            for index, job in enumerate(release.app_json.get("cron", [])):
                jobs.append(
                    CronJob(
                        app=app.name,
                        index=index,
                        command=job["command"],
                        schedule=job["schedule"],
                        release=release.version,
                    )
                )
        return jobs

    @contextlib.asynccontextmanager
    async def starting(self, app_name: str) -> AsyncIterator[Callable[[str], None]]:
        """Start a one-off dyno of `app_name` inside: the app's start gate is held until the
        `started` callback given is called (pass it to the supervisor) or the block ends, and
        `destroy` holds it while it stops the app. A cron job or `run` due as the app is
        destroyed then either starts before (and is killed by the destroy) or finds the app
        gone (`NotFound`): never a dyno that outlives its app."""
        gate = self._starts.setdefault(app_name, asyncio.Lock())
        await gate.acquire()
        held = True

        def started(_dyno: str = "") -> None:
            nonlocal held
            if held:
                held = False
                gate.release()

        try:
            yield started
        finally:
            started()

    async def run_cron(self, job: CronJob) -> int | None:
        """One run of a cron job as a one-off dyno (`cron.N`); its output goes to the app log.
        None if the app was destroyed before the job could start."""
        async with self.starting(job.app) as started:
            try:
                spec = await self.one_off_spec(job.app, job.command)
            except NotFound:  # destroyed since the job list was read: nothing to run
                return None
            spec = replace(spec, process_type="cron")
            self.logs.append(
                job.app,
                "minipaas",
                "minipaas",
                f"Running cron job {job.index} ({job.schedule}): {job.command}",
            )
            code = await self.supervisor.run_once(
                spec, lambda _line: None, timeout=3600, started=started
            )
        try:
            await self.store.app(job.app)
        except NotFound:  # destroyed meanwhile (which killed the job): its logs are gone
            return code
        self.logs.append(
            job.app, "minipaas", "minipaas", f"Cron job {job.index} exited with status {code}"
        )
        return code

    def cron_skipped(self, job: CronJob) -> None:
        """A due cron job not started because its previous run is still going: say so in the
        app's logs (a job that silently never runs is hard to explain)."""
        self.logs.append(
            job.app,
            "minipaas",
            "minipaas",
            f"Cron job {job.index} ({job.schedule}) not started: its previous run is still "
            "going (see `minipaas ps`)",
        )

    async def prune_slugs(self, app: App) -> list[str]:
        """Keep the newest `keep_slugs` slugs (and the serving one); delete older ones."""
        current = await self.store.current_release(app)
        keep = {current.slug} if current and current.slug else set()
        root = self.paths.app_slugs(app.name)
        if not await asyncio.to_thread(root.is_dir):
            return []
        slugs = sorted(
            (
                p
                for p in await asyncio.to_thread(lambda: list(root.iterdir()))
                if p.name.startswith("b") and p.name[1:].isdigit()
            ),
            key=lambda p: int(p.name[1:]),
            reverse=True,
        )
        removed = []
        for slug in slugs[self.settings.keep_slugs :]:
            if str(slug) in keep:
                continue
            await asyncio.to_thread(self._discard, slug)
            removed.append(slug.name)
        return removed

    def _discard(self, path: Path) -> None:
        """Make `path` disappear at once: renamed into the trash (emptied by `empty_trash`), or
        deleted here when it cannot be renamed (another filesystem)."""
        if not path.exists() and not path.is_symlink():
            return
        self.paths.trash.mkdir(mode=0o700, exist_ok=True)
        target = self.paths.trash / f"{path.parent.name}-{path.name}-{secrets.token_hex(4)}"
        try:
            path.rename(target)
        except OSError:
            shutil.rmtree(path, ignore_errors=True)

    async def empty_trash(self) -> None:
        """Delete what `_discard` renamed away (also what a stopped server left there)."""
        trash = self.paths.trash
        async with self._trash_lock:
            entries = await asyncio.to_thread(
                lambda: list(trash.iterdir()) if trash.is_dir() else []
            )
            for entry in entries:
                await asyncio.to_thread(shutil.rmtree, entry, True)

    async def _housekeeping(self, app_name: str) -> None:
        """After a deploy: empty the trash, clear the build cache if it outgrew its limit."""
        await self.empty_trash()
        async with self.lock(app_name):  # a build must not use the cache while it is cleared
            if await asyncio.to_thread(self._prune_cache, app_name):
                self.logs.append(
                    app_name,
                    "minipaas",
                    "minipaas",
                    "Build cache was over its size limit and was cleared",
                )

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _prune_cache(self, app_name: str) -> bool:
        """Clear the app's build cache when it outgrew `cache_limit` (the next build is cold)."""
        root = self.paths.app_cache(app_name)
        total = 0
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            if total > self.settings.cache_limit:
                shutil.rmtree(root, ignore_errors=True)
                return True
        return False

    async def one_off_spec(self, app_name: str, command: str, *, bare: bool = False) -> DynoSpec:
        """A one-off dyno of the current release (`minipaas run`). `bare`: without the app's
        slug (an empty /app), for the add-on clients (`pg:psql`, `redis:cli`), which are the
        system's programs and run as on Heroku before any push: with the app's config vars (its
        own add-on URLs, never an administrator's), as the app's uid, in the same sandbox."""
        app = await self.store.app(app_name)
        release = await self.store.current_release(app)
        if bare:
            return DynoSpec(
                app=app.name,
                process_type="run",
                release=release.version if release is not None else 0,
                slug=self.paths.empty_slug,
                command=command,
                env=release.config if release is not None else await self.store.config(app),
                uid=self.uid(app),
            )
        if release is None or release.slug is None:
            raise UserError(f"{app_name!r} has no release to run commands in; push first.")
        return self._spec(app, release, "run", command=command)

    async def run_attached(
        self,
        app_name: str,
        command: str,
        who: str,
        stdio: tuple[int, int, int],
        dyno: str | None = None,
        bare: bool = False,
        hung_up: asyncio.Event | None = None,
    ) -> int:
        """`minipaas run` with the caller's terminal (file descriptors passed to the server);
        with `dyno`, `ps:exec`: the command runs inside that running dyno instead; `bare` as
        for `one_off_spec`; `hung_up` set: the client went away (SIGHUP to a command on
        pipes, `Supervisor.run_attached`)."""
        if dyno is not None:
            await self.store.app(app_name)  # NotFound for an app that does not exist

            def entered(name: str) -> None:
                line = f"Started ps:exec on {name} by {who}"
                self.logs.append(app_name, "minipaas", "minipaas", line)

            return await self.supervisor.exec_attached(
                app_name, dyno, command, *stdio, timeout=24 * 3600, started=entered,
                hung_up=hung_up,
            )
        async with self.starting(app_name) as started:
            spec = await self.one_off_spec(app_name, command, bare=bare)
            self.logs.append(app_name, "minipaas", "minipaas", f"{who} ran `{command}`")
            return await self.supervisor.run_attached(
                spec, *stdio, timeout=24 * 3600, started=started, hung_up=hung_up
            )

    async def run(
        self,
        app_name: str,
        command: str,
        on_line: Callable[[str], None],
        *,
        timeout: float = 3600,  # noqa: ASYNC109 - passed on to run_once
        on_start: Callable[[str], None] = lambda _dyno: None,
        bare: bool = False,
    ) -> int:
        """`minipaas run` without the caller's terminal (or `run:detached`): its output goes to
        `on_line`; `on_start` gets the dyno's name once it runs; `bare` as for `one_off_spec`."""
        async with self.starting(app_name) as started:
            spec = await self.one_off_spec(app_name, command, bare=bare)

            def now_running(dyno: str) -> None:
                started(dyno)
                on_start(dyno)

            return await self.supervisor.run_once(
                spec, on_line, timeout=timeout, started=now_running
            )

    async def set_stopped(self, app_name: str, process_type: str, stopped: bool) -> None:
        """`ps:stop TYPE` / `ps:start TYPE`: remembered, the desired count is kept."""
        async with self.lock(app_name):
            app = await self.store.app(app_name)
            current = await self.store.current_release(app)
            if current is None or process_type not in current.process_types:
                listed = ", ".join(sorted(current.process_types)) if current else "none"
                raise UserError(
                    f"No process type {process_type!r} in {app_name!r}; its types are: {listed}."
                )
            await self.store.set_stopped(app, process_type, stopped)
            await self._apply(app, current)
            await self.sync_routes()
            word = "Stopped" if stopped else "Started"
            self.logs.append(app.name, "minipaas", "minipaas", f"{word} {process_type} dynos")

    async def scale(self, app_name: str, counts: dict[str, int]) -> dict[str, int]:
        """Change desired counts and reconcile (never a scripted sequence of starts/stops)."""
        async with self.lock(app_name):
            app = await self.store.app(app_name)
            current = await self.store.current_release(app)
            known = set(current.process_types) - ONE_OFF_TYPES if current else set()
            for ptype, count in counts.items():
                if ptype not in known:
                    listed = ", ".join(sorted(known)) or "none (deploy the app first)"
                    raise UserError(
                        f"No process type {ptype!r} in {app_name!r}; its types are: {listed}."
                    )
                if not 0 <= count <= 100:
                    raise UserError(f"Invalid count {count} for {ptype!r}: use 0 to 100.")
            formation = await self.store.set_formation(app, counts)
            assert current is not None
            await self._apply(app, current)
            await self.sync_routes()
            summary = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
            self.logs.append(app.name, "minipaas", "minipaas", f"Scaled to {summary}")
            return formation

    async def resize(self, app_name: str, changes: dict[str, str | None]) -> dict[str, str]:
        """`ps:type web=standard-2x`: set (or clear, None) process types' sizes, then replace
        their dynos as a restart does (web rolling, zero downtime). No release, as on Heroku.
        Returns every type's size."""
        async with self.lock(app_name):
            app = await self.store.app(app_name)
            current = await self.store.current_release(app)
            known = set(current.process_types) - ONE_OFF_TYPES if current else set()
            total = await asyncio.to_thread(sizes.host_memory)
            wanted: dict[str, str | None] = {}
            for ptype, size in changes.items():
                if ptype not in known:
                    listed = ", ".join(sorted(known)) or "none (deploy the app first)"
                    raise UserError(
                        f"No process type {ptype!r} in {app_name!r}; its types are: {listed}."
                    )
                wanted[ptype] = None if size is None else sizes.parse_size(size, total)
            before = await self.store.sizes(app)
            after = await self.store.set_sizes(app, wanted)
            if after == before:
                return after
            assert current is not None
            try:
                await self._apply(app, current)
            except UserError:  # the new dynos failed: the old ones keep running, as they were
                await self.store.set_sizes(app, {ptype: before.get(ptype) for ptype in wanted})
                raise
            await self.sync_routes()
            summary = ", ".join(
                f"{ptype}={sizes.describe(after.get(ptype))}" for ptype in sorted(wanted)
            )
            self.logs.append(app.name, "minipaas", "minipaas", f"Resized {summary}")
            return after

    async def restart(
        self, app_name: str, process_type: str | None = None, number: int | None = None
    ) -> None:
        """Restart the app's dynos, those of `process_type`, or the one dyno of that type
        numbered `number` (`ps:restart web.2`)."""
        async with self.lock(app_name):
            app = await self.store.app(app_name)
            current = await self.store.current_release(app)
            # The specs as of now: `checks:set` since the dynos started applies to the restart.
            specs = (
                {ptype: spec for ptype, (spec, _) in (await self._groups(app, current)).items()}
                if current is not None and current.slug is not None
                else {}
            )
            await self.supervisor.restart(
                app_name,
                process_type,
                switch=self.sync_routes,
                drain=self.drain,
                number=number,
                specs=specs,
            )
            await self.sync_routes()

    async def destroy(self, app_name: str) -> int:
        """Remove the app's dynos, routes, repo, slugs, cache, logs, add-on databases and
        their backups; the number of backups deleted."""
        async with self.lock(app_name):
            app = await self.store.app(app_name)
            # First: a database that cannot be dropped stops the destroy before anything
            # else is gone (it would otherwise be left behind, owned by no app).
            for addon in await self.store.addons(app):
                await self._discard_addon(app, addon)
                await self.store.remove_addon(app, addon.service)
            # Dropping the database ends a capture under way (its connection is closed).
            removed = await self.backups.discard_app(app.name) if self.backups else 0
            async with self.starting(app.name):  # no cron job or `run` starts meanwhile
                await self.supervisor.stop_app(app.name)
                await self.store.delete_app(app.name)
            await self.sync_routes()
            for path in (
                self.paths.app_slugs(app.name),
                self.paths.app_cache(app.name),
                self.paths.app_buildpacks(app.name),
            ):
                await asyncio.to_thread(self._discard, path)
            with contextlib.suppress(UserError):
                await asyncio.to_thread(self.repos.delete, app.name)
            self.logs.remove_app(app.name)
        self._locks.pop(app_name, None)
        self._starts.pop(app_name, None)
        self._in_background(self.empty_trash())
        return removed

    # -- renaming --------------------------------------------------------------------------

    async def rename(self, old: str, new: str, *, who: str) -> App:
        """`apps:rename NEW -a OLD`: the app keeps everything (its id, so its uid, config,
        releases, formation, domains, drains, add-ons and their data, backups, logs) and its
        trees move to the new name. Its dynos keep running, not restarted, and serve under the
        new name from the moment the routes switch (its one-off dynos are killed; its Redis
        restarts, as its config names its dir). `Conflict` while a push or a backup of it is
        under way; the API waits for a deploy or another change to finish first.

        Crash-safe: the store's row is the commit point, a journal names the rename until
        then (see `minipaas.renaming`), and start-up brings the trees to whichever name the
        row has (`_settle_rename`)."""
        names.new_app_name(new)
        if new == old:
            raise UserError(f"The app is already named {old!r}; give it another name.")
        async with self._renaming, self.lock(old), self.lock(new):
            app = await self.store.app(old)
            if new in {a.name for a in await self.store.apps()}:
                raise Conflict(f"The app {new!r} already exists; choose another name.")
            if not self.ready.is_set() or old in self.waiting:
                raise Conflict(
                    f"The server is still starting the dynos of {old!r}; nothing was renamed: "
                    "try again in a moment."
                )
            async with contextlib.AsyncExitStack() as held:
                if self.backups is not None:  # no capture, restore or reset meanwhile
                    for name in (old, new):
                        await held.enter_async_context(
                            self.backups.exclusive(name, f"rename of {old!r} to {new!r}")
                        )
                await held.enter_async_context(self._no_push(old))
                await held.enter_async_context(self.starting(old))  # no cron job nor `run`
                renamed = await self._rename(app, new, who)
        self._locks.pop(old, None)
        self._starts.pop(old, None)
        if self.backups is not None:
            self.backups.forget(old)
        self._in_background(self.empty_trash())
        return renamed

    @contextlib.asynccontextmanager
    async def _no_push(self, app: str) -> AsyncIterator[None]:
        """Hold the app's push lock (the flock every push takes); `Conflict` if a push holds
        it. Moving the repository keeps it held: a push waits, then finds the new name."""

        def busy() -> None:
            raise Conflict(
                f"{app!r} is receiving a push; nothing was renamed: try again once it is done."
            )

        lock = self.repos.push_lock(app, on_wait=busy)
        await asyncio.to_thread(lock.__enter__)
        try:
            yield
        finally:
            await asyncio.to_thread(lock.__exit__, None, None, None)

    async def _rename(self, app: App, new: str, who: str) -> App:
        old = app.name
        redis = any(a.service == registry.REDIS.name for a in await self.store.addons(app))
        self.logs.append(old, "minipaas", "minipaas", f"Renaming to {new} by {who}")
        await self.supervisor.stop_one_offs(old)
        if redis:
            await self._redis().stop(old)
        journal = renaming.Journal(old, new)
        slugs = (self.paths.app_slugs(old), self.paths.app_slugs(new))
        try:
            trash = self.paths.trash
            await asyncio.to_thread(renaming.discard_leftovers, self.paths, new, trash)
            await asyncio.to_thread(renaming.write_journal, self.paths, journal)
            await asyncio.to_thread(renaming.move_trees, self.paths, old, new, trash)
            if redis:  # its config names its dir
                await asyncio.to_thread(self._redis().own_paths, new)
            # The routes wait (no sync may render the app between its row's new name and its
            # dynos following: its new hostname would answer 503 "no web dynos" meanwhile).
            async with self._routes_lock:
                renamed = await self.store.rename_app(
                    app, new, (f"{slugs[0]}/", f"{slugs[1]}/")
                )  # the commit point
                # Synchronous from here: the dynos, then the logs (lines written under the
                # old name while the trees moved join the others; `logs --tail` and drains
                # follow the new name).
                self.supervisor.rename_app(old, new, slugs)
                self.logs.rename_app(old, new)
                self._aliases[old] = new
        except BaseException:
            self._aliases.pop(old, None)
            # Back to whichever name the row has (the old one, unless the commit happened
            # and only its answer was lost); if even that fails the journal stays, and the
            # next start settles it.
            name = old
            with contextlib.suppress(Exception):
                name = await self._settle_rename(journal) or old
                if name == new:  # committed: the dynos follow (a no-op if they did)
                    self.supervisor.rename_app(old, new, slugs)
            with contextlib.suppress(Exception):
                await self._bring_up(await self.store.app(name), redis)
            raise
        await asyncio.to_thread(renaming.clear_journal, self.paths)
        self.logs.append(new, "minipaas", "minipaas", f"Renamed from {old} to {new} by {who}")
        await self._switch_names(old, new)
        await self._bring_up(renamed, redis)
        return renamed

    async def _switch_names(self, old: str, new: str) -> None:
        """The routes, from the old name to the new, without a moment when neither serves:
        first both (the old one as an alias), until Caddy no longer uses an answer from before
        about the new name (it asked about it while it was no app if someone tried it: for up
        to a refresh that answer sends requests to the resolver's own 404/503); then the new
        one alone (the old one answers 404 once Caddy's answer about it expires)."""
        try:
            await self.sync_routes()
            await self.router.settle([new])
        finally:
            self._aliases.pop(old, None)

    async def _bring_up(self, app: App, redis: bool) -> None:
        """After a rename (or one undone): the routes follow the app's name at once (its old
        hostname answers 404 from now on, its dynos serve the new one), its Redis starts
        again, and its dynos are reconciled (nothing to do unless some were missing)."""
        await self.sync_routes()
        if redis:
            try:
                await self._redis().start(app.name)
            except Exception as exc:  # the dynos run anyway; the log says why
                self.logs.append(app.name, "minipaas", "minipaas", f"Redis did not start: {exc}")
        try:
            release, groups = await self._current_groups(app)
            switch = self._switch(app, release) if release else None
            await self.supervisor.apply(app.name, groups, switch=switch, drain=self.drain)
        except UserError as exc:
            self.logs.append(app.name, "minipaas", "minipaas", f"Start failed: {exc}")
        await self.sync_routes()

    async def _settle_rename(self, journal: renaming.Journal) -> str | None:
        """Bring the trees of a rename under way (or cut short) to the name the app's row has:
        the new one if the rename committed, else the old one; that name (None: neither
        exists, nothing to do). Then the journal goes."""
        names_now = {a.name for a in await self.store.apps()}
        if journal.new in names_now:
            src, dst = journal.old, journal.new
        elif journal.old in names_now:
            src, dst = journal.new, journal.old
        else:
            await asyncio.to_thread(renaming.clear_journal, self.paths)
            return None
        await asyncio.to_thread(renaming.move_trees, self.paths, src, dst, self.paths.trash)
        slugs = (self.paths.app_slugs(src), self.paths.app_slugs(dst))
        await asyncio.to_thread(move_homes, self.supervisor.run_dir, src, dst, slugs)
        self.logs.rename_app(src, dst)
        if self.redis is not None:
            await asyncio.to_thread(self.redis.own_paths, dst)
        await asyncio.to_thread(renaming.clear_journal, self.paths)
        return dst

    async def _finish_rename(self) -> None:
        """Server start: a rename a killed server left under way is finished or undone."""
        journal = await asyncio.to_thread(renaming.read_journal, self.paths)
        if journal is None:
            return
        name = await self._settle_rename(journal)
        if name is not None:
            done = "finished" if name == journal.new else "undone (the app keeps its name)"
            self.logs.append(
                name, "minipaas", "minipaas",
                f"The rename of {journal.old} to {journal.new} that the stopped server left "
                f"under way was {done}",
            )

    # -- add-ons ---------------------------------------------------------------------------

    def _cluster(self) -> Cluster:
        if self.postgres is None:
            raise UserError("This server runs without the PostgreSQL add-on.")
        return self.postgres

    def _redis(self) -> RedisServers:
        if self.redis is None:
            raise UserError("This server runs without the Redis add-on.")
        return self.redis

    async def addon(self, app_name: str, service: str = SERVICE) -> Addon:
        """The app's add-on of `service`; `NotFound` saying how to create one."""
        app = await self.store.app(app_name)
        for addon in await self.store.addons(app):
            if addon.service == service:
                return addon
        raise NotFound(
            f"The app {app_name!r} has no {service} add-on; create one with "
            f"`minipaas addons:create {service} -a {app_name}`."
        )

    async def create_addon(self, app_name: str, *, who: str, service: str = SERVICE) -> Addon:
        """The app's own database (or Redis), its URL set as DATABASE_URL (REDIS_URL): a config
        release, dynos restarted with it. Refused if the app has one or sets the var itself."""
        kind = registry.by_name(service)
        if kind is registry.REDIS:
            self._redis()
        else:
            self._cluster()  # this server runs the add-on at all (UserError if not)
        app = await self.store.app(app_name)
        if any(a.service == service for a in await self.store.addons(app)):
            raise Conflict(
                f"The app {app_name!r} already has {service}; see `minipaas addons -a {app_name}`."
            )
        var = kind.config_var
        if var in await self.store.config(app):
            raise Conflict(
                f"The app {app_name!r} already sets {var} itself; nothing was changed "
                f"(unset it with `minipaas config:unset {var} -a {app_name}` first)."
            )
        addon, url = await self._provision(app, service)
        try:
            await self.set_config(app_name, {var: url}, who=who)
        except BaseException:
            await self._unprovision(app, addon)
            raise
        self.logs.append(
            app.name, "minipaas", "minipaas", f"{who} added {service} ({addon.name}) as {var}",
        )
        return addon

    async def _provision(self, app: App, service: str = SERVICE) -> tuple[Addon, str]:
        """A database and role of the app's own (or its own Redis), recorded as its add-on;
        the add-on and its URL (the caller sets the config var). Nothing is left of it if
        this fails."""
        if service == registry.REDIS.name:
            redis = self._redis()
            url = await redis.create(app.name)
            try:
                addon = await self.store.add_addon(
                    app, service, f"redis-{app.name}-{secrets.token_hex(3)}", "REDIS_URL"
                )
            except BaseException:
                with contextlib.suppress(Exception):
                    await redis.destroy(app.name)
                raise
            return addon, url
        cluster = self._cluster()
        await cluster.ensure()
        name = database_name(app.name)
        password = secrets.token_hex(24)
        await cluster.create_database(name, password)
        try:
            addon = await self.store.add_addon(app, SERVICE, name, "DATABASE_URL")
        except BaseException:
            with contextlib.suppress(Exception):
                await cluster.drop_database(name)
            raise
        return addon, cluster.url(name, password)

    async def _discard_addon(self, app: App, addon: Addon) -> None:
        """Delete the add-on's data: drop the database and role, or stop the app's Redis and
        delete its dir."""
        if addon.service == registry.REDIS.name:
            await self._redis().destroy(app.name)
        else:
            await self._cluster().drop_database(addon.name)

    async def _unprovision(self, app: App, addon: Addon) -> None:
        await self.store.remove_addon(app, addon.service)
        with contextlib.suppress(Exception):
            await self._discard_addon(app, addon)

    async def _app_json_addons(
        self, app: App, slug: Path, config: dict[str, str], log: Log
    ) -> dict[str, str]:
        """A new app's app.json `addons`, as Heroku's app setup provisions them: the config
        vars they add (DATABASE_URL, REDIS_URL). An add-on minipaas does not offer is skipped,
        said in the build log (app.json files list monitoring services and the like); one it
        offers but cannot provide (PostgreSQL or Redis not installed) fails the build, naming
        why."""
        text = await asyncio.to_thread(read_app_file, slug, "app.json")
        if text is None:
            return {}
        added: dict[str, str] = {}
        for spec in parse_app_json(text).addons:
            try:
                kind, plan = registry.service(spec.plan)
            except UserError:
                log(f" !     app.json asks for the add-on {spec.plan!r}, which minipaas does "
                    f"not offer: skipped (minipaas offers "
                    f"{', '.join(s.name for s in registry.SERVICES)})")
                continue
            service, var = kind.name, kind.config_var
            if var in added:  # app.json asks for a second one (`"as": "OTHER_DB"`)
                log(f" !     app.json asks for {service} again"
                    f"{f' (as {spec.attach_as!r})' if spec.attach_as else ''}: an app has "
                    f"one {service} add-on here, its {var}; skipped")
                continue
            if any(a.service == service for a in await self.store.addons(app)):
                continue  # a first deploy tried again: provisioned the first time
            if var in config or var in added:
                log(f" !     app.json asks for {service}, but {var} is set already: "
                    "not provisioned")
                continue
            attach = var.removesuffix("_URL")
            if spec.attach_as not in (None, attach):
                log(f" !     app.json attaches {service} as {spec.attach_as!r}: minipaas "
                    f"attaches it as {attach} ({var})")
            try:
                addon, url = await self._provision(app, service)
            except UserError as exc:
                raise UserError(f"app.json asks for {service}, which could not be provisioned: "
                                f"{exc}") from None
            added[var] = url
            ignored = f"; the plan {plan!r} is ignored" if plan else ""
            log(f"-----> Provisioned {service} ({addon.name}) as {var}, as app.json "
                f"asks{ignored}")
            self.logs.append(
                app.name, "minipaas", "minipaas",
                f"app.json added {service} ({addon.name}) as {var}",
            )
        return added

    async def destroy_addon(
        self, app_name: str, *, who: str, service: str = SERVICE
    ) -> tuple[Addon, int]:
        """Unset the add-on's config var (a config release), then delete its data (drop the
        database and its role and delete its backups; or stop the app's Redis and delete its
        dir); the add-on and the number of backups deleted."""
        if service == registry.REDIS.name:
            self._redis()
        else:
            self._cluster()
        addon = await self.addon(app_name, service)
        app = await self.store.app(app_name)
        await self.set_config(app_name, {addon.config_var: None}, who=who)
        await self._discard_addon(app, addon)
        removed = 0
        if service == SERVICE and self.backups:
            removed = await self.backups.discard_app(app.name)
        await self.store.remove_addon(app, addon.service)
        self.logs.append(
            app.name, "minipaas", "minipaas", f"{who} destroyed {service} ({addon.name})"
        )
        return addon, removed

    async def addon_info(self, app_name: str) -> tuple[Addon, DatabaseInfo]:
        addon = await self.addon(app_name)
        return addon, await self._cluster().info(addon.name)

    async def redis_info(self, app_name: str) -> tuple[Addon, RedisInfo]:
        addon = await self.addon(app_name, registry.REDIS.name)
        url = (await self.store.config(await self.store.app(app_name))).get(addon.config_var)
        if url is None:
            raise UserError(f"The app {app_name!r} has no {addon.config_var}; its add-on's "
                            "config is damaged.")
        return addon, await self._redis().info(app_name, url)

    async def redis_maxmemory(self, app_name: str, policy: str, *, who: str) -> tuple[Addon, str]:
        """`redis:maxmemory --policy`: the app's Redis evicts keys by `policy` from now on
        (without a restart; kept across restarts); the add-on and the policy. An unknown
        policy is refused before the add-on is looked for."""
        await self.store.app(app_name)
        policy = check_policy(policy)
        addon = await self.addon(app_name, registry.REDIS.name)
        restarted = await self._redis().set_policy(app_name, policy)
        self.logs.append(
            app_name, "minipaas", "minipaas",
            f"{who} set the maxmemory policy of {addon.name} to {policy}"
            + (" (its redis-server restarted to take it)" if restarted else ""),
        )
        return addon, policy

    async def _addon_url(self, app_name: str, addon: Addon) -> str:
        url = (await self.store.config(await self.store.app(app_name))).get(addon.config_var)
        if url is None:
            raise UserError(f"The app {app_name!r} has no {addon.config_var}; its add-on's "
                            "config is damaged.")
        return url

    async def addon_credentials(self, app_name: str, service: str) -> tuple[Addon, str]:
        """`redis:credentials` (and the same for the database): the add-on and its URL."""
        addon = await self.addon(app_name, service)
        return addon, await self._addon_url(app_name, addon)

    async def rotate_credentials(self, app_name: str, service: str, *, who: str) -> Addon:
        """`pg:credentials:rotate` and `redis:credentials --reset`: a new password for the
        app's role (its sessions ended) or for its Redis (restarted: its clients
        disconnected), then the new URL by a config release ("Rotate DATABASE credentials"),
        dynos restarted with it. If that release fails, the old password is put back: the
        config still holds the old URL."""
        kind = registry.by_name(service)
        if kind is registry.REDIS:
            self._redis()
        else:
            self._cluster()
        addon = await self.addon(app_name, service)
        attachment = addon.config_var.removesuffix("_URL")

        async def set_password(url_of: str | None) -> str:
            """The new password (None), or the one in `url_of`, in force; the URL."""
            if kind is registry.REDIS:
                password = password_of(url_of) if url_of else secrets.token_hex(32)
                return await self._redis().set_password(app_name, password)
            cluster = self._cluster()
            if url_of is None:
                password = secrets.token_hex(24)
            else:
                password = url_of.rsplit("@", 1)[0].rsplit(":", 1)[1]
            await cluster.set_password(addon.name, password)
            return cluster.url(addon.name, password)

        # The app's lock from the new password to its release: a deploy or config change
        # that took the lock in between had the dynos run on the old URL, which no longer
        # opened the database, for as long as it lasted (a build: minutes); an addons:destroy
        # unset the URL and dropped the database, and the new URL came back as a config var
        # of no add-on. (Two rotations at once queue on it too: never the password of one
        # with the URL of the other.)
        async with self.lock(app_name):
            old = await self._addon_url(app_name, addon)
            new = await set_password(None)
            try:
                await self.set_config(app_name, {addon.config_var: new}, who=who,
                                      description=f"Rotate {attachment} credentials",
                                      locked=True)
            except BaseException:
                # The password the config holds (the old one if the release did not happen)
                # is the one that must work.
                with contextlib.suppress(Exception):
                    if await self._addon_url(app_name, addon) == old:
                        await set_password(old)
                raise
        self.logs.append(
            app_name, "minipaas", "minipaas",
            f"{who} rotated the credentials of {service} ({addon.name}) in {addon.config_var}",
        )
        return addon

    async def database_activity(
        self, app_name: str, *, idle: bool = False
    ) -> tuple[Addon, list[dict[str, Any]]]:
        """`pg:ps`: the queries running on the app's database now (`idle`: and its idle
        connections, `pg:ps --verbose`)."""
        addon = await self.addon(app_name)
        return addon, await self._cluster().activity(addon.name, idle=idle)

    async def kill_backend(self, app_name: str, pid: int, *, force: bool) -> Addon:
        """`pg:kill`: cancel (terminate with `force`) backend `pid` of the app's database;
        `NotFound` naming the pid if it is no connection to this app's database (another
        app's queries are never touched)."""
        addon = await self.addon(app_name)
        if not await self._cluster().signal_backend(addon.name, pid, force=force):
            raise NotFound(
                f"The pid {pid} is not a connection to the database of {app_name!r}; see "
                f"`minipaas pg:ps -a {app_name}`."
            )
        return addon

    async def kill_all_backends(self, app_name: str) -> tuple[Addon, int]:
        """`pg:killall`: end every connection to the app's database; how many."""
        addon = await self.addon(app_name)
        return addon, await self._cluster().terminate_all(addon.name)

    async def start_addons(self) -> None:
        """Server start: adopt the cluster and the Redis instances left running, or start
        those some app has (a failure is logged in those apps' logs; their dynos start
        anyway)."""
        addons = await self.store.addons()
        if self.redis is not None:
            for addon in addons:
                if addon.service != registry.REDIS.name:
                    continue
                try:
                    await self.redis.start(addon.app)
                except Exception as exc:  # the app starts anyway; its log says why
                    self.logs.append(
                        addon.app, "minipaas", "minipaas", f"Redis did not start: {exc}"
                    )
        if self.postgres is None:
            return
        if await asyncio.to_thread(self.postgres.adopt):
            return
        databases = [a for a in addons if a.service == SERVICE]
        if not databases:
            return
        try:
            await self.postgres.start()
        except Exception as exc:  # the server and the apps start anyway; the apps' logs say why
            for app in sorted({a.app for a in databases}):
                self.logs.append(app, "minipaas", "minipaas", f"PostgreSQL did not start: {exc}")

    # -- start-up and routes ---------------------------------------------------------------

    async def readopt_all(self) -> None:
        """Server start, first half: take back every app's dynos that are still running.

        After a restart of minipaas the dynos kept running (and Caddy kept serving them); this
        re-attaches to them, which is quick, then sets `ready`, so `ps` never shows a running
        app without its dynos. After a reboot none are left and `start_missing` starts them.
        """
        self.waiting = set()
        for app in await self.store.apps():
            try:
                async with self.lock(app.name):
                    await self._readopt(app)
            except UserError as exc:
                self.logs.append(app.name, "minipaas", "minipaas", f"Start failed: {exc}")
                continue
            self.waiting.add(app.name)
        self.ready.set()

    async def end_interrupted(self) -> None:
        """Server start, before the API answers: what a killed or crashed server left half-done
        ends here. Its builds fail (their half-written slugs and scratch dirs go), its releases
        that never went live fail and the app's config vars are those of the release serving
        again, as when a deploy, `config:set` or rollback fails. (Their build and one-off
        processes died with the server: see `SandboxJob.die_with_parent`.) A rename under way
        is finished or undone first: the app's trees must match its row before leftovers go."""
        await self._finish_rename()
        ended = await self.store.end_interrupted(f" !     {INTERRUPTED}")
        for app_name, kind, number in ended:
            if kind == "build":
                await asyncio.to_thread(self._discard, self.paths.slug(app_name, f"b{number}"))
                text = f"Build {number} failed: {INTERRUPTED}"
            else:
                text = await self._restore_config(app_name, number)
            self.logs.append(app_name, "minipaas", "minipaas", text)
        run = self.paths.run
        scratches = await asyncio.to_thread(
            lambda: list(run.glob("build-*")) if run.is_dir() else []
        )
        for scratch in scratches:  # no build runs yet: every one is left over
            await asyncio.to_thread(self._discard, scratch)
        await self._converge_app_dirs()

    async def _converge_app_dirs(self) -> None:
        """The apps' trees on disk follow the apps table. A server killed inside `destroy`
        (after the app's row went, before its trees) left its repository, slugs, cache and
        logs behind: the name could never be created again ("A repository for app ... already
        exists") and would have inherited the old logs. One killed inside `apps:create` left
        an app without a repository, which no push could reach."""
        apps = {app.name for app in await self.store.apps()}
        for path in await asyncio.to_thread(self._leftover_trees, apps):
            await asyncio.to_thread(self._discard, path)
        for name in sorted(apps):
            if not await asyncio.to_thread(self.repos.exists, name):
                await asyncio.to_thread(self.repos.create, name)

    def _leftover_trees(self, apps: set[str]) -> list[Path]:
        """The per-app trees under the data dir whose app is not in `apps`."""
        found = []
        for root, suffix in (
            (self.paths.repos, ".git"),
            (self.paths.slugs, ""),
            (self.paths.cache, ""),
            (self.paths.logs, ""),
        ):
            for entry in root.iterdir() if root.is_dir() else []:
                name = entry.name.removesuffix(suffix) if suffix else entry.name
                if not entry.is_dir() or entry.is_symlink() or name in apps:
                    continue
                if suffix and not entry.name.endswith(suffix):
                    continue
                try:
                    names.app_name(name)  # only an app's own tree (not cache/_buildpacks)
                except UserError:
                    continue
                found.append(entry)
        return found

    async def _restore_config(self, app_name: str, version: int) -> str:
        """v`version` never went live: the config vars go back to the serving release's."""
        app = await self.store.app(app_name)
        current = await self.store.current_release(app)
        if current is None:
            return f"Release v{version} failed: the server stopped before it went live"
        before = await self.store.config(app)
        if before != current.config:
            gone = dict.fromkeys(k for k in before if k not in current.config)
            await self.store.update_config(app, {**gone, **current.config})
        return (
            f"Release v{version} failed: the server stopped before it went live; "
            f"v{current.version} keeps serving"
        )

    async def start_missing(self) -> None:
        """Server start, second half: start the dynos every app's formation lacks (all of them
        after a reboot), STARTS_PER_CORE apps per CPU core this process may use side by side."""
        at_once = asyncio.Semaphore(STARTS_PER_CORE * len(os.sched_getaffinity(0)))

        async def start(name: str) -> None:
            try:
                async with at_once:
                    await self._start_missing(name)
            finally:
                self.waiting.discard(name)

        # (each leaves `waiting` once started; one destroyed meanwhile is skipped)
        await asyncio.gather(*(start(name) for name in sorted(self.waiting)))
        await self.sync_routes()
        self._in_background(self.empty_trash())  # what a stopped server left behind

    async def _start_missing(self, name: str) -> None:
        """Start-up's second half for one app: start the dynos its formation lacks."""
        try:
            async with self.lock(name):
                try:  # a push may have landed meanwhile, or a destroy
                    app = await self.store.app(name)
                except NotFound:
                    return
                release, groups = await self._current_groups(app)
                switch = self._switch(app, release) if release else None
                await self.supervisor.apply(app.name, groups, switch=switch, drain=self.drain)
        except UserError as exc:
            self.logs.append(name, "minipaas", "minipaas", f"Start failed: {exc}")

    async def _current_groups(
        self, app: App
    ) -> tuple[Release | None, dict[str, tuple[DynoSpec, int]]]:
        """The app's current release and its desired dynos (none before code was deployed)."""
        release = await self.store.current_release(app)
        if release is None or release.slug is None:
            return release, {}
        return release, await self._groups(app, release)

    async def _readopt(self, app: App) -> None:
        _release, groups = await self._current_groups(app)
        records = [
            DynoRecord(app=app.name, **r)
            for r in await self.store.dyno_records(app)
            if r["pid"] is not None and r["start_ticks"] is not None
        ]
        adopted = await self.supervisor.adopt(app.name, records, groups)
        if adopted:
            self.logs.append(
                app.name,
                "minipaas",
                "minipaas",
                f"Re-adopted running dynos: {', '.join(adopted)}",
            )

    # -- supervisor callbacks --------------------------------------------------------------

    async def settle(self) -> None:
        """Wait for the writes the supervisor callbacks started (before the store closes)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    def record_dynos(self, app: str, records: list[DynoRecord]) -> None:
        """Supervisor callback: persist the app's running dynos (for adoption after restarts)."""
        rows = [{k: getattr(r, k) for k in Store.DYNO_FIELDS} for r in records]
        self._in_background(self.store.replace_dynos(app, rows))

    def dyno_event(self, event: DynoEvent) -> None:
        """Supervisor callback: a crash-looping fresh deploy is rolled back automatically."""
        if event.kind == "crashed" and event.process_type == "web":
            self._in_background(self._maybe_auto_rollback(event))

    async def _maybe_auto_rollback(self, event: DynoEvent) -> None:
        try:
            app = await self.store.app(event.app)
        except UserError:
            return
        current = await self.store.current_release(app)
        if (
            current is None
            or current.version != event.release
            or not current.description.startswith("Deploy ")
            or time.time() - current.created_at > self.settings.auto_rollback_window
        ):
            return
        message = (
            f"Web dynos of v{current.version} are crash-looping ({event.detail}); "
            "rolling back automatically"
        )
        self.logs.append(app.name, "minipaas", "minipaas", message)
        try:
            release = await self.rollback(
                app.name, None, who="minipaas (auto-rollback)", only_from=current.version
            )
        except UserError as exc:
            self.logs.append(app.name, "minipaas", "minipaas", f"Automatic rollback failed: {exc}")
            return
        self.logs.append(
            app.name,
            "minipaas",
            "minipaas",
            f"Rolled back automatically: {release.description} is v{release.version}",
        )

    async def router_state(self) -> RouterState:
        routes = []
        unreleased = set()
        domains = await self.store.domains()
        for app in await self.store.apps():
            try:
                release = await self.store.current_release(app)
            except NotFound:
                continue  # destroyed meanwhile
            if release is None:
                unreleased.add(app.name)
            hosts = [self.settings.app_host(app.name)]
            hosts += [d.hostname for d in domains if d.app == app.name]
            routes.append(
                AppRoute(
                    name=app.name,
                    hosts=tuple(hosts),
                    upstreams=tuple(self.supervisor.web_upstreams(app.name)),
                    static_root=release.static_root if release else None,
                    maintenance=app.maintenance,
                )
            )
        for old, new in self._aliases.items():  # a rename switching: see `_switch_names`
            routes += [
                replace(r, name=old, hosts=(self.settings.app_host(old),))
                for r in routes
                if r.name == new
            ]
        self.unreleased = frozenset(unreleased)
        return self.router.state(
            domain=self.settings.domain,
            http_port=self.settings.http_port,
            https_port=self.settings.https_port,
            listen_host=self.settings.listen_host,
            control_upstream=self._api_upstream(),
            apps=tuple(routes),
            acme_email=self.settings.acme_email,
            acme_ca=self.settings.acme_ca,
        )

    async def sync_routes(self) -> None:
        """Render the whole Caddy config from state and apply it (a no-op when unchanged)."""
        async with self._routes_lock:
            state = await self.router_state()
            if self._hosts is not None:  # (an alias's hostname: the app's lines and metrics)
                self._hosts.update((self._aliases.get(a.name, a.name), a.hosts) for a in state.apps)
            await self.router.apply(state)

    def elapsed(self, since: float) -> str:
        return f"{time.monotonic() - since:.1f}s"
