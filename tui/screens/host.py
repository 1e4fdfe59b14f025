"""The host screen: the server's CPU, memory and the disk holding the data dir, over the last hour.

Owns: turning `GET /api/metrics/host` (`current` plus a `series` of points) into three
sparkline panels, refreshed every few seconds like the other screens. Says so plainly when the
server has no host metrics endpoint or no sample yet. Must not touch: I/O beyond `self.app.api`.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from tui import format as fmt
from tui.api import ApiError
from tui.widgets.metric import MetricPanel

if TYPE_CHECKING:
    from tui.app import MinipaasApp

WINDOW = 3600

Panel = tuple[list[float], str, str]


def summarize_host(data: dict[str, Any]) -> dict[str, Panel]:
    """Panel id → (series, current value, peak) from the host metrics answer (pure).

    The current value is the server's last sample, else the newest point of the series."""
    points = [p for p in data.get("series") or [] if isinstance(p, dict)]
    current = data.get("current") or {}
    newest = points[-1] if points else {}

    def now(key: str) -> float | None:
        value = fmt.number(current.get(key))
        return value if value is not None else fmt.number(newest.get(key))

    def peak(values: list[float], current: float | None) -> float | None:
        # The last sample may not be in the stored series yet.
        return max([*values, *([] if current is None else [current])], default=None)

    cpu, cpu_now = fmt.series(points, "cpu"), now("cpu")
    mem, mem_now = fmt.series(points, "mem_used"), now("mem_used")
    disk, disk_now = fmt.series(points, "disk_used"), now("disk_used")
    return {
        "host-cpu": (cpu, fmt.percent(cpu_now), fmt.percent(peak(cpu, cpu_now))),
        "host-mem": (
            mem,
            fmt.used_of(mem_now, now("mem_total")),
            fmt.size(peak(mem, mem_now)),
        ),
        "host-disk": (
            disk,
            fmt.used_of(disk_now, now("disk_total")),
            fmt.size(peak(disk, disk_now)),
        ),
    }


class HostScreen(Screen[None]):
    """The server itself (not one app); Escape goes back to the apps list."""

    BINDINGS = [Binding("escape", "back", "Back"), Binding("r", "refresh", "Refresh")]

    if TYPE_CHECKING:
        app: MinipaasApp

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="▲")
        yield Static("host · loading…", id="host-summary", classes="summary", markup=False)
        with VerticalScroll(id="host-panels"):
            yield MetricPanel("CPU (all cores)", id="host-cpu")
            yield MetricPanel("Memory used", id="host-mem")
            yield MetricPanel("Disk used (data dir)", id="host-disk")
        yield Footer()

    def on_mount(self) -> None:
        self.action_refresh()
        self.set_interval(max(self.app.refresh_every, 1.0) * 2.5, self.action_refresh)

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_refresh(self) -> None:
        self.load()

    @work(exclusive=True, group="host", exit_on_error=False)
    async def load(self) -> None:
        with contextlib.suppress(NoMatches):  # the screen closed while we waited for the server
            await self._fetch()

    async def _fetch(self) -> None:
        try:
            data = await self.app.api.host_metrics(since=WINDOW)
        except ApiError as exc:
            self.app.report(exc, refresh="host")
            return
        self.app.refreshed("host")
        summary = self.query_one("#host-summary", Static)
        if data is None:
            summary.update("host · this server does not collect host metrics (no endpoint).")
            return
        current = data.get("current") or {}
        cpus = current.get("cpus")
        resolution = data.get("resolution")
        parts = [f"host {self.app.where}"]
        if isinstance(cpus, int):
            parts.append(f"{cpus} CPU{'s' * (cpus != 1)}")
        parts.append("last hour")
        if isinstance(resolution, int):
            parts.append(f"one point every {resolution}s")
        if not current and not data.get("series"):
            parts.append("no sample yet")
        summary.update(" · ".join(parts))
        for panel_id, (values, now, peak) in summarize_host(data).items():
            self.query_one(f"#{panel_id}", MetricPanel).show(values, now, peak)
