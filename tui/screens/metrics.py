"""The metrics screen: the last hour of one app's throughput, latency, errors, CPU and memory,
and the router's error codes (H10, H12, …) of that hour.

Owns: turning `/api/apps/{app}/metrics` into sparklines, refreshed every few seconds, and
`/api/apps/{app}/errors?hours=1` into a line under the errors panel (read from the app's log
files by the server: asked for only while this screen is the one shown, at most every
ERRORS_EVERY seconds). Says so plainly when the server has no metrics or error counts yet.
Must not touch: I/O beyond `self.app.api`.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.css.query import NoMatches
from textual.widgets import Footer, Header, Static

from tui import format as fmt
from tui.api import ApiError
from tui.screens.app_detail import AppBound
from tui.widgets.metric import MetricPanel

WINDOW = 3600
#: The router codes are counted from the app's log files: at most this often (seconds).
ERRORS_EVERY = 10.0


def router_errors_text(answer: dict[str, Any] | None, *, loaded: bool = True) -> str:
    """The line under the errors panel: the last hour's router error codes with their counts,
    most first (`H12 Request timeout 3 · H10 App crashed 1`), from the `apps:errors` answer
    (pure). None: the server has no errors endpoint."""
    head = "Router errors (last hour): "
    if not loaded:
        return head + fmt.DASH
    if answer is None:
        return head + "this server does not count them (no errors endpoint)."
    router = answer.get("router")
    descriptions = answer.get("descriptions")
    if not isinstance(router, dict):
        router = {}
    if not isinstance(descriptions, dict):
        descriptions = {}
    counts = [(str(code), n) for code, n in router.items() if isinstance(n, int) and n > 0]
    if not counts:
        return head + "none"
    counts.sort(key=lambda item: (-item[1], item[0]))
    return head + " · ".join(
        " ".join(part for part in (code, str(descriptions.get(code) or ""), str(n)) if part)
        for code, n in counts
    )


def summarize(data: dict[str, Any]) -> dict[str, tuple[list[float], str, str]]:
    """Panel id → (series, current value, peak) from the metrics answer (pure)."""
    router = [p for p in data.get("router") or [] if isinstance(p, dict)]
    dynos = {k: v for k, v in (data.get("dynos") or {}).items() if isinstance(v, list)}
    current = data.get("current") or {}
    rps = fmt.series(router, "rps")
    p95 = fmt.series(router, "p95")
    errors = fmt.sum_series([fmt.series(router, "r5xx"), fmt.series(router, "r4xx")])
    cpu = fmt.sum_series([fmt.series(points, "cpu") for points in dynos.values()])
    rss = fmt.sum_series([fmt.series(points, "rss") for points in dynos.values()])

    def cur(key: str, fallback: list[float]) -> float | None:
        value = fmt.number(current.get(key))
        return value if value is not None else (fallback[-1] if fallback else None)

    r5, r4 = fmt.number(current.get("r5xx")), fmt.number(current.get("r4xx"))
    if r5 is not None or r4 is not None:
        err_now: float | None = (r5 or 0.0) + (r4 or 0.0)
    else:
        err_now = errors[-1] if errors else None
    return {
        "rps": (rps, fmt.rate(cur("rps", rps)), fmt.rate(max(rps, default=None))),
        "p95": (p95, fmt.millis(cur("p95", p95)), fmt.millis(max(p95, default=None))),
        "errors": (errors, fmt.rate(err_now), fmt.rate(max(errors, default=None))),
        "cpu": (cpu, fmt.percent(cur("cpu", cpu)), fmt.percent(max(cpu, default=None))),
        "rss": (rss, fmt.size(cur("rss", rss)), fmt.size(max(rss, default=None))),
    }


class MetricsScreen(AppBound):
    BINDINGS = [Binding("r", "refresh", "Refresh"), Binding("l", "logs", "Logs")]

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="▲")
        yield Static(
            f"{self.app_name} · last hour", id="metrics-summary", classes="summary", markup=False
        )
        with VerticalScroll(id="panels"):
            yield MetricPanel("Throughput (req/s)", id="rps")
            yield MetricPanel("Response time p95", id="p95")
            yield MetricPanel("Errors (4xx+5xx/s)", id="errors")
            yield Static(
                router_errors_text(None, loaded=False),
                id="router-codes",
                classes="note",
                markup=False,
            )
            yield MetricPanel("CPU (all dynos)", id="cpu")
            yield MetricPanel("Memory (all dynos)", id="rss")
        yield Footer()

    def __init__(self, app_name: str) -> None:
        super().__init__(app_name)
        self._errors_at = 0.0  # monotonic time of the last errors request; 0: at the next fetch

    def on_mount(self) -> None:
        self.action_refresh()
        self.set_interval(max(self.app.refresh_every, 1.0) * 2.5, self.action_refresh)

    def action_refresh(self) -> None:
        self.load()

    @work(exclusive=True, group="metrics", exit_on_error=False)
    async def load(self) -> None:
        with contextlib.suppress(NoMatches):  # the screen closed while we waited for the server
            await self._fetch()
            await self._fetch_errors()

    async def _fetch(self) -> None:
        api, name = self.app.api, self.app_name
        try:
            data = await api.metrics(name, since=WINDOW)
        except ApiError as exc:
            self.app.report(exc, app_name=name, refresh=f"metrics {name}")
            return
        self.app.refreshed(f"metrics {name}")
        summary = self.query_one("#metrics-summary", Static)
        if data is None:
            summary.update(
                f"{name} · this server does not collect metrics yet (no metrics endpoint)."
            )
            return
        resolution = data.get("resolution")
        summary.update(
            f"{name} · last hour"
            + (f" · one point every {resolution}s" if isinstance(resolution, int) else "")
        )
        for panel_id, (values, current, peak) in summarize(data).items():
            self.query_one(f"#{panel_id}", MetricPanel).show(values, current, peak)

    async def _fetch_errors(self) -> None:
        """The router codes of the last hour: only while this screen is shown (not under the
        logs screen), at most every ERRORS_EVERY seconds; an error is said once."""
        if self.app.screen is not self or time.monotonic() - self._errors_at < ERRORS_EVERY:
            return
        self._errors_at = time.monotonic()
        api, name = self.app.api, self.app_name
        try:
            answer = await api.errors(name, hours=1)
        except ApiError as exc:
            self.app.report(exc, app_name=name, refresh=f"errors {name}")
            return
        self.app.refreshed(f"errors {name}")
        self.query_one("#router-codes", Static).update(router_errors_text(answer))

    def action_logs(self) -> None:
        from tui.screens.logs import LogsScreen

        self.app.push_screen(LogsScreen(self.app_name))
