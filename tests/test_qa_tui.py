"""QA of the TUI against a REAL server: values that look like Rich markup or carry control
characters (a Procfile command, config values), the logs screen's clear and status line,
and how a lost server is said in a short terminal (that test starts a server of its own).

One `minipaas server` for the module with one app pushed over HTTPS: a copy of
sample-apps/worker-web plus a `weird` process type whose command contains `[/x]` and which
prints a line with escape sequences and markup-like text.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.widgets import Header, Static
from textual.widgets._header import HeaderTitle

from minipaas.client import AsyncClient
from tests.paas import SAMPLES, Paas, commit, deployed, git_repo, https_push, start_paas
from tests.support.notify import record_notifications
from tests.test_tui import api, open_app, select_row, table, until
from tui.app import MinipaasApp, create_app
from tui.format import MASK, parse_count
from tui.screens.app_detail import AppScreen
from tui.screens.apps import AppsScreen
from tui.screens.help import HELP
from tui.screens.logs import DISCONNECTED, QUIET, SOURCES, LogsScreen

APP = "qa-weird"
WEIRD = r"""import sys, time
sys.stdout.write("ansi \x1b[31mred\x1b[0m \x1b]0;PWNED\x07 [bold]b[/bold] [/x]\n")
sys.stdout.flush()
time.sleep(3600)
"""


@pytest.fixture(scope="module")
def paas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Paas]:
    work = tmp_path_factory.mktemp("qa-tui")
    server = start_paas(work / "authorized_keys", work / "server.log")
    try:
        server.cli("apps:create", APP)
        repo = git_repo(SAMPLES / "worker-web", work / APP)
        (repo / "weird.py").write_text(WEIRD)
        with (repo / "Procfile").open("a") as procfile:
            procfile.write("weird: python weird.py [/x]\n")
        commit(repo, "a process type whose command looks like markup")
        token = server.cli("auth:token").stdout.strip()
        deployed(https_push(server, repo, APP, token))
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.data_dir.parent, ignore_errors=True)
    server.assert_no_crashes()


def tui(paas: Paas) -> MinipaasApp:
    return create_app(lambda: AsyncClient.from_env(paas.data_dir), refresh_every=0.5)


def cell(app: MinipaasApp, selector: str, key: str, column: str) -> str:
    return str(table(app, selector).get_cell(key, column))


async def test_markup_like_command_and_config_values_are_shown_as_they_are(paas: Paas) -> None:
    """A Procfile command or a config value such as `[/x]` crashed the TUI (Rich MarkupError:
    a DataTable reads str cells as markup); `[bold]` lost its brackets; an escape sequence in a
    value went to the terminal as it was."""
    api(
        paas,
        f"/api/apps/{APP}/config",
        "PATCH",
        {"CLOSE": "[/x] oops", "BOLD": "[bold]b[/bold]", "ESC": "\x1b]0;PWNED\x07t\nu"},
    )
    app = tui(paas)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_app(pilot, APP)
        await until(pilot, lambda: "weird" in table(app, "#formation").row_keys())
        assert cell(app, "#formation", "weird", "command") == "python weird.py [/x]"
        await pilot.press("3")
        assert cell(app, "#config-table", "CLOSE", "value") == MASK
        await pilot.press("v")
        await until(pilot, lambda: cell(app, "#config-table", "CLOSE", "value") == "[/x] oops")
        assert cell(app, "#config-table", "BOLD", "value") == "[bold]b[/bold]"
        assert cell(app, "#config-table", "ESC", "value") == "\ufffd]0;PWNED\ufffdt\ufffdu"
        for _ in range(3):  # drawn, and redrawn by the refreshes, without a crash
            await pilot.pause(0.2)
        await pilot.press("1")
        await select_row(pilot, "#formation", "weird")
        assert isinstance(app.screen, AppScreen) and app.is_running


async def test_clear_forgets_the_lines_so_a_search_does_not_bring_them_back(
    paas: Paas,
) -> None:
    """`c` cleared the screen but not the view's memory: the next search (or a resume) drew
    the cleared lines again."""
    api(paas, f"/api/apps/{APP}/formation", "PATCH", {"weird": 1})
    app = tui(paas)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            app.push_screen(LogsScreen(APP, dyno="weird.1"))
            view = await until(
                pilot, lambda: isinstance(app.screen, LogsScreen) and app.screen.view
            )
            line = await until(
                pilot, lambda: next((ln for ln in view.lines if "ansi" in ln), None), 30
            )
            # Escape sequences are replaced, markup-like text is kept as it is.
            assert "\x1b" not in line and "\x07" not in line
            assert "ansi \ufffd[31mred\ufffd[0m \ufffd]0;PWNED\ufffd [bold]b[/bold] [/x]" in line
            await pilot.press("c")
            await until(pilot, lambda: view.line_count == 0)
            await pilot.press("slash", *"ansi", "enter")
            await until(pilot, lambda: view.search == "ansi")
            await pilot.pause(0.3)  # a few flushes of the view
            assert view.line_count == 0 and not any("ansi" in ln for ln in view.lines)
            await pilot.press("space", "space")  # pause and resume: still nothing old
            await pilot.pause(0.3)
            assert view.line_count == 0
    finally:
        api(paas, f"/api/apps/{APP}/formation", "PATCH", {"weird": 0})


async def test_quiet_logs_and_a_lost_server_are_said_in_a_short_terminal(tmp_path: Path) -> None:
    """An app with no log lines showed "connecting…" for good (and, after the server came
    back, "disconnected; retrying…" for good). In a short terminal (the header hidden), once
    the notification was gone nothing said the server was unreachable and the data stale."""
    own = start_paas(tmp_path / "authorized_keys", tmp_path / "server.log")
    try:
        own.cli("apps:create", "quiet")
        app = create_app(lambda: AsyncClient.from_env(own.data_dir), refresh_every=0.3)
        async with app.run_test(size=(40, 12)) as pilot:
            await open_app(pilot, "quiet")
            header = app.screen.query_one(Header)
            assert not header.display  # short terminal: no chrome while all is well
            await pilot.press("l")
            screen = await until(pilot, lambda: isinstance(app.screen, LogsScreen) and app.screen)

            def status() -> str:
                return str(screen.query_one("#logs-status", Static).render())

            await until(pilot, lambda: status() == QUIET)
            own.stop()
            await until(pilot, lambda: status() == DISCONNECTED)
            assert app.sub_title.startswith("disconnected, retrying")
            await pilot.press("escape")  # the app screen, data from before the loss
            await until(pilot, lambda: isinstance(app.screen, AppScreen))
            await until(pilot, lambda: app.screen.query_one(Header).display)
            app.clear_notifications()  # as when its timeout is over
            await pilot.pause()
            title = app.screen.query_one(Header).query_one(HeaderTitle)
            assert str(title.render()).startswith("minipaas — disconnected, retrying")
            own.start()
            await until(pilot, lambda: app.connected, timeout=30)
            await until(pilot, lambda: not app.screen.query_one(Header).display)
            await pilot.press("l")
            screen = await until(pilot, lambda: isinstance(app.screen, LogsScreen) and app.screen)
            own.stop()
            await until(pilot, lambda: status() == DISCONNECTED)
            own.start()
            await until(pilot, lambda: status() == QUIET, timeout=30)
    finally:
        own.stop()
        shutil.rmtree(own.data_dir.parent, ignore_errors=True)


def test_the_scale_dialog_takes_ascii_whole_numbers_only() -> None:
    """`int()` read `1_0` as 10 dynos, and full-width or Arabic-Indic digits as numbers."""
    assert parse_count(" 0 ") == 0 and parse_count("+2") == 2 and parse_count("-1") == -1
    for typo in (
        "1_0",
        "\uff11\uff10",
        "\u0661\u0660",
        "1.5",
        "2 3",
        "",
        "0x10",
        "1e2",
        "9" * 5000,
    ):
        assert parse_count(typo) is None, typo


async def test_restarting_a_type_with_no_dynos_says_so_and_keeps_the_screen(
    paas: Paas,
) -> None:
    """`r` on a process type scaled to 0: the server answers 404 ("has no worker dynos to
    restart"); the TUI took any 404 about the app for the app being deleted, said so and
    closed the app's screens."""
    api(paas, f"/api/apps/{APP}/formation", "PATCH", {"worker": 0})
    app = tui(paas)
    async with app.run_test(size=(100, 30)) as pilot:
        seen = record_notifications(app)
        screen = await open_app(pilot, APP)
        await select_row(pilot, "#formation", "worker")
        await pilot.press("r")
        await until(pilot, lambda: any("no worker dynos to restart" in m for m in seen))
        await pilot.pause(0.5)  # a few refreshes
        assert app.screen is screen
        assert not any("no longer exists" in m for m in seen)


async def test_a_refresh_that_keeps_failing_is_said_once_and_kept_in_sight(paas: Paas) -> None:
    """With a bad API token every apps-list refresh failed with 401 and each added the same
    notification (one every 2 s, stacked for ever), while the list said "Loading apps…"."""
    client = AsyncClient(url=f"http://127.0.0.1:{paas.api_port}", token="not-the-token")
    requests = 0
    request = client.request

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal requests
        requests += 1
        return await request(*args, **kwargs)

    client.request = counted  # type: ignore[method-assign]
    app = create_app(lambda: client, refresh_every=0.1)
    seen = record_notifications(app)
    async with app.run_test(size=(100, 30)) as pilot:
        summary = app.screen.query_one("#apps-summary", Static)
        await until(
            pilot, lambda: "Cannot list the apps: Invalid API token" in str(summary.render())
        )
        await until(pilot, lambda: requests >= 8)  # several rounds, all refused
        assert sum("Invalid API token" in m for m in seen) == 1
        assert app.connected and isinstance(app.screen, AppsScreen)


async def test_quick_presses_of_plus_add_up(paas: Paas) -> None:
    """Three `+` that arrive together (key repeat, a slow link): each counted from the
    server's formation of before the first answer, so all three asked for 1 dyno."""
    api(paas, f"/api/apps/{APP}/formation", "PATCH", {"worker": 0})
    app = tui(paas)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            seen = record_notifications(app)
            await open_app(pilot, APP)
            await select_row(pilot, "#formation", "worker")
            for _ in range(3):  # as the driver posts keys read in one go
                app.post_message(events.Key("plus", "+"))
            await until(pilot, lambda: "Scaled qa-weird worker to 3." in seen)
            assert api(paas, f"/api/apps/{APP}")["formation"]["worker"] == 3
            await until(pilot, lambda: cell(app, "#formation", "worker", "scale") == "3")
            for _ in range(2):
                app.post_message(events.Key("minus", "-"))
            await until(pilot, lambda: "Scaled qa-weird worker to 1." in seen)
            assert api(paas, f"/api/apps/{APP}")["formation"]["worker"] == 1
    finally:
        api(paas, f"/api/apps/{APP}/formation", "PATCH", {"worker": 0})


async def test_two_quick_presses_of_m_leave_maintenance_as_it_was(paas: Paas) -> None:
    """Two `M` before the first answer both asked for "on" (from the same stale state)."""
    app = tui(paas)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            seen = record_notifications(app)
            await open_app(pilot, APP)
            for _ in range(2):
                app.post_message(events.Key("M", "M"))
            await until(pilot, lambda: f"Maintenance mode off for {APP}." in seen)
            assert seen.index(f"Maintenance mode on for {APP}.") == 0
            assert api(paas, f"/api/apps/{APP}")["maintenance"] is False
    finally:
        api(paas, f"/api/apps/{APP}/maintenance", "PUT", {"on": False})


def test_help_lists_every_log_source_the_s_key_cycles_through() -> None:
    """The help said `s` cycles through all, app, router, build, release: minipaas was left
    out (its own lines: deploys, scaling, dyno states)."""
    line = next(ln for ln in HELP.splitlines() if "source:" in ln)
    assert [word.strip() for word in line.split("source:")[1].split(",")] == [
        source or "all" for source in SOURCES
    ]


async def test_a_tab_key_pressed_as_the_app_screen_opens_is_kept(paas: Paas) -> None:
    """`3` right after the app screen opened showed Config for a moment, then Dynos again:
    the first table's focus, set on opening, switched its pane back (the keys of Config,
    e.g. `v`, then did nothing)."""
    app = tui(paas)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = AppScreen(APP)
        await app.push_screen(screen)
        # The opening focus on the first table, then `3` before that focus's messages went
        # round (what a quick Enter, 3 does over ssh; here in a fixed order).
        screen.query_one("#formation").focus()
        screen.action_tab("config")
        for _ in range(5):  # it stays there
            await pilot.pause(0.2)
            assert screen.tab == "config"
        assert app.focused is screen.query_one("#config-table")
        await pilot.press("v")
        assert screen.revealed
        await pilot.press("1")  # and the other tabs still come with their keys
        await until(pilot, lambda: screen.tab == "dynos")
        assert app.focused is screen.query_one("#formation")
