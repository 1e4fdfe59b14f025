"""The apps list: every app with its state, release, dynos, traffic and memory; live.

Owns: the first screen of the TUI (and the way to the host screen, `h`).
Must not touch: anything but `self.app.api` for I/O.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from tui import format as fmt
from tui.widgets.tables import Cell, KeyedTable

if TYPE_CHECKING:
    from tui.app import MinipaasApp

COLUMNS = [
    ("NAME", "name"),
    ("STATE", "state"),
    ("REL", "release"),
    ("DYNOS", "dynos"),
    ("REQ/S", "rps"),
    ("P95", "p95"),
    ("MEM", "rss"),
]

STATE_STYLE = {
    "up": "green",
    "partial": "yellow",
    "starting": "yellow",
    "down": "red",
    "idle": "",
    "new": "dim",
    "maintenance": "magenta",
}


def app_state(app: dict[str, Any]) -> str:
    """One word for an app: maintenance, new (never deployed), idle, up, starting (minipaas
    has just started and not yet its dynos), partial or down."""
    if app.get("maintenance"):
        return "maintenance"
    if not app.get("release"):
        return "new"
    up, desired = app.get("dynos_up") or 0, app.get("dynos_desired") or 0
    if desired == 0:
        return "idle"
    if up >= desired:
        return "up"
    if app.get("start_pending"):
        return "starting"
    return "partial" if up else "down"


def app_row(app: dict[str, Any]) -> list[Cell]:
    state = app_state(app)
    release = app.get("release")
    return [
        str(app.get("name", "?")),
        Text(state, style=STATE_STYLE.get(state, "")),
        f"v{release}" if release else fmt.DASH,
        f"{app.get('dynos_up', 0)}/{app.get('dynos_desired', 0)}",
        fmt.rate(fmt.number(app.get("rps"))),
        fmt.millis(fmt.number(app.get("p95"))),
        fmt.size(fmt.number(app.get("rss"))),
    ]


class AppsScreen(Screen[None]):
    BINDINGS = [
        Binding("enter", "open", "Open", show=True),
        Binding("l", "logs", "Logs"),
        Binding("m", "metrics", "Metrics"),
        Binding("h", "host", "Host"),
        Binding("r", "refresh", "Refresh"),
        Binding("q", "app.quit", "Quit"),
    ]

    if TYPE_CHECKING:
        app: MinipaasApp

    def __init__(self) -> None:
        super().__init__()
        self._loading = False

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="▲")
        yield Static("Loading apps…", id="apps-summary", classes="summary", markup=False)
        yield KeyedTable(COLUMNS, id="apps")
        yield Static(
            "No apps yet. Create one with `minipaas apps:create NAME`, then `git push`.",
            id="apps-empty",
            classes="empty",
            markup=False,
        )
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#apps-empty").display = False
        self.query_one(KeyedTable).focus()
        self.action_refresh()
        self.set_interval(self.app.refresh_every, self.action_refresh)

    def on_screen_resume(self) -> None:
        self.action_refresh()

    def action_refresh(self) -> None:
        if not self._loading:  # a slow server must not pile up requests
            self._loading = True
            self.load()

    @work(group="apps", exit_on_error=False)
    async def load(self) -> None:
        try:
            with contextlib.suppress(NoMatches):  # the screen closed while we waited
                await self._fetch()
        finally:
            self._loading = False

    async def _fetch(self) -> None:
        apps = await self.app.call(self.app.apps(), refresh="apps")
        if apps is None:
            summary = self.query_one("#apps-summary", Static)
            if not self.app.connected:
                summary.update(f"Disconnected from {self.app.where}; retrying…")
            elif failure := self.app.failing.get("apps"):  # said once; kept in sight here
                summary.update(f"Cannot list the apps: {failure}")
            return
        table = self.query_one(KeyedTable)
        table.sync([(str(a.get("name")), app_row(a)) for a in apps])
        self.query_one("#apps-empty").display = not apps
        up = sum(1 for a in apps if app_state(a) == "up")
        self.query_one("#apps-summary", Static).update(
            f"{len(apps)} app{'s' * (len(apps) != 1)} · {up} up · Enter opens, ? for help"
        )

    def _selected(self) -> str | None:
        return self.query_one(KeyedTable).selected_key

    def on_data_table_row_selected(self, event: KeyedTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        from tui.screens.app_detail import AppScreen

        if name := self._selected():
            self.app.app_seen(name)
            self.app.push_screen(AppScreen(name))

    def action_logs(self) -> None:
        from tui.screens.logs import LogsScreen

        if name := self._selected():
            self.app.push_screen(LogsScreen(name))

    def action_metrics(self) -> None:
        from tui.screens.metrics import MetricsScreen

        if name := self._selected():
            self.app.push_screen(MetricsScreen(name))

    def action_host(self) -> None:
        from tui.screens.host import HostScreen

        self.app.push_screen(HostScreen())
