"""The TUI on a 16-colour terminal: every main screen stays readable, and nothing is said by
colour alone.

Each screen is rendered (the fake transport of tests/test_tui_snapshots.py, no server) under
three themes: Textual's default truecolour theme with every colour brought down to the 16
standard ones (what Rich does on a `TEXTUAL_COLOR_SYSTEM=standard` terminal, e.g. the Linux
console or `TERM=xterm` over a basic SSH client), and the native ANSI themes `ansi-dark` and
`ansi-light` (`App.ansi_color`: the terminal's own 16-colour palette). Checked on the rendered
cells: the key text is there, no letter is drawn in its own background colour, the selected
row differs from the others by a text attribute (bold/reverse/underline, so it also shows
without colour), and states are words, not coloured dots.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from rich.color import Color, ColorSystem
from rich.segment import Segment
from textual.pilot import Pilot

from tests.support.ports import async_wait_for
from tests.test_tui_snapshots import fake_app, settle
from tui.app import MinipaasApp
from tui.screens.app_detail import AppScreen
from tui.screens.host import HostScreen
from tui.screens.logs import LogsScreen
from tui.screens.metrics import MetricsScreen
from tui.widgets.tables import KeyedTable

THEMES = ["textual-dark", "ansi-dark", "ansi-light"]


@dataclass(frozen=True)
class Cell:
    char: str
    fg: int | None  # one of the 16 standard colours; None: the terminal's default
    bg: int | None
    marked: frozenset[str]  # the attributes that show without colour


def standard(color: Color | None) -> int | None:
    """The colour as a 16-colour terminal shows it (None: the terminal's default)."""
    if color is None or color.is_default:
        return None
    number = color.downgrade(ColorSystem.STANDARD).number
    return None if number is None else number % 16


def cells_of(segment: Segment) -> Iterator[Cell]:
    style = segment.style
    if style is None:
        fg = bg = None
        marked: frozenset[str] = frozenset()
    else:
        fg, bg = standard(style.color), standard(style.bgcolor)
        if style.reverse:
            fg, bg = bg, fg
        marked = frozenset(
            name for name in ("bold", "reverse", "underline", "italic") if getattr(style, name)
        )
    for char in segment.text:
        yield Cell(char, fg, bg, marked)


def grid(app: MinipaasApp) -> list[list[Cell]]:
    strips = app.screen._compositor.render_strips()
    return [[cell for segment in strip for cell in cells_of(segment)] for strip in strips]


def text(rows: list[list[Cell]]) -> str:
    return "\n".join("".join(c.char for c in row) for row in rows)


def invisible(rows: list[list[Cell]]) -> list[str]:
    """Lines holding letters or digits drawn in their own background colour."""
    bad = []
    for y, row in enumerate(rows):
        hidden = [c for c in row if c.char.isalnum() and c.fg is not None and c.fg == c.bg]
        if hidden:
            line = "".join(c.char for c in row).rstrip()
            bad.append(f"line {y}: {''.join(c.char for c in hidden)!r} in {line!r}")
    return bad


def row_marks(app: MinipaasApp, selector: str, key: str) -> frozenset[str]:
    """The non-colour attributes of the letters of `key`'s row in the table."""
    table = app.screen.query_one(selector, KeyedTable)
    y = table.region.y + 1 + table.row_keys().index(key) - int(table.scroll_y)
    x0, x1 = table.region.x, table.region.right
    row = grid(app)[y][x0:x1]
    return frozenset().union(*(c.marked for c in row if c.char.isalnum()))


@pytest.fixture(params=THEMES)
def theme(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def run(theme: str, pilot_steps: Any) -> None:
    app, _ = fake_app()
    app.theme = theme  # the ansi-* themes turn native ANSI colour on (`App.ansi_color`)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert app.native_ansi_color == theme.startswith("ansi")
        await pilot_steps(app, pilot)


def readable(app: MinipaasApp, *words: str, within: str | None = None) -> str:
    """Assert `words` are on the screen (or in the widget `within`: a modal's dialog, the
    screen behind it being dimmed on purpose) and every letter there is visible."""
    rows = grid(app)
    if within is not None:
        region = app.screen.query_one(within).region
        rows = [row[region.x : region.right] for row in rows[region.y : region.bottom]]
    shown = text(rows)
    for word in words:
        assert word in shown, f"{word!r} is not on the screen:\n{shown}"
    assert not invisible(rows), "\n".join(invisible(rows)) + "\n" + shown
    return shown


async def test_apps_list(theme: str) -> None:
    async def steps(app: MinipaasApp, pilot: Pilot[Any]) -> None:
        # States are words; the footer shows the keys (host metrics among them).
        readable(app, "shop", "up", "partial", "maintenance", "new", "v7", "Host", "Help")
        selected, other = row_marks(app, "#apps", "shop"), row_marks(app, "#apps", "blog")
        assert selected - other, f"the selected row is marked by colour alone: {selected}"
        await pilot.press("down", "down")
        await pilot.pause()
        assert row_marks(app, "#apps", "blog") - row_marks(app, "#apps", "shop")

    await run(theme, steps)


async def test_app_screen(theme: str) -> None:
    async def steps(app: MinipaasApp, pilot: Pilot[Any]) -> None:
        app.push_screen(AppScreen("shop"))
        await settle(pilot)
        readable(app, "web.1", "worker.1", "crashed", "up", "Scale", "Restart")
        await pilot.press("down")  # to the worker type
        await pilot.pause()
        assert row_marks(app, "#formation", "worker") - row_marks(app, "#formation", "web")
        await pilot.press("2")
        await settle(pilot)
        shown = readable(app, "Releases", "Deploy 9f8e7d6", "Rollback")
        assert "v7 ●" in shown  # the current release has a marker, not only a colour
        await pilot.press("4")
        await settle(pilot)
        readable(app, "www.shop.example.com", "Add", "Remove")
        await pilot.press("5")
        await settle(pilot)
        readable(app, "heroku-postgresql", "15.14", "7.5M", "addons:destroy")
        await pilot.press("6")
        await settle(pilot)
        readable(app, "delivering · 1,234 sent", "failing · Connection refused", "Add drain")

    await run(theme, steps)


async def test_logs(theme: str) -> None:
    async def steps(app: MinipaasApp, pilot: Pilot[Any]) -> None:
        app.push_screen(LogsScreen("shop"))
        await settle(pilot)
        readable(app, "heartbeat 2", "source: all", "following", "Pause")
        await pilot.press("space")
        await async_wait_for(lambda: "PAUSED" in text(grid(app)))
        readable(app, "PAUSED")  # a word, not a colour change

    await run(theme, steps)


async def test_metrics(theme: str) -> None:
    async def steps(app: MinipaasApp, pilot: Pilot[Any]) -> None:
        app.push_screen(MetricsScreen("shop"))
        await settle(pilot)
        readable(app, "Throughput (req/s): 42/s", "Memory (all dynos)", "Refresh")

    await run(theme, steps)


async def test_host_metrics(theme: str) -> None:
    async def steps(app: MinipaasApp, pilot: Pilot[Any]) -> None:
        app.push_screen(HostScreen())
        await settle(pilot)
        readable(app, "CPU (all cores): 23.5%", "1.5G / 4.0G (38%)", "12.0G / 40.0G (30%)")

    await run(theme, steps)


async def test_modal(theme: str) -> None:
    async def steps(app: MinipaasApp, pilot: Pilot[Any]) -> None:
        app.push_screen(AppScreen("shop"))
        await settle(pilot)
        await pilot.press("4", "a", *"api.shop.example")
        await settle(pilot)
        readable(
            app, "Add a domain to shop", "api.shop.example", "Escape to cancel", within=".dialog"
        )
        await pilot.press("escape", "2", "down", "b")
        await settle(pilot)
        readable(app, "Roll shop back to v6", "Roll back (y)", "No (n)", within=".dialog")

    await run(theme, steps)


def test_the_check_sees_text_drawn_in_its_own_background() -> None:
    """Dark grey on black is two colours in truecolour and one in 16: the check must see it."""
    from rich.style import Style

    hidden = list(cells_of(Segment("hi", Style(color="#1c1c1c", bgcolor="#000000"))))
    shown = list(cells_of(Segment("hi", Style(color="#c0c0c0", bgcolor="#000000", bold=True))))
    assert invisible([hidden]) and not invisible([shown])
    assert shown[0].marked == {"bold"}
