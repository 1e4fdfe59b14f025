"""The composition root: builds every part of `minipaas server`, starts and stops them in order.

Nothing else constructs parts or holds them together. Start order: data dir → store → router
(Caddy) → API (unix socket + loopback TCP) → the add-on PostgreSQL cluster (if any app has
a database) and Redis instances → dynos of every app → routes. The process takes
SIGTERM/SIGINT itself (uvicorn's own handling would exit before our cleanup runs) and stops in
reverse order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import grp
import os
import queue
import secrets
import signal
import socket
import sys
import traceback
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from minipaas import sshkeys
from minipaas.api import create_app
from minipaas.api.app import ApiContext
from minipaas.api.attach import AttachServer
from minipaas.api.auth import LocalMarker, Tokens, private_unix_socket
from minipaas.backups import Backups
from minipaas.build import Builder
from minipaas.deploy import Deployer
from minipaas.drains import Drains, DrainSpec, parse_drain_url
from minipaas.errors import UserError
from minipaas.git import Gate, Repos
from minipaas.git.http import make_git_app
from minipaas.logs import LogStore
from minipaas.metrics import HostMap, Metrics
from minipaas.postgres import Cluster
from minipaas.redis import RedisServers
from minipaas.router import Router
from minipaas.router.accesslog import RouterView
from minipaas.router.accesslog import parse as parse_access
from minipaas.router.accesslog import render as render_access
from minipaas.scheduler import CronScheduler, wall_clock
from minipaas.settings import Settings
from minipaas.store import Store
from minipaas.store.metrics import MetricsStore
from minipaas.supervisor import Supervisor

Progress = Callable[[str], None]
#: The server's (and so Caddy's) OOM score adjustment as root: see `shield_from_oom_killer`.
OOM_SCORE_ADJ = -500


class _Server(uvicorn.Server):
    """uvicorn without its signal handling: we own shutdown (see module docstring)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        # uvicorn wakes ten times a second to look for shutdown; once a second is plenty here
        # (the Date header keeps its one-second resolution) and keeps an idle server idle.
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000
            await asyncio.sleep(1.0)


def _tcp_socket(port: int) -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it every answer on a kept-alive connection (Caddy's, a remote CLI's) waits ~40 ms
    # for the peer's delayed ACK (Nagle) before its body goes out.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def make_gate(loop: asyncio.AbstractEventLoop, deployer: Deployer, who: str) -> Gate:
    """A git push gate for pushes received in this process (smart HTTP).

    It runs in a git worker thread: the deploy runs on the event loop and its lines cross back
    through a queue, so sideband writes happen on the worker thread only.
    """

    def gate(app: str, sha: str, progress: Progress, *, ref: str, old: str | None) -> str | None:
        lines: queue.Queue[str | None] = queue.Queue()
        future = asyncio.run_coroutine_threadsafe(
            deployer.deploy(app, sha, lines.put, who=who, ref=ref, old=old), loop
        )
        future.add_done_callback(lambda _: lines.put(None))
        while (line := lines.get()) is not None:
            progress(line)
        try:
            future.result()
        except concurrent.futures.CancelledError:  # the server is stopping
            progress(" !     The minipaas server stopped during this deploy; push again later.")
            return "deploy failed"
        except UserError as exc:
            progress(f" !     {exc}")
            return "deploy failed"
        except Exception as exc:
            progress(f" !     Internal error while deploying: {exc!r}")
            return "internal error"
        return None

    return gate


class MinipaasServer:
    """All parts of one running control plane."""

    def __init__(
        self, settings: Settings, release_memory: Callable[[], None] = lambda: None
    ) -> None:
        self.settings = settings
        #: Gives freed memory back to the OS; called after bursts of work (pushes, deploys).
        self.release_memory = release_memory
        self.paths = settings.paths
        self.store = Store(self.paths.db)
        self.logs = LogStore(self.paths.logs)
        self.repos = Repos(self.paths.repos)
        self.router = Router(caddy_bin=None, workdir=self.paths.caddy)
        self.supervisor = Supervisor(
            run_dir=self.paths.run / "dynos",
            logs=self.logs,
            on_change=self._dynos_changed,
            on_records=lambda app, records: self.deployer.record_dynos(app, records),
            on_event=lambda event: self.deployer.dyno_event(event),
            stop_grace=settings.stop_grace,
            ready_timeout=settings.boot_timeout,
        )
        self.builder = Builder(external_dir=self.paths.buildpacks)
        self.metrics_store = MetricsStore(self.store)
        self.hosts = HostMap(settings.domain)
        self.metrics = Metrics(
            self.metrics_store,
            settings.metrics_interval,
            dynos=lambda: [
                (d.app, d.name, d.pid)
                for d in self.supervisor.status()
                if d.pid is not None and d.state in ("starting", "up", "stopping")
            ],
            access_log=self.router.access_log,
            host_to_app=self.hosts,
            data_dir=self.paths.root,
            on_access_lines=self._router_log,
            # Memory quotas (R14/R15): the sampler measures, the supervisor acts on its dynos.
            on_dynos=lambda samples: self.supervisor.check_memory(
                (s.app, s.pid, s.rss) for s in samples
            ),
        )
        self.tokens = Tokens()
        #: The PostgreSQL add-on's cluster: created on the first `addons:create`.
        self.postgres = Cluster(self.paths.root / "postgres")
        #: The Redis add-on's servers, one per app that has it.
        self.redis = RedisServers(self.paths.root / "redis")
        self.backups = Backups(
            store=self.store, cluster=self.postgres, paths=self.paths, logs=self.logs
        )
        self.deployer = Deployer(
            settings=settings,
            store=self.store,
            repos=self.repos,
            builder=self.builder,
            supervisor=self.supervisor,
            router=self.router,
            logs=self.logs,
            # Not the TCP port: see Paths.proxy_socket.
            api_upstream=lambda: f"unix/{self.paths.proxy_socket}",
            hosts=self.hosts,
            postgres=self.postgres,
            backups=self.backups,
            redis=self.redis,
        )
        self.drains = Drains(self.logs, self._drain_specs)
        self._stop = asyncio.Event()
        self._stop_everything = False
        self._gid: int | None = None
        self._route_sync: asyncio.Task[None] | None = None
        self._route_dirty = False

    @property
    def token_file(self) -> Path:
        return self.paths.root / "admin-token"

    def admin_token(self) -> str:
        return self.token_file.read_text().strip()

    async def _ensure_admin_token(self) -> None:
        if not await self.store.has_token("admin") or not self.token_file.exists():
            token = secrets.token_urlsafe(32)
            if await self.store.has_token("admin"):
                name = f"admin-{secrets.token_hex(3)}"
            else:
                name = "admin"
            await self.store.add_token(name, token)
            fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(token + "\n")
        for token_hash in await self.store.token_hashes():
            self.tokens.add_hash(token_hash)

    async def sync_keys(self) -> None:
        keys = [(k.name, k.fingerprint, k.public_key) for k in await self.store.keys()]
        text = sshkeys.render_authorized_keys(keys, self.settings.minipaas_bin, self.paths.root)
        await asyncio.to_thread(
            sshkeys.write_authorized_keys, self.settings.authorized_keys_file, text
        )

    async def _drain_specs(self) -> list[DrainSpec]:
        specs = []
        for drain in await self.store.drains():
            try:
                url = parse_drain_url(drain.url)
            except UserError:  # stored before a stricter rule: not used, still listed
                continue
            specs.append(DrainSpec(drain.app, drain.token, url))
        return specs

    def _router_log(self, lines: list[bytes]) -> None:
        """Caddy's access log as each app's `router` log source (one write per app)."""
        by_app: dict[str, list[tuple[datetime, str]]] = {}
        views: dict[str, RouterView] = {}
        for raw in lines:
            entry = parse_access(raw)
            app = self.hosts(entry.host) if entry is not None else None
            if entry is not None and app is not None:
                if app not in views:
                    views[app] = self._router_view(app)
                line = render_access(entry, views[app])
                by_app.setdefault(app, []).append((line.ts, line.text))
        for app, entries in by_app.items():
            self.logs.append_timed(app, "router", "router", entries)

    def _router_view(self, app: str) -> RouterView:
        """The app as its router log lines see it: web dyno names by port, crashed or not,
        deployed or not (as of now: within a second of the requests)."""
        web = [d for d in self.supervisor.status(app) if d.process_type == "web"]
        return RouterView(
            dynos={d.port: d.name for d in web if d.port is not None},
            resolver_port=self.router.resolver_port,
            crashed=bool(web) and all(d.state == "crashed" for d in web),
            released=app not in self.deployer.unreleased,
        )

    def _dynos_changed(self, app: str) -> None:
        """Supervisor callback: coalesce bursts of dyno changes into one route sync."""
        if self._stop.is_set():
            return  # shutting down: the router may be gone already
        self._route_dirty = True
        if self._route_sync is None or self._route_sync.done():
            self._route_sync = asyncio.get_running_loop().create_task(self._sync_routes_soon())

    async def _sync_routes_soon(self) -> None:
        while self._route_dirty:
            self._route_dirty = False
            try:
                await self.deployer.sync_routes()
            except Exception as exc:  # logged, retried on the next change
                print(f"minipaas: route sync failed: {exc}", file=sys.stderr, flush=True)
        # Dynos change at the end of every deploy, scale and restart: a burst of work is over.
        self.release_memory()

    def request_stop(self, *, everything: bool = False) -> None:
        """Stop the server; with `everything`, its dynos and Caddy as well."""
        self._stop_everything = self._stop_everything or everything
        self._stop.set()

    async def run(self, ready: Callable[[], None] | None = None) -> None:
        self.paths.ensure()
        gid = None
        if self.settings.ssh_user:
            # The SSH user's forced commands write pushed objects into the repos and talk to
            # the API socket: its group gets both (its members hold authorized keys, which
            # grant the whole CLI anyway). Dynos run as app uids outside that group.
            gid = grp.getgrnam(self.settings.ssh_user).gr_gid
            os.chown(self.paths.repos, 0, gid)
            # Group-writable on purpose, setgid; nothing for others: app uids clone buildpacks
            # on the host (git, as the uid) and must not reach another app's source.
            os.chmod(self.paths.repos, 0o2770)  # noqa: S103
        self._gid = gid
        loop = asyncio.get_running_loop()
        # SIGTERM/SIGINT/SIGUSR1 stop the server only: dynos keep running and Caddy keeps
        # serving (restarts, upgrades); `minipaas down` stops everything.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            loop.add_signal_handler(sig, self._stop.set)
        for sig in (signal.SIGHUP, signal.SIGQUIT):
            # Started with these ignored (`nohup`, install.sh's fallback; a script's `&`): the
            # server goes on ignoring them, but through a handler, which exec resets, so that
            # dynos, one-offs and builds start with the default. Inherited as ignored, a dyno's
            # `trap … HUP` was void and a hung-up `run` never got its SIGHUP.
            if signal.getsignal(sig) == signal.SIG_IGN:
                loop.add_signal_handler(sig, _ignored)
        await self.store.open()
        try:
            await self._ensure_admin_token()
            await self.deployer.end_interrupted()  # before any request can start a change
            await self.sync_keys()
            await self.router.start()
            await self._serve(loop, ready)
        finally:
            if self._stop_everything:
                # `minipaas down`: dynos and Caddy go too (uninstall, tests).
                await self.supervisor.stop_all()
                await self.postgres.stop()  # after the dynos, its clients
                await self.redis.stop_all()  # likewise
                await self.router.stop()
            else:
                # A restart or upgrade of minipaas: dynos keep running and Caddy keeps
                # serving them; the next start re-adopts them.
                await self.supervisor.detach()
                self.postgres.detach()
                self.redis.detach()
                await self.router.aclose()
            if self._route_sync is not None:
                await asyncio.gather(self._route_sync, return_exceptions=True)
            await self.deployer.settle()
            await self.metrics_store.close()
            await self.store.close()
            (self.paths.root / "minipaas.pid").unlink(missing_ok=True)

    async def _serve(
        self, loop: asyncio.AbstractEventLoop, ready: Callable[[], None] | None
    ) -> None:
        gate = make_gate(loop, self.deployer, who="git (https)")

        def gate_then_release(
            app: str, sha: str, progress: Progress, *, ref: str, old: str | None
        ) -> str | None:
            try:
                return gate(app, sha, progress, ref=ref, old=old)
            finally:
                self.release_memory()  # the pack's buffers, the build's output

        git_app = make_git_app(
            self.repos,
            gate_then_release,
            lambda _user, password: self.tokens.valid(password),
        )
        ctx = ApiContext(
            settings=self.settings,
            store=self.store,
            deployer=self.deployer,
            supervisor=self.supervisor,
            logs=self.logs,
            tokens=self.tokens,
            admin_token=self.admin_token,
            sync_keys=self.sync_keys,
            git_app=git_app,
            metrics=self.metrics,
            shutdown=lambda: self.request_stop(everything=True),
            drains=self.drains,
            backups=self.backups,
        )
        api = create_app(ctx)
        # A dyno may bind a loopback port the moment minipaas lets go of it (a restart): only
        # clients told to use one dial it, never Caddy.
        tcp = None if self.settings.api_port is None else _tcp_socket(self.settings.api_port)
        uds = private_unix_socket(self.paths.socket, self._gid)
        proxied = private_unix_socket(self.paths.proxy_socket)
        common: dict[str, Any] = {
            "log_level": "warning",
            "access_log": False,
            "lifespan": "off",
            "timeout_graceful_shutdown": 5,
        }
        listeners: list[tuple[ASGIApp, socket.socket]] = [
            (LocalMarker(api), uds),
            (api, proxied),  # Caddy's: tokens checked as on TCP
        ]
        if tcp is not None:
            listeners.append((api, tcp))
        servers = [_Server(uvicorn.Config(app, **common)) for app, _sock in listeners]
        tasks = [
            loop.create_task(server.serve(sockets=[sock]))
            for server, (_app, sock) in zip(servers, listeners, strict=True)
        ]
        attach = AttachServer(
            self.paths.root / "minipaas-run.sock", self.deployer.run_attached, self._gid
        )
        attach.listen()
        attach_task = loop.create_task(attach.serve())
        scheduler = CronScheduler(
            jobs=self.deployer.cron_jobs,
            run=self.deployer.run_cron,
            skipped=self.deployer.cron_skipped,
        )
        cron_task = loop.create_task(scheduler.run_forever())
        # pg:backups:schedule: daily captures, on their own scheduler (a long dump never
        # holds up an app.json job, nor the other way round).
        backup_scheduler = CronScheduler(
            jobs=self.backups.cron_jobs, run=self.backups.run_scheduled
        )
        # Its minutes are those after `started`; the runs due up to it that the server was down
        # for are caught up below (`Backups.missed_runs`): none run twice, none are skipped.
        # (The schedulers' clock: the wall clock, unless a test moved it.)
        started = wall_clock()()
        backup_task = loop.create_task(backup_scheduler.run_forever(since=started))
        metrics_task = loop.create_task(self.metrics.run())
        router_task = loop.create_task(self.router.watch())
        postgres_task = loop.create_task(self.postgres.watch())
        redis_task = loop.create_task(self.redis.watch())
        starting: asyncio.Task[None] | None = None
        catch_up: asyncio.Task[None] | None = None
        try:
            await self.drains.reload()  # before the dynos: their first lines reach the drains
            await self.deployer.start_addons()  # before the dynos: their database is up
            await self.backups.recover()
            # Daily captures due while the server was down (after `recover`, which fails the
            # ones it cut short), run in the background.
            catch_up = loop.create_task(
                self.backups.catch_up(await self.backups.missed_runs(started))
            )
            await self.deployer.readopt_all()
            # Ready: what ran before is back under supervision. After a reboot the apps start
            # from here on, while the API already answers (`ps` shows them starting).
            starting = loop.create_task(self.deployer.start_missing())
            starting.add_done_callback(_report_start_failure)
            (self.paths.root / "minipaas.pid").write_text(f"{os.getpid()}\n")
            print(
                f"minipaas: serving {self.settings.control_url} (API on {self.paths.socket})",
                file=sys.stderr,
                flush=True,
            )
            if ready is not None:
                ready()
            stop = loop.create_task(self._stop.wait())
            done, _ = await asyncio.wait([stop, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stop and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            if starting is not None:
                # Not cancelled: dynos half-way through their start would be left behind.
                await asyncio.gather(starting, return_exceptions=True)
            cron_task.cancel()
            backup_task.cancel()
            if catch_up is not None:
                catch_up.cancel()
            metrics_task.cancel()
            router_task.cancel()  # before `down` stops Caddy, which must then stay stopped
            postgres_task.cancel()  # likewise PostgreSQL
            redis_task.cancel()  # and Redis
            attach_task.cancel()
            await attach.close()
            await self.drains.close()
            await asyncio.gather(
                cron_task, backup_task, metrics_task, router_task, postgres_task, redis_task,
                *([catch_up] if catch_up is not None else []), return_exceptions=True,
            )
            await scheduler.stop()
            await backup_scheduler.stop()
            self.logs.end_follows()  # `logs -t` streams end now, not at uvicorn's grace timeout
            await self.deployer.stop_deploys()  # over HTTPS too, where no stream holds them
            for stream in list(ctx.streams):  # deploys and `run`s: the pusher is told why
                stream.cancel()
            await asyncio.gather(*ctx.streams, return_exceptions=True)
            for server in servers:
                server.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)
            self.paths.socket.unlink(missing_ok=True)
            self.paths.proxy_socket.unlink(missing_ok=True)
            for _app, sock in listeners:
                sock.close()


class _Malloc:
    """glibc's allocator, tuned for a long-lived server whose work comes in bursts (pushes,
    builds, log floods) between long idle stretches. Elsewhere (musl, macOS) it does nothing.

    - two arenas, not eight per core: each thread that ever allocated (uvicorn, a2wsgi's git
      workers, asyncio.to_thread, aiosqlite) would otherwise keep an arena of its own, and
      what is freed in one is never reused by the others;
    - a fixed mmap threshold: glibc raises it after every large free, so later big buffers
      (a pushed pack's chunks, log batches) land in the heap and stay resident;
    - `trim` after a burst returns the free pages at the top and inside the heap to the OS.
    """

    M_MMAP_THRESHOLD = -3
    M_ARENA_MAX = -8

    def __init__(self) -> None:
        self._libc: ctypes.CDLL | None = None
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            libc.malloc_trim.argtypes = [ctypes.c_size_t]
            self._libc = libc

    def tune(self) -> None:
        """Call before any thread starts (arenas are created on a thread's first malloc)."""
        if self._libc is not None:
            self._libc.mallopt(self.M_ARENA_MAX, 2)
            self._libc.mallopt(self.M_MMAP_THRESHOLD, 256 * 1024)

    def trim(self) -> None:
        if self._libc is not None:
            self._libc.malloc_trim(0)


def run_server(settings: Settings) -> int:
    """Entry point of `minipaas server`: run until SIGTERM/SIGINT, then clean up."""
    malloc = _Malloc()
    malloc.tune()
    shield_from_oom_killer()
    server = MinipaasServer(settings, release_memory=malloc.trim)
    asyncio.run(server.run())
    return 0


def shield_from_oom_killer() -> None:
    """As root, make this process (and Caddy and the resolver, which inherit it) the OOM
    killer's last choice but one: out of memory, it picks a dyno (`sandbox.OOM_SCORE_ADJ`)."""
    if os.geteuid() == 0:
        with contextlib.suppress(OSError):  # a container may refuse it; nothing else changes
            Path("/proc/self/oom_score_adj").write_text(f"{OOM_SCORE_ADJ}\n")


def _report_start_failure(task: asyncio.Task[None]) -> None:
    """Starting the apps (in the background) died: the traceback goes to the server's log."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        print("minipaas: starting the apps failed:", file=sys.stderr, flush=True)
        traceback.print_exception(exc, file=sys.stderr)


def _ignored() -> None:
    """A signal the server was started with ignored: still nothing happens."""
