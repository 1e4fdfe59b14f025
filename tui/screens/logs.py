"""The logs screen: a live tail of one app's logs with source/dyno filters, pause and search.

Owns: the log stream, run in an exclusive worker (group "logs": a new filter cancels the old
stream) that only appends lines to the `LogView`; the view draws them in batches. A lost
server is retried every refresh period; a deleted app closes the screen.
Must not touch: anything but `self.app.api` for I/O.
"""

from __future__ import annotations

import asyncio
import contextlib

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.widgets import Footer, Header, Input, Static

from tui import format as fmt
from tui.api import ApiError
from tui.messages import LogStats
from tui.screens.app_detail import AppBound
from tui.widgets.logview import LogView

SOURCES: list[str | None] = [None, "app", "router", "build", "release", "minipaas"]
HISTORY = 200
CONNECTING = "connecting…"
DISCONNECTED = "disconnected; retrying…"
QUIET = "following · no new log lines yet"


def next_in(options: list[str | None], current: str | None) -> str | None:
    """The option after `current` (wrapping); the first one when `current` is unknown."""
    try:
        return options[(options.index(current) + 1) % len(options)]
    except ValueError:
        return options[0]


class LogsScreen(AppBound):
    BINDINGS = [
        Binding("space,p", "pause", "Pause/resume", key_display="space"),
        Binding("slash", "search", "Search", key_display="/"),
        Binding("s", "source", "Source"),
        Binding("d", "dyno", "Dyno"),
        Binding("c", "clear", "Clear"),
        Binding("end", "follow", "Follow", show=False),
    ]

    def __init__(self, app_name: str, *, source: str | None = None, dyno: str | None = None):
        super().__init__(app_name)
        self.source = source
        self.dyno = dyno
        self.dynos: list[str] = []
        self._status = CONNECTING  # the status line's text

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="▲")
        yield Static("", id="logs-filters", classes="summary", markup=False)
        yield Input(placeholder="search (Enter keeps it, Esc clears)", id="logs-search")
        yield LogView(id="log")
        yield Static(CONNECTING, id="logs-status", classes="status", markup=False)
        yield Footer()

    @property
    def view(self) -> LogView:
        return self.query_one(LogView)

    def on_mount(self) -> None:
        self.query_one("#logs-search").display = False
        self.view.focus()
        self.show_filters()
        self.follow()
        self.watch_app()
        self.set_interval(max(self.app.refresh_every, 2.0) * 2.5, self.watch_app)

    # -- the stream ------------------------------------------------------------------------

    @work(exclusive=True, group="logs", exit_on_error=False)
    async def follow(self) -> None:
        view, name, n = self.view, self.app_name, HISTORY
        while True:
            try:
                async for line in self.app.api.logs(name, n=n, source=self.source, dyno=self.dyno):
                    view.feed(line)
                    if not self.app.connected:
                        self.app.reconnected()
                raise ApiError(f"The log stream from {self.app.api.where} ended.")
            except ApiError as exc:
                self.app.report(exc, app_name=name)
                if exc.status != 0:  # a refused filter, a deleted app: retrying won't help
                    self.status(str(exc))
                    return
            self.status(DISCONNECTED)
            n = 0  # after a reconnect, only new lines (the old ones are on screen)
            await asyncio.sleep(self.app.refresh_every)

    def restart_stream(self) -> None:
        self.view.reset()
        self.show_filters()
        self.follow()

    @work(exclusive=True, group="logs-app", exit_on_error=False)
    async def watch_app(self) -> None:
        """Keep the dyno list current, and notice when the app is deleted."""
        name = self.app_name
        data = await self.app.call(self.app.api.dynos(name), app_name=name, refresh=f"dynos {name}")
        if data is not None:
            self.dynos = sorted(str(d.get("name")) for d in data.get("dynos") or [])
            # The status changes with each batch of lines; with none coming (an app never
            # deployed, a quiet one after a reconnect) it said "connecting…" or "disconnected"
            # for good, with the server answering.
            if self._status in (CONNECTING, DISCONNECTED):
                self.status(QUIET)

    # -- display ---------------------------------------------------------------------------

    def status(self, text: str) -> None:
        self._status = text
        with contextlib.suppress(NoMatches):  # the screen is closing
            self.query_one("#logs-status", Static).update(text)

    def show_filters(self) -> None:
        search = self.view.search
        self.query_one("#logs-filters", Static).update(
            f"{self.app_name} logs  ·  source: {self.source or 'all'}  ·  "
            f"dyno: {self.dyno or 'all'}  ·  search: {search or fmt.DASH}"
        )

    def on_log_stats(self, stats: LogStats) -> None:
        if stats.paused:
            text = f"PAUSED · {stats.pending:,} new lines · space resumes"
        else:
            text = (
                f"following · {stats.received:,} lines received · {stats.shown:,} shown · "
                f"{stats.per_second:,.0f} lines/s"
            )
        self.status(text)

    # -- actions -----------------------------------------------------------------------------

    def action_pause(self) -> None:
        self.view.set_paused(not self.view.paused)

    def action_search(self) -> None:
        box = self.query_one("#logs-search", Input)
        box.display = True
        box.value = self.view.search
        box.focus()

    @on(Input.Changed, "#logs-search")
    def search_changed(self, event: Input.Changed) -> None:
        self.view.set_search(event.value)
        self.show_filters()

    @on(Input.Submitted, "#logs-search")
    def search_done(self, event: Input.Submitted) -> None:
        event.input.display = False
        self.view.focus()

    def action_back(self) -> None:
        box = self.query_one("#logs-search", Input)
        if box.display:
            box.value = ""
            box.display = False
            self.view.focus()
            return
        super().action_back()

    def action_source(self) -> None:
        self.source = next_in(SOURCES, self.source)
        self.restart_stream()

    def action_dyno(self) -> None:
        self.dyno = next_in([None, *self.dynos], self.dyno)
        self.restart_stream()

    def set_filters(self, *, source: str | None = None, dyno: str | None = None) -> None:
        self.source, self.dyno = source, dyno
        self.restart_stream()

    def action_clear(self) -> None:
        self.view.wipe()

    def action_follow(self) -> None:
        self.view.scroll_end(animate=False)
