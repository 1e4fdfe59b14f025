"""The TUI driven with Pilot against a REAL server: one `minipaas server` for the module, with
one app pushed over HTTPS (a copy of sample-apps/worker-web plus a non-UTF-8 line writer and a
2,000 lines/s writer). Every change is checked through the API, not through the UI.

The lost-connection test starts (and stops, and restarts) a server of its own.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets._footer import FooterKey

from minipaas.client import AsyncClient, Client
from tests.paas import SAMPLES, Paas, commit, deployed, git_repo, https_push, start_paas
from tests.support.notify import record_notifications
from tests.support.ports import async_wait_for, free_port
from tests.test_drains import SyslogReceiver
from tui.app import MinipaasApp, create_app
from tui.format import DASH, MASK, day
from tui.screens.app_detail import AppScreen
from tui.screens.apps import AppsScreen
from tui.screens.host import HostScreen
from tui.screens.logs import LogsScreen
from tui.screens.metrics import MetricsScreen
from tui.screens.modals import ConfirmScreen, PromptScreen
from tui.widgets.logview import LogView
from tui.widgets.tables import KeyedTable

APP = "tw"
BAD = "import sys, time\nsys.stdout.buffer.write(b'bad \\xff\\xfe bytes here\\n')\n" \
      "sys.stdout.flush()\ntime.sleep(3600)\n"  # fmt: skip
FLOOD = """\
import sys, time
RATE, BATCH = 2000, 100
n, start = 0, time.monotonic()
out = sys.stdout
while True:
    for _ in range(BATCH):
        n += 1
        out.write(f"flood {n} t={time.time():.3f}\\n")
    out.flush()
    ahead = n / RATE - (time.monotonic() - start)
    if ahead > 0:
        time.sleep(ahead)
"""


@pytest.fixture(scope="module")
def paas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Paas]:
    work = tmp_path_factory.mktemp("tui")
    server = start_paas(work / "authorized_keys", work / "server.log")
    try:
        server.cli("apps:create", APP)
        repo = git_repo(SAMPLES / "worker-web", work / APP)
        (repo / "bad.py").write_text(BAD)
        (repo / "flood.py").write_text(FLOOD)
        with (repo / "Procfile").open("a") as procfile:
            procfile.write("bad: python bad.py\nflood: python flood.py\n")
        commit(repo, "extra process types")
        token = server.cli("auth:token").stdout.strip()
        deployed(https_push(server, repo, APP, token))
        server.cli("config:set", "GREETING=hi", "-a", APP)  # v2: something to roll back from
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.data_dir.parent, ignore_errors=True)
    server.assert_no_crashes()


def api(paas: Paas, path: str, method: str = "GET", body: Any = None) -> Any:
    with Client(socket=paas.data_dir / "minipaas.sock") as client:
        return client.request(method, path, json_body=body)


def tui(paas: Paas) -> MinipaasApp:
    return create_app(lambda: AsyncClient.from_env(paas.data_dir), refresh_every=0.5)


async def until(pilot: Pilot[Any], predicate: Callable[[], Any], timeout: float = 20) -> Any:
    async def check() -> Any:
        await pilot.pause()
        return predicate()

    return await async_wait_for(check, timeout=timeout, interval=0.05)


def table(app: MinipaasApp, selector: str) -> KeyedTable:
    return app.screen.query_one(selector, KeyedTable)


async def select_row(pilot: Pilot[Any], selector: str, key: str) -> None:
    found = await until(pilot, lambda: key in table(pilot.app, selector).row_keys())  # type: ignore[arg-type]
    assert found
    t = table(pilot.app, selector)  # type: ignore[arg-type]
    t.focus()
    t.move_cursor(row=t.row_keys().index(key), animate=False)
    await pilot.pause()


async def open_app(pilot: Pilot[Any], name: str = APP) -> AppScreen:
    await select_row(pilot, "#apps", name)
    await pilot.press("enter")
    screen = await until(
        pilot, lambda: isinstance(pilot.app.screen, AppScreen) and pilot.app.screen
    )
    await until(pilot, lambda: screen.info.get("name") == name)
    return screen  # type: ignore[no-any-return]


async def click_row(pilot: Pilot[Any], selector: str, key: str) -> None:
    """Click the row `key` of a table (with the mouse, where the row is drawn)."""
    await until(pilot, lambda: key in table(pilot.app, selector).row_keys())  # type: ignore[arg-type]
    t = table(pilot.app, selector)  # type: ignore[arg-type]
    row = t.row_keys().index(key)
    assert await pilot.click(t, offset=(2, 1 + row - int(t.scroll_y)))  # row 0 is the header
    await until(pilot, lambda: t.selected_key == key)


async def click_footer(pilot: Pilot[Any], action: str) -> None:
    """Click the footer's key for `action` (it must be shown: the footer is the mouse's menu)."""

    def key() -> FooterKey | None:
        return next((k for k in pilot.app.screen.query(FooterKey) if k.action == action), None)

    found = await until(pilot, key)
    assert await pilot.click(found), f"the footer key for {action!r} is hidden"
    await pilot.pause()


def formation(paas: Paas) -> dict[str, int]:
    return api(paas, f"/api/apps/{APP}")["formation"]  # type: ignore[no-any-return]


async def test_apps_list_shows_the_deployed_app(paas: Paas) -> None:
    app = tui(paas)
    async with app.run_test(size=(80, 24)) as pilot:
        assert isinstance(app.screen, AppsScreen)
        await until(pilot, lambda: APP in table(app, "#apps").row_keys())

        def row() -> list[str]:
            return [str(c) for c in table(app, "#apps").get_row(APP)]

        assert row()[0] == APP and row()[2] == "v2"
        await until(pilot, lambda: row()[1] == "up" and row()[3] == "1/1")


async def test_scale_up_and_down_with_keys(paas: Paas) -> None:
    app = tui(paas)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_app(pilot)
        await select_row(pilot, "#formation", "worker")
        await pilot.press("plus")
        await async_wait_for(lambda: formation(paas).get("worker") == 1, timeout=15)
        await until(pilot, lambda: "worker.1" in table(app, "#dynos-table").row_keys())
        await pilot.press("minus")
        await async_wait_for(lambda: formation(paas).get("worker") == 0, timeout=15)
        await until(pilot, lambda: str(table(app, "#formation").get_cell("worker", "scale")) == "0")


async def test_a_process_types_size_shows_beside_its_count(paas: Paas) -> None:
    app = tui(paas)
    api(paas, f"/api/apps/{APP}/sizes", "PATCH", {"worker": "128M"})
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await open_app(pilot)

            def scale(ptype: str) -> str:
                return str(table(app, "#formation").get_cell(ptype, "scale"))

            await until(pilot, lambda: scale("worker") == "0 · 128M")
            assert scale("web") == "1"  # no size: no memory quota, just the count
    finally:
        api(paas, f"/api/apps/{APP}/sizes", "PATCH", {"worker": None})


async def test_scale_to_an_invalid_count_shows_the_api_error(paas: Paas) -> None:
    app = tui(paas)
    async with app.run_test(size=(80, 24)) as pilot:
        seen = record_notifications(app)
        await open_app(pilot)
        await select_row(pilot, "#formation", "worker")
        await pilot.press("minus")  # worker is at 0: -1 goes to the server, which refuses
        await until(pilot, lambda: any("Invalid count -1" in m for m in seen))
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, PromptScreen))
        await pilot.press("ctrl+a", "ctrl+k", *"lots", "enter")
        await until(pilot, lambda: any("Invalid count 'lots'" in m for m in seen))
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, PromptScreen))
        await pilot.press("ctrl+a", "ctrl+k", *"101", "enter")
        await until(pilot, lambda: any("Invalid count 101" in m for m in seen))
        assert isinstance(app.screen, AppScreen)  # still working
        assert formation(paas).get("worker") == 0


async def test_rollback_asks_first_then_rolls_back(paas: Paas) -> None:
    before = api(paas, f"/api/apps/{APP}")["release"]
    app = tui(paas)
    async with app.run_test(size=(80, 24)) as pilot:
        seen = record_notifications(app)
        await open_app(pilot)
        await pilot.press("2")
        await select_row(pilot, "#releases-table", "1")
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")  # changed our mind: nothing happens
        await until(pilot, lambda: isinstance(app.screen, AppScreen))
        assert api(paas, f"/api/apps/{APP}")["release"] == before
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: any("Rolled back" in m or "route" in m for m in seen))
        if any("No such API route" in m for m in seen):
            pytest.skip("this server has no rollback endpoint yet")
        info = api(paas, f"/api/apps/{APP}")
        assert info["release"] != before
        releases = api(paas, f"/api/apps/{APP}/releases")
        current = next(r for r in releases if r["current"])
        assert "v1" in current["description"] or current["version"] == 1, current
        await until(pilot, lambda: str(info["release"]) in table(app, "#releases-table").row_keys())


async def test_config_masked_revealed_set_and_unset(paas: Paas) -> None:
    api(paas, f"/api/apps/{APP}/config", "PATCH", {"GREETING": "hi"})
    app = tui(paas)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_app(pilot)
        await pilot.press("3")
        await select_row(pilot, "#config-table", "GREETING")

        def cell(key: str) -> str:
            return str(table(app, "#config-table").get_cell(key, "value"))

        assert cell("GREETING") == MASK
        await pilot.press("v")
        await until(pilot, lambda: cell("GREETING") == "hi")
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, PromptScreen))
        await pilot.press("ctrl+a", "ctrl+k", *"TUI_VAR=from the tui", "enter")
        await async_wait_for(
            lambda: api(paas, f"/api/apps/{APP}/config").get("TUI_VAR") == "from the tui"
        )
        await select_row(pilot, "#config-table", "TUI_VAR")
        assert cell("TUI_VAR") == "from the tui"
        await pilot.press("u")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await async_wait_for(lambda: "TUI_VAR" not in api(paas, f"/api/apps/{APP}/config"))
        await until(pilot, lambda: "TUI_VAR" not in table(app, "#config-table").row_keys())


async def test_maintenance_toggle_and_domains(paas: Paas) -> None:
    api(paas, f"/api/apps/{APP}/domains", "POST", {"hostname": "tui.example.org"})
    app = tui(paas)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_app(pilot)
        summary = app.screen.query_one("#app-summary")
        await pilot.press("M")
        await async_wait_for(lambda: api(paas, f"/api/apps/{APP}")["maintenance"] is True)
        await until(pilot, lambda: "maintenance ON" in str(summary.render()))  # as a user sees
        await pilot.press("M")
        await async_wait_for(lambda: api(paas, f"/api/apps/{APP}")["maintenance"] is False)
        await until(pilot, lambda: "maintenance off" in str(summary.render()))
        await pilot.press("4")
        await until(pilot, lambda: "tui.example.org" in table(app, "#domains-table").row_keys())
        # Its certificate, from the internal CA (a custom domain's is issued up front).
        await until(pilot, lambda: str(table(app, "#domains-table").get_cell(
            "tui.example.org", "tls")).startswith("issued until 20"))


async def test_domains_add_and_remove(paas: Paas) -> None:
    host = "tui-add.example.org"
    app = tui(paas)
    async with app.run_test(size=(80, 24)) as pilot:
        seen = record_notifications(app)
        await open_app(pilot)
        await pilot.press("4")
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, PromptScreen))
        await pilot.press(*"bad_host!", "enter")  # the server says why not, as a notification
        await until(pilot, lambda: any("Invalid hostname 'bad_host!'" in m for m in seen))
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, PromptScreen))
        await pilot.press(*"www.localhost", "enter")  # under minipaas's own domain
        await until(pilot, lambda: any("own domain" in m for m in seen))
        assert isinstance(app.screen, AppScreen)

        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, PromptScreen))
        await pilot.press(*host, "enter")
        await async_wait_for(
            lambda: host in [d["hostname"] for d in api(paas, f"/api/apps/{APP}/domains")]
        )
        await until(pilot, lambda: any(f"Added {host}" in m for m in seen))
        await select_row(pilot, "#domains-table", host)
        assert str(table(app, "#domains-table").get_cell(host, "added")).startswith("20")

        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")  # changed our mind: nothing happens
        await until(pilot, lambda: isinstance(app.screen, AppScreen))
        assert host in api(paas, f"/api/apps/{APP}")["domains"]
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await async_wait_for(lambda: host not in api(paas, f"/api/apps/{APP}")["domains"])
        await until(pilot, lambda: host not in table(app, "#domains-table").row_keys())
        assert not any("Traceback" in m for m in seen)


async def test_drains_tab_adds_shows_and_removes_real_drains(paas: Paas) -> None:
    """A drain added with the keys gets the app's lines in a real syslog receiver and shows
    delivering; one added through the API, to a port where nothing listens and with a password
    in its URL, shows failing in red and why, its credentials never drawn; x removes it."""
    drains = f"/api/apps/{APP}/drains"
    receiver = SyslogReceiver(free_port()).start()
    secret = f"syslog://tuiuser:s3cret@127.0.0.1:{free_port()}"
    bad = api(paas, drains, "POST", {"url": secret})["token"]
    app = tui(paas)
    try:
        async with app.run_test(size=(120, 30)) as pilot:
            seen = record_notifications(app)
            await open_app(pilot)
            await pilot.press("6")
            await until(pilot, lambda: bad in table(app, "#drains-table").row_keys())
            await pilot.press("a")
            await until(pilot, lambda: isinstance(app.screen, PromptScreen))
            await pilot.press(*f"syslog://127.0.0.1:{receiver.port}", "enter")
            good = await async_wait_for(
                lambda: next((d["token"] for d in api(paas, drains) if d["token"] != bad), None)
            )
            await until(pilot, lambda: good in table(app, "#drains-table").row_keys())

            def status(token: str) -> Any:
                return table(app, "#drains-table").get_cell(token, "status")

            paas.curl(f"{APP}.localhost")  # a router line, for both drains
            await async_wait_for(lambda: any("router" in m for m in receiver.messages()))
            # The tab asks again every few seconds: the line the receiver got shows at the next.
            await until(
                pilot,
                lambda: str(status(good)).startswith("delivering · ")
                and str(status(good)) != "delivering · 0 sent",
            )
            await until(pilot, lambda: str(status(bad)) == "failing · Connection refused")
            assert [str(span.style) for span in status(bad).spans] == ["red"]
            assert [str(span.style) for span in status(good).spans] == ["green"]
            await select_row(pilot, "#drains-table", bad)
            note = app.screen.query_one("#drains-note")
            await until(pilot, lambda: "failing since" in str(note.render()))
            shown = str(table(app, "#drains-table").get_cell(bad, "url"))
            assert shown == f"syslog://***@127.0.0.1:{secret.rsplit(':', 1)[1]}"

            await pilot.press("x")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            assert "***@127.0.0.1" in app.screen.question  # type: ignore[attr-defined]
            await pilot.press("y")
            await async_wait_for(lambda: [d["token"] for d in api(paas, drains)] == [good])
            await until(pilot, lambda: table(app, "#drains-table").row_keys() == [good])
            assert not any("s3cret" in m or "tuiuser" in m for m in seen), seen
    finally:
        receiver.stop()
        for drain in api(paas, drains):
            api(paas, drains, "DELETE", {"drain": drain["token"]})


async def test_addons_tab_shows_a_real_databases_info(paas: Paas) -> None:
    """The empty state names the CLI command; once an add-on is made with it, the tab shows
    PostgreSQL's version, size and connections as the server's cluster reports them."""
    name = "tuipg"
    paas.cli("apps:create", name)
    try:
        app = tui(paas)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await open_app(pilot, name)
            await pilot.press("5")
            note = screen.query_one("#addons-note")
            command = f"`minipaas addons:create heroku-postgresql -a {name}`"
            await until(pilot, lambda: command in str(note.render()))
            paas.cli("addons:create", "heroku-postgresql", "-a", name, timeout=180)

            def row() -> list[str]:
                addons = table(app, "#addons-table")
                if "heroku-postgresql" not in addons.row_keys():
                    return [DASH] * 7
                return [str(c) for c in addons.get_row("heroku-postgresql")]

            await until(pilot, lambda: row()[4] != DASH, timeout=30)  # its info came
            info = api(paas, f"/api/apps/{name}/addons/heroku-postgresql/info")
            service, database, plan, created, version, size, connections = row()
            assert (service, database, plan) == ("heroku-postgresql", info["name"], "local")
            assert created == day(info["created_at"]) and version == info["version"].split()[0]
            assert size.endswith("M") and connections.isdigit(), row()
            assert "DATABASE_URL" in str(note.render())
    finally:
        paas.cli("apps:destroy", "-a", name, "--confirm", name)


async def test_host_metrics_screen(paas: Paas) -> None:
    app = tui(paas)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: APP in table(app, "#apps").row_keys())
        await pilot.press("h")
        screen = await until(pilot, lambda: isinstance(app.screen, HostScreen) and app.screen)

        def label(panel: str) -> str:
            return str(screen.query_one(f"#{panel} .metric-title").render())

        # One sampling round (every few seconds) is enough for memory and disk.
        await until(pilot, lambda: " / " in label("host-mem") and " / " in label("host-disk"), 30)
        assert "%)" in label("host-mem")
        summary = str(screen.query_one("#host-summary").render())
        assert "CPU" in summary and "last hour" in summary, summary
        await until(pilot, lambda: "%" in label("host-cpu"), 30)  # needs two rounds
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, AppsScreen))


async def test_mouse_open_scale_rollback_and_tabs(paas: Paas) -> None:
    """Everything of a round trip with the mouse only: the row opens the app (click it once
    to select, once more to open), footer keys act, the modal's buttons answer."""
    app = tui(paas)
    async with app.run_test(size=(100, 30)) as pilot:
        seen = record_notifications(app)
        await click_row(pilot, "#apps", APP)
        if not isinstance(app.screen, AppScreen):
            await click_row(pilot, "#apps", APP)  # a click on the selected row opens it
        screen = await until(pilot, lambda: isinstance(app.screen, AppScreen) and app.screen)
        await until(pilot, lambda: screen.info.get("name") == APP)

        await click_row(pilot, "#formation", "worker")
        await click_footer(pilot, "scale_up")
        await async_wait_for(lambda: formation(paas).get("worker") == 1, timeout=15)
        await until(pilot, lambda: str(table(app, "#formation").get_cell("worker", "scale")) == "1")
        await click_footer(pilot, "scale_down")
        await async_wait_for(lambda: formation(paas).get("worker") == 0, timeout=15)

        before = api(paas, f"/api/apps/{APP}")["release"]
        assert await pilot.click("#--content-tab-releases")
        await until(pilot, lambda: screen.tab == "releases")
        await click_row(pilot, "#releases-table", "1")
        await click_footer(pilot, "rollback")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert await pilot.click("#no")
        await until(pilot, lambda: isinstance(app.screen, AppScreen))
        assert api(paas, f"/api/apps/{APP}")["release"] == before
        await click_footer(pilot, "rollback")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert await pilot.click("#yes")
        await until(pilot, lambda: any("Rolled back" in m for m in seen))
        assert api(paas, f"/api/apps/{APP}")["release"] != before

        assert await pilot.click("#--content-tab-domains")
        await until(pilot, lambda: screen.tab == "domains")
        await click_footer(pilot, "add_domain")
        await until(pilot, lambda: isinstance(app.screen, PromptScreen))
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, AppScreen))

        await click_footer(pilot, "logs")
        logs = await until(pilot, lambda: isinstance(app.screen, LogsScreen) and app.screen)
        await click_footer(pilot, "source")
        await until(pilot, lambda: logs.source == "app")
        await click_footer(pilot, "pause")
        await until(pilot, lambda: logs.view.paused)
        await click_footer(pilot, "pause")
        await until(pilot, lambda: not logs.view.paused)
        await click_footer(pilot, "back")
        await until(pilot, lambda: isinstance(app.screen, AppScreen))


async def test_logs_dyno_filter_search_and_pause(paas: Paas) -> None:
    api(paas, f"/api/apps/{APP}/formation", "PATCH", {"worker": 1})
    app = tui(paas)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await open_app(pilot)
            await pilot.press("l")
            screen = await until(pilot, lambda: isinstance(app.screen, LogsScreen) and app.screen)
            view = screen.query_one(LogView)
            await until(pilot, lambda: any("heartbeat" in ln for ln in view.lines), timeout=30)
            assert any("web.1" in ln for ln in view.lines)  # unfiltered: everything
            await until(pilot, lambda: "worker.1" in screen.dynos)
            while screen.dyno != "worker.1":
                await pilot.press("d")
            await until(pilot, lambda: any("heartbeat" in ln for ln in view.lines), timeout=30)
            assert view.lines and all("[worker.1]" in ln for ln in view.lines)

            await pilot.press("slash")
            await pilot.press(*"heartbeat 1")
            await until(pilot, lambda: view.search == "heartbeat 1")
            assert all("heartbeat 1" in ln for ln in view.lines)
            await pilot.press("enter")

            await pilot.press("space")
            assert view.paused
            shown = view.line_count
            received = view.received
            await until(pilot, lambda: view.received > received + 1, timeout=10)
            assert view.line_count == shown  # paused: nothing new drawn
            await pilot.press("space")
            await until(pilot, lambda: not view.paused and view.unseen == 0)

            await pilot.press("s")  # source cycles to "app"
            assert screen.source == "app"
    finally:
        api(paas, f"/api/apps/{APP}/formation", "PATCH", {"worker": 0})


async def test_non_utf8_log_line_is_shown_replaced(paas: Paas) -> None:
    api(paas, f"/api/apps/{APP}/formation", "PATCH", {"bad": 1})
    app = tui(paas)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            app.push_screen(LogsScreen(APP, dyno="bad.1"))
            view = await until(
                pilot, lambda: isinstance(app.screen, LogsScreen) and app.screen.view
            )
            line = await until(
                pilot, lambda: next((ln for ln in view.lines if "bytes here" in ln), None), 30
            )
            assert "bad \ufffd\ufffd bytes here" in line
            assert isinstance(app.screen, LogsScreen)
    finally:
        api(paas, f"/api/apps/{APP}/formation", "PATCH", {"bad": 0})


async def test_metrics_screen_shows_the_last_hour(paas: Paas) -> None:
    for _ in range(5):
        paas.curl(f"{APP}.localhost")
    app = tui(paas)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_app(pilot)
        await pilot.press("m")
        screen = await until(pilot, lambda: isinstance(app.screen, MetricsScreen) and app.screen)
        summary = screen.query_one("#metrics-summary")

        def loaded() -> bool:
            text = str(summary.render())
            return "one point every" in text or "does not collect metrics" in text

        await until(pilot, loaded)


async def test_metrics_screen_shows_the_router_error_codes(paas: Paas) -> None:
    """Under the errors panel: the last hour's router codes as `apps:errors` counts them (a
    created, never pushed app answers 503 with H81, "Blank app")."""
    import json

    paas.cli("apps:create", "blankcodes")
    try:
        await async_wait_for(
            lambda: paas.curl("blankcodes.localhost")[0] == 503, timeout=15, interval=0.2
        )

        def counted() -> int:
            out = paas.cli("apps:errors", "-a", "blankcodes", "--hours", "1", "--json").stdout
            return int(json.loads(out)["router"].get("H81", 0))

        await async_wait_for(counted, timeout=15, interval=0.2)
        app = tui(paas)
        async with app.run_test(size=(80, 40)) as pilot:
            await open_app(pilot, "blankcodes")
            await pilot.press("m")
            screen = await until(
                pilot, lambda: isinstance(app.screen, MetricsScreen) and app.screen
            )
            line = screen.query_one("#router-codes")
            head = "Router errors (last hour): H81 Blank app "
            await until(pilot, lambda: str(line.render()).startswith(head))
            assert str(line.render()) == f"{head}{counted()}"
    finally:
        paas.cli("apps:destroy", "-a", "blankcodes", "--confirm", "blankcodes")


async def test_deleted_app_closes_its_screens(paas: Paas) -> None:
    paas.cli("apps:create", "doomed")
    app = tui(paas)
    async with app.run_test(size=(80, 24)) as pilot:
        seen = record_notifications(app)
        await open_app(pilot, "doomed")
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LogsScreen))
        paas.cli("apps:destroy", "-a", "doomed", "--confirm", "doomed")
        await until(pilot, lambda: isinstance(app.screen, AppsScreen))
        await until(pilot, lambda: "doomed" not in table(app, "#apps").row_keys())
        assert sum("no longer exists" in m for m in seen) == 1
        await select_row(pilot, "#apps", APP)  # and the UI keeps working
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, AppScreen))


async def test_tiny_terminal_40x12(paas: Paas) -> None:
    app = tui(paas)
    async with app.run_test(size=(40, 12)) as pilot:
        await open_app(pilot)
        assert app.screen.has_class("-short") and app.screen.has_class("-narrow")
        tabs = ("2", "3", "4", "5", "6", "1")
        for key in (*tabs, "l", "escape", "m", "escape", "question_mark", "escape"):
            await pilot.press(key)
            await pilot.pause()
        assert isinstance(app.screen, AppScreen)
        await pilot.resize_terminal(120, 40)
        await until(pilot, lambda: not app.screen.has_class("-short"))


async def test_lost_connection_is_reported_and_reconnects(tmp_path: Path) -> None:
    own = start_paas(tmp_path / "authorized_keys", tmp_path / "server.log")
    try:
        app = create_app(lambda: AsyncClient.from_env(own.data_dir), refresh_every=0.3)
        async with app.run_test(size=(80, 24)) as pilot:
            seen = record_notifications(app)
            await until(
                pilot, lambda: "0 apps" in str(app.screen.query_one("#apps-summary").render())
            )
            own.stop()
            await until(pilot, lambda: any("Cannot reach" in m for m in seen))
            assert "disconnected" in app.sub_title
            assert isinstance(app.screen, AppsScreen)
            await pilot.press("question_mark")  # still responsive
            await pilot.press("escape")
            started = time.monotonic()
            own.start()
            await until(pilot, lambda: any("Reconnected" in m for m in seen), timeout=30)
            assert time.monotonic() - started < 30
            assert sum("Cannot reach" in m for m in seen) == 1  # said once, not every retry
    finally:
        own.stop()
        shutil.rmtree(own.data_dir.parent, ignore_errors=True)


async def test_log_flood_2000_lines_per_second(paas: Paas) -> None:
    """Perf, reported not asserted: a dyno writes 2,000 lines/s; the logs screen follows it.

    Prints the rate the view received, how far behind the newest line was (writer's clock vs
    ours), and the worst lateness of a 50 ms timer in the UI (a frozen UI shows up there).
    """
    api(paas, f"/api/apps/{APP}/formation", "PATCH", {"flood": 1})
    app = tui(paas)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            lateness: list[float] = []
            expected = [time.monotonic() + 0.05]

            def tick() -> None:
                now = time.monotonic()
                lateness.append(now - expected[0])
                expected[0] = now + 0.05

            app.set_interval(0.05, tick)
            app.push_screen(LogsScreen(APP, dyno="flood.1"))
            view = await until(
                pilot, lambda: isinstance(app.screen, LogsScreen) and app.screen.view
            )
            await until(pilot, lambda: view.received > 0, timeout=30)
            start, first = time.monotonic(), view.received
            await until(pilot, lambda: view.received - first >= 10_000, timeout=60)
            elapsed = time.monotonic() - start
            rate = (view.received - first) / elapsed
            newest = view.ring[-1]
            written = float(newest.rsplit("t=", 1)[1])
            behind = time.time() - written
            await pilot.press("space")  # the UI still answers keys
            await until(pilot, lambda: view.paused)
            print(
                f"\nlog flood: {rate:,.0f} lines/s received over {elapsed:.1f}s; newest line "
                f"{behind * 1000:.0f} ms old; worst UI timer lateness "
                f"{max(lateness) * 1000:.0f} ms (median "
                f"{sorted(lateness)[len(lateness) // 2] * 1000:.0f} ms); view holds "
                f"{view.line_count:,} lines"
            )
            assert view.line_count <= 10_000
    finally:
        api(paas, f"/api/apps/{APP}/formation", "PATCH", {"flood": 0})
