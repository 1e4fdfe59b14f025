"""One app: dynos (scale, restart), releases (rollback), config vars, domains (add, remove),
add-ons (with each one's info), log drains (add, remove), maintenance.

Owns: the app screen and `AppBound`, the base of every screen about one app (so the app can
close them all when the app is deleted). Must not touch: anything but `self.app.api` for I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane

from tui import format as fmt
from tui.api import ApiError
from tui.screens.modals import ConfirmScreen, PromptScreen
from tui.widgets.tables import Cell, KeyedTable

if TYPE_CHECKING:
    from tui.app import MinipaasApp

DYNO_STYLE = {"up": "green", "starting": "yellow", "crashed": "red", "down": "red"}
DRAIN_STYLE = {"delivering": "green", "failing": "red", "unknown": ""}
# An add-on's info (`pg:info`) runs SQL on the cluster: asked for when the Add-ons tab opens,
# then at most this often while it stays open (not at every 2 s refresh).
INFO_EVERY = 10.0
#: What the Add-ons tab's note calls each service.
SERVICE_TITLES = {"heroku-postgresql": "PostgreSQL", "heroku-redis": "Redis"}


def info_key(app: str, service: str) -> str:
    """The refresh key of an add-on's info requests (a failure is said once per key)."""
    return f"addon info {app} {service}"


def scale_text(count: int, size: str | None) -> str:
    """The SCALE cell: the count, and the type's size when it has one (`2 · standard-2x`)."""
    return str(count) if not size else f"{count} · {size}"


def web_first(process_type: str) -> tuple[bool, str]:
    """Sort key: `web` first, then the other process types by name."""
    return process_type != "web", process_type


def waiting_dynos(info: dict[str, Any]) -> list[str]:
    """The dynos minipaas has yet to start right after it started (a reboot): those the
    formation wants and the app does not list."""
    if not info.get("start_pending"):
        return []
    formation: dict[str, int] = info.get("formation") or {}
    listed = {str(d.get("name")) for d in info.get("dynos") or []}
    return [
        f"{ptype}.{n}"
        for ptype in sorted(formation, key=web_first)
        for n in range(1, formation[ptype] + 1)
        if f"{ptype}.{n}" not in listed
    ]


# Which tab each action belongs to (the footer shows only the current tab's keys).
TAB_ACTIONS = {
    "scale_up": "dynos",
    "scale_down": "dynos",
    "scale_to": "dynos",
    "restart": "dynos",
    "restart_all": "dynos",
    "rollback": "releases",
    "reveal": "config",
    "set_config": "config",
    "unset_config": "config",
    "add_domain": "domains",
    "remove_domain": "domains",
    "add_drain": "drains",
    "remove_drain": "drains",
}


def addon_row(addon: dict[str, Any], info: dict[str, Any] | None) -> list[Cell]:
    """An Add-ons row: the add-on, then its version, size and connections when its info came,
    else dashes (PostgreSQL says `size` and `connections`; Redis `used_memory` and `clients`)."""
    info = info or {}
    size = info.get("size", info.get("used_memory"))
    connections = fmt.number(info.get("connections", info.get("clients")))
    return [
        str(addon.get("service", "?")),
        str(addon.get("name", "")),
        str(addon.get("plan", "")),
        fmt.day(fmt.number(addon.get("created_at"))),
        fmt.pg_version(info.get("version")),
        fmt.size(fmt.number(size)),
        fmt.DASH if connections is None else f"{connections:.0f}",
    ]


def drain_row(drain: dict[str, Any]) -> list[Cell]:
    """A Drains row: the URL without its credentials, the status in colour (and in short:
    the selected drain's in full is under the table), the token."""
    state, short, _long = fmt.drain_status(drain.get("status"))
    status = Text(end="")
    status.append(state, style=DRAIN_STYLE[state])
    if short:
        status.append(" · " + fmt.clean_cell(short))
    return [
        fmt.without_userinfo(str(drain.get("url", ""))),
        status,
        str(drain.get("token", "")),
    ]


class PaneTabs(TabbedContent):
    """The app screen's tabs: a pane changes only with its tab (keys 1-6, the mouse).

    Textual also switches to a pane when a widget in it gets focus, one message hop after the
    focus: the first table's focus, set as the screen opened, arrived after a quick `3` (Enter
    then 3 over ssh) and switched back to Dynos, the keys of Config then doing nothing. Here a
    table is focused only in the pane already shown."""

    def _on_tab_pane_focused(self, event: TabPane.Focused) -> None:
        event.prevent_default()
        event.stop()


class AppBound(Screen[None]):
    """A screen about one app; Escape goes back."""

    BINDINGS = [Binding("escape", "back", "Back")]

    if TYPE_CHECKING:
        app: MinipaasApp

    def __init__(self, app_name: str) -> None:
        super().__init__()
        self.app_name = app_name

    def action_back(self) -> None:
        self.app.pop_screen()


class AppScreen(AppBound):
    BINDINGS = [
        Binding("1", "tab('dynos')", "Dynos", show=False),
        Binding("2", "tab('releases')", "Releases", show=False),
        Binding("3", "tab('config')", "Config", show=False),
        Binding("4", "tab('domains')", "Domains", show=False),
        Binding("5", "tab('addons')", "Add-ons", show=False),
        Binding("6", "tab('drains')", "Drains", show=False),
        Binding("plus,equals_sign", "scale_up", "Scale +", key_display="+"),
        Binding("minus", "scale_down", "Scale -", key_display="-"),
        Binding("n", "scale_to", "Set count", show=False),
        Binding("r", "restart", "Restart"),
        Binding("R", "restart_all", "Restart all", show=False),
        Binding("b", "rollback", "Rollback"),
        Binding("v", "reveal", "Reveal"),
        Binding("s", "set_config", "Set"),
        Binding("u,delete", "unset_config", "Unset", key_display="u"),
        Binding("a", "add_domain", "Add"),
        Binding("x", "remove_domain", "Remove"),
        Binding("delete", "remove_domain", "Remove", show=False),
        Binding("a", "add_drain", "Add drain"),
        Binding("x,delete", "remove_drain", "Remove drain", key_display="x"),
        Binding("M", "maintenance", "Maint."),
        Binding("l", "logs", "Logs"),
        Binding("m", "metrics", "Metrics"),
    ]

    def __init__(self, app_name: str) -> None:
        super().__init__(app_name)
        self.info: dict[str, Any] = {}
        self.config: dict[str, str] = {}
        self.releases: list[dict[str, Any]] = []
        self.domains: list[dict[str, Any]] | None = None  # with dates, once fetched
        self.certs: dict[str, dict[str, Any]] = {}  # by hostname, while the Domains tab is open
        # None until fetched (and when the server has no add-ons or drains endpoint).
        self.addons: list[dict[str, Any]] | None = None
        self.drains: list[dict[str, Any]] | None = None
        self.missing_api: set[str] = set()  # "addons", "drains": the server has no such endpoint
        self.addon_info: dict[str, dict[str, Any]] = {}  # by service
        self._info_at = 0.0  # monotonic time of the last info request; 0: ask at the next fetch
        self.revealed = False
        self.cpu_rss: dict[str, tuple[float | None, float | None]] = {}
        self._loading = False
        self._again = False  # a change happened during a fetch: fetch once more after it
        self._epoch = 0  # bumped by each change made here; a fetch from before is stale
        # Counts asked for with + / - / n and not answered yet: the next press counts from
        # them (three quick + from 0 sent 1 three times); the requests go out one at a time.
        self._asked: dict[str, int] = {}
        self._maintenance_asked: bool | None = None  # the same for maintenance mode
        self._scaling = asyncio.Lock()  # scale and maintenance requests, one at a time

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="▲")
        yield Static(self.app_name, id="app-summary", classes="summary", markup=False)
        with PaneTabs(initial="dynos", id="tabs"):
            with TabPane("Dynos", id="dynos"):
                yield KeyedTable(
                    [("TYPE", "type"), ("SCALE", "scale"), ("COMMAND", "command")],
                    id="formation",
                )
                yield KeyedTable(
                    [
                        ("DYNO", "name"),
                        ("STATE", "state"),
                        ("UPTIME", "uptime"),
                        ("RESTARTS", "restarts"),
                        ("CPU", "cpu"),
                        ("RSS", "rss"),
                        ("REL", "release"),
                    ],
                    id="dynos-table",
                )
            with TabPane("Releases", id="releases"):
                yield KeyedTable(
                    [("VER", "version"), ("WHEN", "when"), ("BY", "by"), ("WHAT", "what")],
                    id="releases-table",
                )
            with TabPane("Config", id="config"):
                yield KeyedTable([("KEY", "key"), ("VALUE", "value")], id="config-table")
            with TabPane("Domains", id="domains"):
                yield KeyedTable(
                    [("HOSTNAME", "host"), ("ADDED", "added"), ("TLS", "tls")], id="domains-table"
                )
            with TabPane("Add-ons", id="addons"):
                yield KeyedTable(
                    [
                        ("ADD-ON", "service"),
                        ("NAME", "name"),
                        ("PLAN", "plan"),
                        ("CREATED", "created"),
                        ("VERSION", "version"),
                        ("SIZE", "size"),
                        ("CONNS", "connections"),
                    ],
                    id="addons-table",
                )
                yield Static("Loading add-ons…", id="addons-note", classes="note", markup=False)
            with TabPane("Drains", id="drains"):
                yield KeyedTable(
                    [("URL", "url"), ("STATUS", "status"), ("TOKEN", "token")], id="drains-table"
                )
                yield Static("Loading drains…", id="drains-note", classes="note", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#formation", KeyedTable).focus()
        self.reload()
        self.set_interval(self.app.refresh_every, self.reload)

    def on_screen_resume(self) -> None:
        self.reload()

    # -- loading ---------------------------------------------------------------------------

    def reload(self, *, changed: bool = False) -> None:
        """Fetch everything again, unless a fetch is already under way (never pile up).

        After a change made from this screen (`changed=True`), a fetch under way may have read
        the state before it: its answer is dropped (it would undo what the user just saw
        happen, e.g. maintenance flipping back) and one more fetch follows."""
        if changed:
            self._epoch += 1
        if not self._loading:
            self._loading = True
            self._reload()
        elif changed:
            self._again = True

    @work(group="app", exit_on_error=False)
    async def _reload(self) -> None:
        try:
            with contextlib.suppress(NoMatches):  # the screen closed while we waited
                await self._fetch()
        finally:
            self._loading = False
        if self._again and self.is_attached:
            self._again = False
            self.reload()

    async def _fetch(self) -> None:
        api, name, call, epoch = self.app.api, self.app_name, self.app.call, self._epoch
        info = await call(api.app(name), app_name=name, refresh=f"app {name}")
        if info is None:
            return
        self.app.app_seen(name)
        metrics, releases, config, domains, addons, drains = await asyncio.gather(
            call(api.metrics(name, since=60), app_name=name, refresh=f"metrics {name}"),
            call(api.releases(name), app_name=name, refresh=f"releases {name}"),
            call(api.config(name), app_name=name, refresh=f"config {name}"),
            call(api.domains(name), app_name=name, refresh=f"domains {name}"),
            call(self._optional(api.addons(name), "addons"), app_name=name,
                 refresh=f"addons {name}"),
            call(self._optional(api.drains(name), "drains"), app_name=name,
                 refresh=f"drains {name}"),
        )  # fmt: skip
        infos = await self._fetch_info(addons)
        certs = await self._fetch_certs()
        if epoch != self._epoch:
            return  # something changed meanwhile: `reload` fetches again
        self.info = info
        if metrics:
            self.cpu_rss = {
                dyno: (fmt.number(points[-1].get("cpu")), fmt.number(points[-1].get("rss")))
                for dyno, points in (metrics.get("dynos") or {}).items()
                if isinstance(points, list) and points and isinstance(points[-1], dict)
            }
        if releases is not None:
            self.releases = releases
        if config is not None:
            self.config = config
        if domains is not None:
            self.domains = domains
        if certs is not None:
            self.certs = {str(c.get("hostname")): c for c in certs}
        if addons is not None:
            self.addons = addons
            for service in set(self.addon_info) - {str(a.get("service")) for a in addons}:
                del self.addon_info[service]  # destroyed meanwhile
        self.addon_info.update(infos)
        if drains is not None:
            self.drains = drains
        self.render_all()

    async def _optional(
        self, listing: Awaitable[list[dict[str, Any]] | None], what: str
    ) -> list[dict[str, Any]]:
        """An add-ons or drains list; from a server without that endpoint, [] (and the tab
        says why)."""
        items = await listing
        if items is None:
            self.missing_api.add(what)
        else:
            self.missing_api.discard(what)
        return items or []

    async def _fetch_certs(self) -> list[dict[str, Any]] | None:
        """The hostnames' certificates, only while the Domains tab is open: the server reads
        them from Caddy's files and log, more work than the other lists."""
        if self.tab != "domains":
            return None
        name = self.app_name
        return await self.app.call(self.app.api.certs(name), app_name=name,
                                   refresh=f"certs {name}")

    async def _fetch_info(self, addons: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
        """Each add-on's info (`pg:info`, `redis:info`: version, size, connections) while the
        Add-ons tab is open, at most every INFO_EVERY seconds; an error is said once (and kept
        in the tab's note)."""
        if not addons or self.tab != "addons" or time.monotonic() - self._info_at < INFO_EVERY:
            return {}
        self._info_at = time.monotonic()
        infos: dict[str, dict[str, Any]] = {}
        name = self.app_name
        for addon in addons:
            service = str(addon.get("service") or "")
            if not service:
                continue
            info = await self.app.call(
                self.app.api.addon_info(name, service),
                app_name=name,
                refresh=info_key(name, service),
            )
            if info is not None:
                infos[service] = info
        return infos

    def render_all(self) -> None:
        with contextlib.suppress(NoMatches):  # the screen closed while we waited for the server
            self._render_all()

    def _render_all(self) -> None:
        info = self.info
        maintenance = "ON" if info.get("maintenance") else "off"
        release = info.get("release")
        self.query_one("#app-summary", Static).update(
            f"{self.app_name}  ·  {'v' + str(release) if release else 'not deployed'}  ·  "
            f"{info.get('url', '')}  ·  maintenance {maintenance}"
        )
        formation: dict[str, int] = info.get("formation") or {}
        types: dict[str, str] = info.get("process_types") or {}
        sizes: dict[str, str] = info.get("sizes") or {}  # `ps:type`; none: no memory quota
        names = sorted(set(types) | set(formation), key=web_first)
        self.query_one("#formation", KeyedTable).sync(
            [(t, [t, scale_text(formation.get(t, 0), sizes.get(t)), types.get(t, fmt.DASH)])
             for t in names]
        )
        now = time.time()
        dynos = sorted(info.get("dynos") or [], key=lambda d: str(d.get("name")))
        rows: list[tuple[str, list[Cell]]] = []
        names_seen = [str(d.get("name")) for d in dynos]
        for d in dynos:
            name, state = str(d.get("name")), str(d.get("state"))
            # During a deploy the old and the new web.1 both exist for a moment.
            key = name if names_seen.count(name) == 1 else f"{name} v{d.get('release')}"
            cpu, rss = self.cpu_rss.get(name, (None, None))
            cpu = fmt.number(d.get("cpu")) if d.get("cpu") is not None else cpu
            rss = fmt.number(d.get("rss")) if d.get("rss") is not None else rss
            rows.append(
                (
                    key,
                    [
                        name,
                        Text(state, style=DYNO_STYLE.get(state, "")),
                        fmt.uptime(fmt.number(d.get("started_at")), state, now),
                        str(d.get("restarts", 0)),
                        fmt.percent(cpu),
                        fmt.size(rss),
                        f"v{d.get('release')}" if d.get("release") else fmt.DASH,
                    ],
                )
            )
        for name in waiting_dynos(info):
            waiting: list[Cell] = [name, Text("waiting", style=DYNO_STYLE["starting"])]
            rows.append((name, waiting + [fmt.DASH] * 5))
        self.query_one("#dynos-table", KeyedTable).sync(rows)
        self.query_one("#releases-table", KeyedTable).sync(
            [
                (
                    str(r.get("version")),
                    [
                        Text(
                            f"v{r.get('version')}" + (" ●" if r.get("current") else ""),
                            style="bold" if r.get("current") else "",
                        ),
                        fmt.when(fmt.number(r.get("created_at"))),
                        str(r.get("created_by", "")),
                        str(r.get("description", "")),
                    ],
                )
                for r in sorted(self.releases, key=lambda r: -int(r.get("version") or 0))
            ]
        )
        self.query_one("#config-table", KeyedTable).sync(
            [(k, [k, fmt.masked(v, self.revealed)]) for k, v in sorted(self.config.items())]
        )
        if self.domains is not None:
            domains = [
                (str(d.get("hostname")), fmt.when(fmt.number(d.get("created_at"))))
                for d in self.domains
            ]
        else:
            domains = [(str(h), "") for h in info.get("domains") or []]
        self.query_one("#domains-table", KeyedTable).sync(
            [
                (host, [host, added, fmt.tls(self.certs.get(host))])
                for host, added in sorted(domains)
            ]
        )
        self._render_addons()
        self._render_drains()

    def _render_addons(self) -> None:
        addons = self.addons
        if addons is not None:
            rows: list[tuple[str, list[Cell]]] = []
            for addon in addons:
                service = str(addon.get("service"))
                rows.append((service, addon_row(addon, self.addon_info.get(service))))
            self.query_one("#addons-table", KeyedTable).sync(rows)
        self.query_one("#addons-note", Static).update(self._addons_note())

    def _addons_note(self) -> str:
        name = self.app_name
        if self.addons is None:
            return "Loading add-ons…"
        if "addons" in self.missing_api:
            return "This minipaas server has no add-ons (it is older than the TUI)."
        if not self.addons:
            return (
                f"No add-ons. `minipaas addons:create heroku-postgresql -a {name}` (or "
                "heroku-redis) adds one."
            )
        for addon in self.addons:
            service = str(addon.get("service"))
            if failure := self.app.failing.get(info_key(name, service)):
                return f"{SERVICE_TITLES.get(service, service)} info: {failure}"
        key = self.query_one("#addons-table", KeyedTable).selected_key
        addon = next((a for a in self.addons if a.get("service") == key), self.addons[0])
        var = str(addon.get("config_var") or "")
        return (
            (f"Its URL is the config var {var}. " if var else "")
            + f"Destroy it (and its data) with `minipaas addons:destroy {addon.get('service')} "
            f"-a {name} --confirm {name}`."
        )

    def _render_drains(self) -> None:
        drains = self.drains
        if drains is not None:
            self.query_one("#drains-table", KeyedTable).sync(
                [(str(d.get("token")), drain_row(d)) for d in drains]
            )
        if drains is None:
            note = "Loading drains…"
        elif "drains" in self.missing_api:
            note = "This minipaas server has no log drains (it is older than the TUI)."
        elif not drains:
            note = "No log drains. a adds one (a syslog://, syslog+tls:// or https:// URL)."
        else:
            token = self.query_one("#drains-table", KeyedTable).selected_key
            drain = next((d for d in drains if d.get("token") == token), drains[0])
            _state, _short, long = fmt.drain_status(drain.get("status"))
            note = f"{fmt.clean_cell(str(drain.get('token', '')))}: {fmt.clean_cell(long)}."
        self.query_one("#drains-note", Static).update(note)

    def on_data_table_row_highlighted(self, event: KeyedTable.RowHighlighted) -> None:
        if event.data_table.id == "addons-table":
            self.query_one("#addons-note", Static).update(self._addons_note())
        if event.data_table.id == "drains-table":
            self._render_drains()  # the note tells the selected drain's status in full

    # -- which keys show ---------------------------------------------------------------------

    @property
    def tab(self) -> str:
        return self.query_one(TabbedContent).active or "dynos"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        wanted = TAB_ACTIONS.get(action)
        return wanted is None or wanted == self.tab

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.refresh_bindings()
        pane = event.pane.id or ""
        first = {
            "dynos": "#formation",
            "releases": "#releases-table",
            "config": "#config-table",
            "domains": "#domains-table",
            "addons": "#addons-table",
            "drains": "#drains-table",
        }.get(pane)
        if first:
            self.query_one(first, KeyedTable).focus()
        if pane in ("addons", "domains"):  # add-on info, certificates: now, not next round
            self._info_at = 0.0
            if self._loading:
                self._again = True
            else:
                self.reload()

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    # -- dynos -----------------------------------------------------------------------------

    def selected_type(self) -> str | None:
        dynos = self.query_one("#dynos-table", KeyedTable)
        if dynos.has_focus and (key := dynos.selected_key):
            return key.split(" ")[0].rsplit(".", 1)[0]
        return self.query_one("#formation", KeyedTable).selected_key

    def count_of(self, ptype: str) -> int:
        """The count last asked for from here (not answered yet), else the server's."""
        if ptype in self._asked:
            return self._asked[ptype]
        formation: dict[str, int] = self.info.get("formation") or {}
        return int(formation.get(ptype, 0))

    def action_scale_up(self) -> None:
        if ptype := self.selected_type():
            self.ask_scale(ptype, self.count_of(ptype) + 1)

    def action_scale_down(self) -> None:
        if ptype := self.selected_type():
            self.ask_scale(ptype, self.count_of(ptype) - 1)

    def ask_scale(self, ptype: str, count: int) -> None:
        self._asked[ptype] = count
        self.scale(ptype, count)

    def action_scale_to(self) -> None:
        ptype = self.selected_type()
        if not ptype:
            return

        def answered(text: str | None) -> None:
            if text is None or not ptype:
                return
            count = fmt.parse_count(text)
            if count is None:
                self.app.notify(
                    f"Invalid count {text!r}: use a whole number.", severity="error", markup=False
                )
                return
            self.ask_scale(ptype, count)

        self.app.push_screen(
            PromptScreen(f"How many {ptype} dynos?", value=str(self.count_of(ptype))), answered
        )

    @work(group="actions", exit_on_error=False)
    async def scale(self, ptype: str, count: int) -> None:
        async with self._scaling:
            formation = await self.app.call(
                self.app.api.scale(self.app_name, {ptype: count}), app_name=self.app_name
            )
        if self._asked.get(ptype) == count:  # the last one asked: counts come from info again
            del self._asked[ptype]
        if formation is not None:
            self.info["formation"] = formation
            self.app.notify(f"Scaled {self.app_name} {ptype} to {count}.", markup=False)
            self.render_all()
            self.reload(changed=True)

    def action_restart(self) -> None:
        if ptype := self.selected_type():
            self.restart(ptype)

    def action_restart_all(self) -> None:
        self.restart(None)

    @work(group="actions", exit_on_error=False)
    async def restart(self, ptype: str | None) -> None:
        done = await self.app.call(
            self.app.api.restart(self.app_name, ptype), app_name=self.app_name
        )
        if done is None:
            return
        self.app.notify(f"Restarting {ptype or 'all'} dynos of {self.app_name}.", markup=False)
        self.reload(changed=True)

    # -- releases ----------------------------------------------------------------------------

    def action_rollback(self) -> None:
        key = self.query_one("#releases-table", KeyedTable).selected_key
        if key is None:
            return
        version = int(key)
        if version == self.info.get("release"):
            self.app.notify(f"v{version} is already the current release.", markup=False)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.rollback(version)

        self.app.push_screen(
            ConfirmScreen(
                f"Roll {self.app_name} back to v{version}? This makes a new release with "
                f"v{version}'s code and config and restarts the dynos.",
                yes="Roll back",
            ),
            answered,
        )

    @work(group="actions", exit_on_error=False)
    async def rollback(self, version: int) -> None:
        try:
            release = await self.app.api.rollback(self.app_name, version)
        except ApiError as exc:
            self.app.report(exc, app_name=self.app_name)
            return
        self.app.notify(
            f"Rolled back {self.app_name} to v{version}"
            + (f", now v{release}." if release else "."),
            markup=False,
        )
        self.reload(changed=True)

    # -- config ------------------------------------------------------------------------------

    def action_reveal(self) -> None:
        self.revealed = not self.revealed
        self.render_all()

    def action_set_config(self) -> None:
        key = self.query_one("#config-table", KeyedTable).selected_key
        current = f"{key}=" if key else ""

        def answered(text: str | None) -> None:
            if not text:
                return
            pair = fmt.parse_assignment(text)
            if pair is None:
                self.app.notify(
                    f"Invalid config {text!r}: use KEY=VALUE.", severity="error", markup=False
                )
                return
            self.change_config({pair[0]: pair[1]}, f"Set {pair[0]}")

        self.app.push_screen(
            PromptScreen("Set a config var (KEY=VALUE):", value=current, placeholder="KEY=VALUE"),
            answered,
        )

    def action_unset_config(self) -> None:
        key = self.query_one("#config-table", KeyedTable).selected_key
        if not key:
            return

        def answered(yes: bool | None) -> None:
            if yes and key:
                self.change_config({key: None}, f"Unset {key}")

        self.app.push_screen(
            ConfirmScreen(f"Unset {key} on {self.app_name}? The dynos restart.", yes="Unset"),
            answered,
        )

    @work(group="actions", exit_on_error=False)
    async def change_config(self, changes: dict[str, str | None], what: str) -> None:
        config = await self.app.call(
            self.app.api.set_config(self.app_name, changes), app_name=self.app_name
        )
        if config is not None:
            self.config = config
            self.app.notify(f"{what} on {self.app_name}; restarting dynos.", markup=False)
            self.render_all()
            self.reload(changed=True)

    # -- domains -----------------------------------------------------------------------------

    def action_add_domain(self) -> None:
        def answered(text: str | None) -> None:
            if text and text.strip():
                self.add_domain(text.strip())

        self.app.push_screen(
            PromptScreen(
                f"Add a domain to {self.app_name} (point its DNS at this server):",
                placeholder="www.example.com",
            ),
            answered,
        )

    @work(group="actions", exit_on_error=False)
    async def add_domain(self, hostname: str) -> None:
        # The server validates the name (and refuses minipaas's own domain): its sentence is
        # the notification.
        domain = await self.app.call(
            self.app.api.add_domain(self.app_name, hostname), app_name=self.app_name
        )
        if domain is None:
            return
        added = str(domain.get("hostname") or hostname)
        self.app.notify(f"Added {added} to {self.app_name}.", markup=False)
        if self.domains is not None:
            self.domains = [d for d in self.domains if d.get("hostname") != added] + [domain]
        if added not in (hosts := list(self.info.get("domains") or [])):
            self.info["domains"] = [*hosts, added]
        self.render_all()
        with contextlib.suppress(NoMatches):
            table = self.query_one("#domains-table", KeyedTable)
            if added in (keys := table.row_keys()):
                table.move_cursor(row=keys.index(added), animate=False)
        self.reload(changed=True)

    def action_remove_domain(self) -> None:
        host = self.query_one("#domains-table", KeyedTable).selected_key
        if not host:
            return

        def answered(yes: bool | None) -> None:
            if yes and host:
                self.remove_domain(host)

        self.app.push_screen(
            ConfirmScreen(
                f"Remove {host} from {self.app_name}? It stops answering there.", yes="Remove"
            ),
            answered,
        )

    @work(group="actions", exit_on_error=False)
    async def remove_domain(self, hostname: str) -> None:
        try:
            await self.app.api.remove_domain(self.app_name, hostname)
        except ApiError as exc:
            # A 404 about the domain (removed meanwhile) is not the app being gone.
            gone_domain = exc.status == 404 and "domain" in str(exc)
            self.app.report(exc, app_name=None if gone_domain else self.app_name)
            if gone_domain:
                self.reload(changed=True)
            return
        self.app.reconnected()
        self.app.notify(f"Removed {hostname} from {self.app_name}.", markup=False)
        if self.domains is not None:
            self.domains = [d for d in self.domains if d.get("hostname") != hostname]
        self.info["domains"] = [h for h in self.info.get("domains") or [] if h != hostname]
        self.render_all()
        self.reload(changed=True)

    # -- drains ------------------------------------------------------------------------------

    def action_add_drain(self) -> None:
        def answered(text: str | None) -> None:
            if text and text.strip():
                self.add_drain(text.strip())

        self.app.push_screen(
            PromptScreen(
                f"Copy {self.app_name}'s log lines to (syslog://HOST:PORT, "
                "syslog+tls://HOST:PORT or https://HOST/PATH):",
                placeholder="syslog+tls://logs.example.com:6514",
            ),
            answered,
        )

    @work(group="actions", exit_on_error=False)
    async def add_drain(self, url: str) -> None:
        # The server checks the URL: its sentence is the notification, the user name it keeps
        # in a URL (it hides the password) hidden too.
        try:
            drain = await self.app.api.add_drain(self.app_name, url)
        except ApiError as exc:
            said = ApiError(fmt.without_userinfo_in(str(exc)), exc.status)
            self.app.report(said, app_name=self.app_name)
            return
        self.app.reconnected()
        token = str(drain.get("token", ""))
        shown = fmt.without_userinfo(str(drain.get("url") or url))
        self.app.notify(
            f"Added drain {shown} ({token}) to {self.app_name}: its new log lines go there.",
            markup=False,
        )
        if self.drains is not None:
            self.drains = [d for d in self.drains if d.get("token") != token] + [drain]
        self.render_all()
        with contextlib.suppress(NoMatches):
            table = self.query_one("#drains-table", KeyedTable)
            if token in (keys := table.row_keys()):
                table.move_cursor(row=keys.index(token), animate=False)
        self.reload(changed=True)

    def action_remove_drain(self) -> None:
        token = self.query_one("#drains-table", KeyedTable).selected_key
        if not token:
            return
        url = next(
            (str(d.get("url", "")) for d in self.drains or [] if d.get("token") == token), ""
        )
        shown = fmt.clean_cell(fmt.without_userinfo(url) or token)

        def answered(yes: bool | None) -> None:
            if yes and token:
                self.remove_drain(token, shown)

        self.app.push_screen(
            ConfirmScreen(
                f"Remove the drain {shown} from {self.app_name}? Its log lines stop going there.",
                yes="Remove",
            ),
            answered,
        )

    @work(group="actions", exit_on_error=False)
    async def remove_drain(self, token: str, shown: str) -> None:
        try:
            await self.app.api.remove_drain(self.app_name, token)
        except ApiError as exc:
            # A 404 about the drain (removed meanwhile) is not the app being gone.
            gone_drain = exc.status == 404 and "has no drain" in str(exc)
            self.app.report(exc, app_name=None if gone_drain else self.app_name)
            if gone_drain:
                self.reload(changed=True)
            return
        self.app.reconnected()
        self.app.notify(f"Removed drain {shown} from {self.app_name}.", markup=False)
        if self.drains is not None:
            self.drains = [d for d in self.drains if d.get("token") != token]
        self.render_all()
        self.reload(changed=True)

    # -- maintenance, other screens ----------------------------------------------------------

    def action_maintenance(self) -> None:
        # Like + and -: a second M before the first answer flips what the first asked for
        # (both asked for "on" from the same stale state).
        was = self._maintenance_asked
        on = not (self.info.get("maintenance") if was is None else was)
        self._maintenance_asked = on
        self.set_maintenance(on)

    @work(group="actions", exit_on_error=False)
    async def set_maintenance(self, on: bool) -> None:
        async with self._scaling:
            done = await self.app.call(
                self.app.api.maintenance(self.app_name, on), app_name=self.app_name
            )
        if self._maintenance_asked == on:
            self._maintenance_asked = None
        if done is None:
            return
        self.info["maintenance"] = on
        self.app.notify(
            f"Maintenance mode {'on' if on else 'off'} for {self.app_name}.", markup=False
        )
        self.render_all()
        self.reload(changed=True)

    def action_logs(self) -> None:
        from tui.screens.logs import LogsScreen

        self.app.push_screen(LogsScreen(self.app_name))

    def action_metrics(self) -> None:
        from tui.screens.metrics import MetricsScreen

        self.app.push_screen(MetricsScreen(self.app_name))
