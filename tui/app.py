"""The Textual application: one `Api` per session, the screen stack, and how errors are shown.

Owns: the app factory (`create_app`, used by the CLI, the SSH entry point and the tests),
`run_tui`, the connection state (lost → notification, every refresh is a reconnect attempt,
back → notification) and the "app was deleted" path. Start-up is on the clock (≤ 1 s to the
first apps list over `ssh -t`): the CLI requests that list through a sync `Client` before it
imports Textual (`first_apps`), the session's async client is built in a thread once the list is
on screen (for a remote server that imports httpx), and other screens are imported when first
opened. API errors become notifications here, never tracebacks. Must not touch: anything but
`tui.api` for I/O.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from minipaas.client import AsyncClient, Client, Pending
from tui.api import Api, ApiError, Transport, first_apps, prefetched_apps
from tui.screens.apps import AppsScreen

T = TypeVar("T")


def css_path() -> Path:
    """`minipaas.tcss` next to this module; inside a PyInstaller bundle, under `_MEIPASS/tui`.

    (Package it with `--add-data tui/minipaas.tcss:tui`; pip installs it as package data.)
    """
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle is not None:
        return Path(bundle) / "tui" / "minipaas.tcss"
    return Path(__file__).with_name("minipaas.tcss")


class MinipaasApp(App[int]):
    """The minipaas terminal UI; start it with `create_app(...).run()` or `run_tui(client)`."""

    TITLE = "minipaas"
    CSS_PATH = css_path()
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding("question_mark,f1", "help", "Help", key_display="?"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (70, "-normal")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (18, "-tall")]

    def __init__(
        self,
        client_factory: Callable[[], Transport],
        *,
        refresh_every: float = 2.0,
        start_app: str | None = None,
        first: Client | None = None,
        first_apps: Pending | None = None,
    ) -> None:
        super().__init__()
        self._client_factory = client_factory
        self.refresh_every = refresh_every
        self.start_app = start_app
        self.connected = True
        self._api: Api | None = None
        self._first = first
        self._first_apps = first_apps  # the first apps list, requested before Textual loaded
        self._warming = False  # the async client is being built in a thread
        self._gone: set[str] = set()
        self._unstyled: set[Screen[Any]] = set()  # screens styled before the connection changed
        # What each periodic refresh that fails is failing with (said once, not every round).
        self.failing: dict[str, str] = {}

    @property
    def api(self) -> Api:
        if self._api is None:
            self._api = Api(self._client_factory())
        return self._api

    @property
    def where(self) -> str:
        """The server this session talks to (without building the async client for it)."""
        if self._api is None and self._first is not None:
            return self._first.where
        return self.api.where

    async def apps(self) -> list[dict[str, Any]]:
        """The apps list: the first one through the sync client when there is one (fast to
        start), then through the session's async client, built in a thread once the first
        list is drawn."""
        first = self._first
        if self._api is not None or first is None:
            return await self.api.apps()
        if (pending := self._first_apps) is not None:
            # Requested before Textual was imported, so usually answered already. It still goes
            # into the frame after the first: the first one lacks the header's icon. Asked again
            # before then (the screen's resume refresh), the same answer is still the newest.
            painted = asyncio.get_running_loop().create_future()
            self.call_after_refresh(painted.set_result, None)
            try:
                apps = await prefetched_apps(pending)
                await painted
                return apps
            finally:
                if not self._warming:
                    self._warming = True
                    self.call_after_refresh(self._first_list_drawn)
        if not self._warming:
            self._warming = True
            # The answer takes a few ms; the first frame (the skeleton) is drawn meanwhile and
            # the list goes into the next one, so it never lands in a half-built first frame.
            painted = asyncio.get_running_loop().create_future()
            self.call_after_refresh(painted.set_result, None)
            try:
                apps = await first_apps(first)
                await painted
                return apps
            finally:
                self.call_after_refresh(self._start_warm_up)
        # Still warming up: building the async client here (for a remote server, that imports
        # httpx) would hold up the event loop and the frames meanwhile.
        return await first_apps(first)

    def _first_list_drawn(self) -> None:
        self._first_apps = None
        # Start-up is over: the cyclic GC comes back (the CLI stops it while Textual loads),
        # and what start-up built, which lives as long as the app, is left out of its walks.
        gc.freeze()
        gc.enable()
        self._start_warm_up()

    def _start_warm_up(self) -> None:
        self.run_worker(self._warm_up(), group="api-warm", exit_on_error=False)

    async def _warm_up(self) -> None:
        """Build the async client in a thread (for a remote server, importing httpx takes
        ~0.1-0.2 s; on the local socket it costs nothing)."""
        transport = await asyncio.to_thread(self._client_factory)
        if self._api is None:
            self._api = Api(transport)
        else:  # a screen needed it first
            await transport.aclose()

    def get_default_screen(self) -> Screen[Any]:
        # The apps list is the bottom of the stack itself: pushed over Textual's blank default
        # screen, it cost a suspend and two resumes, each redrawing the footer before the first
        # list could be shown (~50 ms of start-up).
        return AppsScreen()

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Textual's palette commands but "Screenshot": over SSH it wrote an SVG into the SSH
        user's working directory on the server, nowhere near the operator."""
        for command in super().get_system_commands(screen):
            if command.title != "Screenshot":
                yield command

    def on_mount(self) -> None:
        self.sub_title = self.where
        self.screen_change_signal.subscribe(self, self._restyle)
        if self.start_app:
            from tui.screens.app_detail import AppScreen

            self.push_screen(AppScreen(self.start_app))

    async def on_unmount(self) -> None:
        if self._api is not None:
            await self._api.close()
        if self._first is not None:
            self._first.close()

    # -- errors and the connection ---------------------------------------------------------

    async def call(
        self, awaitable: Awaitable[T], *, app_name: str | None = None, refresh: str | None = None
    ) -> T | None:
        """Await an API call; on `ApiError` show it (or handle a lost server / deleted app)
        and return None. `refresh` names a call repeated on a timer (see `report`)."""
        try:
            result = await awaitable
        except ApiError as exc:
            self.report(exc, app_name=app_name, refresh=refresh)
            return None
        self.refreshed(refresh)
        return result

    def refreshed(self, refresh: str | None = None) -> None:
        """A call succeeded: the server is there, and the periodic call `refresh` works again."""
        self.reconnected()
        if refresh is not None:
            self.failing.pop(refresh, None)

    def report(
        self, exc: ApiError, *, app_name: str | None = None, refresh: str | None = None
    ) -> None:
        """Show `exc`. For a periodic call (`refresh`: its name), an error is said once, not
        again every round while it lasts (a bad token added a notification every 2 s)."""
        if exc.status == 0:
            if self.connected:
                self.connected = False
                # The state before the (long) address, so a narrow header still shows it; a
                # short terminal hides the header, except while disconnected (minipaas.tcss):
                # once the notification is gone, it is the only sign the data is stale.
                self.sub_title = f"disconnected, retrying — {self.where}"
                self._set_disconnected_class(True)
                self.notify(
                    f"{exc} Retrying every {self.refresh_every:g} s.",
                    title="Lost connection",
                    severity="error",
                    timeout=10,
                    markup=False,
                )
            return
        self.reconnected()
        if exc.status == 404 and app_name is not None and "route" not in str(exc):
            # Not every 404 about an app means the app is gone ("has no worker dynos to
            # restart", "no release v9"): the app itself is asked before its screens close.
            self.run_worker(self._gone_or_error(app_name, exc, refresh), exit_on_error=False)
            return
        self._say(exc, refresh)

    def _say(self, exc: ApiError, refresh: str | None) -> None:
        if refresh is not None:
            if self.failing.get(refresh) == str(exc):
                return
            self.failing[refresh] = str(exc)
        self.notify(str(exc), severity="error", timeout=8, markup=False)

    async def _gone_or_error(self, name: str, exc: ApiError, refresh: str | None) -> None:
        try:
            await self.api.app(name)
        except ApiError as again:
            if again.status == 404:
                self.app_gone(name)
            else:
                self.report(again)
            return
        self._say(exc, refresh)

    def reconnected(self) -> None:
        if not self.connected:
            self.connected = True
            self.sub_title = self.where
            self._set_disconnected_class(False)
            self.notify(f"Reconnected to {self.where}.", title="Connection back", markup=False)

    def _set_disconnected_class(self, on: bool) -> None:
        """`-disconnected` on the app (minipaas.tcss shows the header then, even in a short
        terminal). Textual restyles only the screen on top for an app class: the screens
        under it are restyled when they come back on top (`_restyle`)."""
        self.set_class(on, "-disconnected")
        self._unstyled = set(self.screen_stack[:-1])

    def _restyle(self, screen: Screen[Any]) -> None:
        if screen in self._unstyled:
            self._unstyled.discard(screen)
            screen.update_node_styles(animate=False)

    def app_gone(self, name: str) -> None:
        """The app was deleted: say so once and go back to the apps list."""
        from tui.screens.app_detail import AppBound

        if name not in self._gone:
            self._gone.add(name)
            self.notify(
                f"The app {name!r} no longer exists on the server (it was deleted).",
                title="App deleted",
                severity="warning",
                timeout=10,
                markup=False,
            )

        def bound(screen: object) -> bool:
            return isinstance(screen, AppBound) and screen.app_name == name

        # Pop everything down to (and including) the lowest screen of that app, modals too.
        while len(self.screen_stack) > 1 and any(map(bound, self.screen_stack)):
            self.pop_screen()

    def app_seen(self, name: str) -> None:
        self._gone.discard(name)

    # -- actions -----------------------------------------------------------------------

    def action_help(self) -> None:
        from tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())


def create_app(
    client_factory: Callable[[], Transport],
    *,
    refresh_every: float = 2.0,
    first: Client | None = None,
    first_apps: Pending | None = None,
) -> MinipaasApp:
    """The app factory: `client_factory()` is called once for the session's client: on mount,
    or, given a sync `first` client for the first apps list, in a thread after it is drawn.
    `first_apps` is that list already requested through `first` (`Client.fetch`)."""
    return MinipaasApp(
        client_factory, refresh_every=refresh_every, first=first, first_apps=first_apps
    )


def run_tui(
    client: Client | AsyncClient | None = None, *, first_apps: Pending | None = None
) -> int:
    """Run the TUI in this terminal against `client`'s server (the environment's by default).

    Used by `minipaas tui` and by the SSH forced command when the session has a PTY, both with
    the first apps list already requested (`first_apps`, through the sync `client`).
    """

    def factory() -> Transport:
        if isinstance(client, AsyncClient):
            return client
        if isinstance(client, Client):
            return AsyncClient.like(client)
        return AsyncClient.from_env()

    first = client if isinstance(client, Client) else None
    if client is None:
        first = Client.from_env()
    app = create_app(factory, first=first, first_apps=first_apps if first is not None else None)
    try:
        app.run()
    finally:
        gc.enable()  # in case the app ended before its first list was drawn
    return app.return_code or 0
