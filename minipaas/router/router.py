"""The router facade the server uses: start Caddy, apply desired state, stop Caddy.

Owns the Caddy process (through `CaddyProcess`) and the admin client, and remembers exactly one
thing: the last document Caddy accepted, so applying an unchanged state costs nothing and
reconciling can run at any time. It never reads the store; the server hands it a `RouterState`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from minipaas.router.admin import CaddyAdmin
from minipaas.router.caddy import (
    CaddyProcess,
    enable_listener_migration,
    find_caddy,
    stop_strays,
)
from minipaas.router.dns import MAX_RECORDS
from minipaas.router.errors import RouterError
from minipaas.router.pidfile import KeptChild, until_one_exits
from minipaas.router.render import AppRoute, RouterState, render
from minipaas.router.resolver import ResolverProcess

log = logging.getLogger(__name__)

START_TIMEOUT = 15.0
STOP_GRACE = 10.0
#: `watch`: a death within this many seconds of the last restart counts as a crash loop ...
REVIVE_WINDOW = 10.0
#: ... and waits 1 s, 2 s, 4 s ... up to this long before the next start.
REVIVE_MAX_WAIT = 30.0


class Router:
    """Caddy in `workdir` (the data dir's `caddy/`), configured whole from `RouterState`."""

    def __init__(
        self, *, caddy_bin: Path | None, workdir: Path, dynamic_upstreams: bool = True
    ) -> None:
        self._workdir = workdir
        self._process = CaddyProcess(
            binary=caddy_bin if caddy_bin is not None else find_caddy(),
            workdir=workdir,
            admin_socket=workdir / "admin.sock",
        )
        # Web dynos behind the resolver (no Caddy reload per deploy), or written into the config.
        self._resolver = ResolverProcess(workdir) if dynamic_upstreams else None
        self._admin_client: CaddyAdmin | None = None
        self._last: dict[str, Any] | None = None
        self._applied: RouterState | None = None
        self._loads = 0
        self._lock = asyncio.Lock()

    @property
    def admin_socket(self) -> Path:
        return self._process.admin_socket

    @property
    def storage_dir(self) -> Path:
        return self._process.storage_dir

    @property
    def access_log(self) -> Path:
        """Where the rendered config writes the app hosts' access log (JSON lines)."""
        return self._workdir / "access.log"

    @property
    def process_log(self) -> Path:
        """Caddy's own log (JSON lines: certificate attempts among them)."""
        return self._process.log_file

    @property
    def root_certificate(self) -> Path:
        """The internal CA's root (exists once a config with internal TLS was applied)."""
        return self.storage_dir / "pki" / "authorities" / "local" / "root.crt"

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def resolver_port(self) -> int | None:
        """The port of the resolver Caddy was last configured with (its own answers are the
        "no web dynos" 503s), None without one."""
        resolver = self._applied.resolver if self._applied is not None else None
        port = resolver.rsplit(":", 1)[-1] if resolver else ""
        return int(port) if port.isdigit() else None

    @property
    def loads(self) -> int:
        """How many documents were sent to Caddy (unchanged states are not)."""
        return self._loads

    @property
    def admin(self) -> CaddyAdmin:
        if self._admin_client is None:
            self._admin_client = CaddyAdmin(self.admin_socket)
        return self._admin_client

    def state(
        self,
        *,
        domain: str,
        http_port: int,
        https_port: int,
        listen_host: str,
        control_upstream: str,
        apps: tuple[AppRoute, ...],
        acme_email: str | None = None,
        acme_ca: str | None = None,
        access_log: bool = True,
    ) -> RouterState:
        """A `RouterState` with this router's own paths (socket, storage, access log) filled in."""
        return RouterState(
            domain=domain,
            http_port=http_port,
            https_port=https_port,
            listen_host=listen_host,
            admin_socket=self.admin_socket,
            storage_dir=self.storage_dir,
            control_upstream=control_upstream,
            apps=apps,
            acme_email=acme_email,
            acme_ca=acme_ca,
            access_log=self.access_log if access_log else None,
            resolver=self._resolver.address if self._resolver and self._resolver.pid else None,
        )

    async def start(self) -> None:
        """Adopt the Caddy an earlier run left alive, or start one; returns once it answers."""
        async with self._lock:
            await asyncio.to_thread(enable_listener_migration)
            if self._resolver is not None:
                self._resolver.start()
            await self._start()

    async def apply(self, state: RouterState) -> None:
        """Render `state` and load it into Caddy; a no-op when it renders as last time."""
        if state.admin_socket != self.admin_socket:
            # Loading another admin address would move Caddy's admin endpoint out of our reach.
            raise RouterError(
                f"The router state names admin socket {state.admin_socket}, "
                f"but this router's Caddy listens on {self.admin_socket}."
            )
        render(state)  # invalid states are refused before anything changes
        wanted = state  # as given: what follows fills in this run's resolver and static links
        async with self._lock:
            if self._resolver is not None:
                if not self._resolver.alive():
                    log.warning(
                        "the upstream resolver (pid %s) died; starting it again",
                        self._resolver.pid,
                    )
                    self._resolver.start()
                if state.resolver not in (None, self._resolver.address):
                    # A state made before the resolver was restarted on another port.
                    state = replace(state, resolver=self._resolver.address)
                if state.resolver is not None:
                    state = await asyncio.to_thread(self._link_static, state)
            document = render(state)
            if self._process.pid is not None and not self._process.alive():
                log.warning("caddy (pid %s) died; starting it again", self._process.pid)
                await self._start()
            # The table first: a route Caddy is about to load finds its dynos already there.
            moved = self._publish(state)
            if document != self._last:
                started = time.monotonic()
                await self.admin.load(document)
                self._last = document
                self._loads += 1
                log.info("caddy config loaded in %.1f ms", (time.monotonic() - started) * 1000)
            self._applied = wanted
        if moved and self._resolver is not None:
            # Caddy may use an answer from before the switch until it expires; after that every
            # new request goes to the new dynos and the old ones can be drained. No wait for an
            # app Caddy has not asked about lately (a first deploy, an idle app). Outside the
            # lock: other apps' switches need not queue behind this wait.
            wait = await self._resolver.settle_time(moved)
            if wait > 0:
                await asyncio.sleep(wait)

    async def settle(self, apps: Iterable[str]) -> None:
        """Wait until Caddy no longer uses an answer about `apps` given before the last
        `apply`: also one about a name that was no app then (Caddy asks about any host under
        the domain), which `apply` does not wait for (`apps:rename` does, for the new name)."""
        if self._resolver is not None:
            wait = await self._resolver.settle_time(apps)
            if wait > 0:
                await asyncio.sleep(wait)

    async def watch(self) -> None:
        """Until cancelled: whenever Caddy or the resolver stops (the OOM killer, a crash, a
        stray kill), start it again and load the last applied state, so apps answer again
        within about a second instead of at the next deploy. Deaths in quick succession wait
        longer and longer (up to 30 s) before the next start. Cancel it before `stop`."""
        streak, last = 0, -math.inf
        while True:
            kept: list[KeptChild] = [self._process]
            if self._resolver is not None:
                kept.append(self._resolver)
            await until_one_exits(kept)
            streak = streak + 1 if time.monotonic() - last < REVIVE_WINDOW else 0
            if streak:
                await asyncio.sleep(min(REVIVE_MAX_WAIT, 0.5 * 2**streak))
            last = time.monotonic()
            try:
                await self._revive()
            except Exception as exc:  # logged; the next round tries again
                log.error("could not start the router again: %s", exc)

    async def _revive(self) -> None:
        async with self._lock:
            if self._resolver is not None and not self._resolver.alive():
                log.warning("the upstream resolver (pid %s) stopped; starting it again",
                            self._resolver.pid)
                self._resolver.start()
            if not self._process.alive():
                log.warning("caddy (pid %s) stopped; starting it again", self._process.pid)
                await self._start()
        if self._applied is not None:
            await self.apply(self._applied)  # the full document: `_start` forgot the last one

    def _link_static(self, state: RouterState) -> RouterState:
        """Serve each static site through a stable symlink to its release's directory.

        A static deploy then swaps one symlink (atomically) instead of loading a configuration
        whose `root` changed, like dynos behind the resolver: no Caddy reload per deploy.
        """
        links = self._workdir / "static"
        links.mkdir(mode=0o700, exist_ok=True)
        apps = []
        for app in state.apps:
            if app.static_root is not None:
                link = links / app.name
                if _readlink(link) != app.static_root:
                    tmp = links / f".{app.name}.tmp"
                    tmp.unlink(missing_ok=True)
                    tmp.symlink_to(app.static_root)
                    tmp.replace(link)
                app = replace(app, static_root=str(link))
            apps.append(app)
        wanted = {app.name for app in state.apps if app.static_root is not None}
        for link in links.iterdir():
            if link.name not in wanted and not link.name.startswith("."):
                link.unlink(missing_ok=True)
        return replace(state, apps=tuple(apps))

    def _publish(self, state: RouterState) -> set[str]:
        """Write the resolver's table from `state`; the apps whose existing dynos changed."""
        if self._resolver is None or state.resolver is None:
            return set()
        table = {
            app.name: [int(upstream.rpartition(":")[2]) for upstream in app.upstreams]
            for app in state.apps
            if len(app.upstreams) <= MAX_RECORDS and not app.maintenance and app.static_root is None
        }
        return self._resolver.publish(table)

    async def stop(self) -> None:
        """Stop Caddy (SIGTERM by pid, grace, SIGKILL); used by `minipaas down` and tests."""
        async with self._lock:
            if self._process.pid is None:
                self._process.adopt()
            await self._process.terminate(grace=STOP_GRACE)
            self._last = self._applied = None
            await self._close_admin()
            if self._resolver is not None:
                if self._resolver.pid is None:
                    self._resolver.adopt()
                await self._resolver.terminate()

    async def aclose(self) -> None:
        """Let go of Caddy without stopping it: it keeps serving while minipaas restarts."""
        async with self._lock:
            await self._close_admin()

    async def _start(self) -> None:
        self._last = None  # whatever Caddy runs now, the next apply loads the full document
        pid = self._process.adopt()
        if pid is not None:
            if await self._wait_ready(deadline=time.monotonic() + 2.0):
                log.info("adopted caddy (pid %s)", pid)
                return
            log.warning(
                "caddy (pid %s) does not answer on %s; replacing it", pid, self.admin_socket
            )
            await self._process.terminate(grace=STOP_GRACE)
        await self._close_admin()  # drop connections to a previous process
        strays = await asyncio.to_thread(stop_strays, self._process.workdir, STOP_GRACE)
        if strays:
            log.warning("stopped caddy processes without a pid file: %s", strays)
        pid = self._process.spawn()
        if not await self._wait_ready(deadline=time.monotonic() + START_TIMEOUT):
            tail = self._process.log_tail()
            await self._process.terminate(grace=1.0)
            raise RouterError(
                f"Caddy (pid {pid}) did not answer on {self.admin_socket} within "
                f"{START_TIMEOUT:.0f} s; its log ends with: {tail or '(nothing)'}"
            )
        log.info("started caddy (pid %s)", pid)

    async def _wait_ready(self, *, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if not self._process.alive():
                return False
            if self.admin_socket.exists() and await self.admin.ping():
                return True
            await asyncio.sleep(0.02)
        return False

    async def _close_admin(self) -> None:
        if self._admin_client is not None:
            await self._admin_client.aclose()
            self._admin_client = None


def _readlink(path: Path) -> str | None:
    try:
        return str(path.readlink())
    except OSError:
        return None
