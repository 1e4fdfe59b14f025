"""Rendering of every TUI screen, as SVG snapshots (pytest-textual-snapshot), against a fake
transport with fixed data: no clocks, pids or ports in the pictures.

The fake implements the `tui.api.Transport` methods over in-memory data; the real client path
is covered by tests/test_tui.py (Pilot against a real server) and tests/test_tui_tmux.py.
Update the pictures with `pytest tests/test_tui_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from unittest.mock import patch

import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from minipaas.client import ApiError
from minipaas.drains import redacted
from tests.support.notify import record_notifications
from tests.support.ports import async_wait_for
from tui import format as fmt
from tui.app import MinipaasApp, create_app
from tui.screens.app_detail import AppScreen
from tui.screens.host import HostScreen
from tui.screens.logs import LogsScreen
from tui.screens.metrics import MetricsScreen
from tui.screens.modals import ConfirmScreen
from tui.widgets.logview import LogView
from tui.widgets.tables import KeyedTable

NOW = 1_800_000_000.0

APPS = [
    {"name": "shop", "release": 7, "url": "https://shop.example.com", "maintenance": False,
     "dynos_up": 3, "dynos_desired": 3, "rps": 41.5, "p95": 87.0, "rss": 312_000_000},
    {"name": "worker-web", "release": 2, "url": "https://worker-web.example.com",
     "maintenance": False, "dynos_up": 1, "dynos_desired": 2, "rps": 0.4, "p95": 3.2,
     "rss": 45_000_000},
    {"name": "blog", "release": 12, "url": "https://blog.example.com", "maintenance": True,
     "dynos_up": 1, "dynos_desired": 1, "rps": None, "p95": None, "rss": 61_000_000},
    {"name": "fresh", "release": None, "url": "https://fresh.example.com", "maintenance": False,
     "dynos_up": 0, "dynos_desired": 0},
]  # fmt: skip

DYNOS = [
    {"name": "web.1", "type": "web", "state": "up", "release": 7, "pid": 4242, "port": 5001,
     "started_at": None, "restarts": 0, "command": "gunicorn app:app", "exit_code": None,
     "cpu": 12.5, "rss": 104_857_600},
    {"name": "web.2", "type": "web", "state": "up", "release": 7, "pid": 4243, "port": 5002,
     "started_at": None, "restarts": 1, "command": "gunicorn app:app", "exit_code": None,
     "cpu": 9.0, "rss": 98_566_144},
    {"name": "worker.1", "type": "worker", "state": "crashed", "release": 7, "pid": None,
     "port": None, "started_at": None, "restarts": 5, "command": "python worker.py",
     "exit_code": 1, "cpu": None, "rss": None},
]  # fmt: skip

INFO: dict[str, Any] = {
    "name": "shop",
    "url": "https://shop.example.com",
    "git_url": "https://minipaas.example.com/git/shop.git",
    "release": 7,
    "maintenance": False,
    "created_at": NOW,
    "formation": {"web": 2, "worker": 1},
    "process_types": {"web": "gunicorn app:app", "worker": "python worker.py"},
    "dynos": DYNOS,
    "domains": ["shop.example.com", "www.shop.example.com"],
}

RELEASES = [
    {"version": v, "description": d, "created_by": "alice (ssh)", "created_at": NOW - 3600 * v,
     "current": v == 7, "status": "succeeded"}
    for v, d in [(5, "Deploy 1a2b3c4"), (6, "Set GREETING"), (7, "Deploy 9f8e7d6")]
]  # fmt: skip

CONFIG = {"DATABASE_URL": "postgres://shop:s3cret@db/shop", "GREETING": "bonjour"}

ADDONS = [
    {"service": "heroku-postgresql", "app": "shop", "name": "shop_1a2b3c4d",
     "config_var": "DATABASE_URL", "created_at": NOW - 86400 * 3, "plan": "local"},
]  # fmt: skip

PG_INFO = {**ADDONS[0], "size": 7_812_599, "connections": 3, "port": 5433,
           "version": "15.14 (Debian 15.14-0+deb12u1)"}  # fmt: skip

REDIS = {"service": "heroku-redis", "app": "shop", "name": "shop_9f8e7d6c",
         "config_var": "REDIS_URL", "created_at": NOW - 86400, "plan": "local"}  # fmt: skip
REDIS_INFO = {"version": "7.0.15", "port": 6380, "used_memory": 1_048_576,
              "maxmemory": 67_108_864, "maxmemory_policy": "noeviction", "clients": 2,
              "keys": 5, "persistence": "aof"}  # fmt: skip

DRAINS = [
    {"token": "d.0c5f2a1e-6b1d-4f3e-9a57-2f1e8d9c0b11", "app": "shop",
     "url": "syslog+tls://logs.example.com:6514", "created_at": NOW - 7200,
     "status": {"delivered": 1234, "dropped": 0, "failing_since": None, "error": None}},
    {"token": "d.9e8d7c6b-5a49-4382-a1b0-c9d8e7f6a5b4", "app": "shop",
     "url": "https://user:s3cret@collect.example.net/heroku", "created_at": NOW - 3600,
     "status": {"delivered": 10, "dropped": 52, "failing_since": NOW - 600,
                "error": "Connection refused"}},
]  # fmt: skip


def _points(n: int, f: Any) -> list[dict[str, Any]]:
    return [f(i) for i in range(n)]


# What `apps:errors` answers for the last hour (GET /api/apps/shop/errors?hours=1).
ERRORS: dict[str, Any] = {
    "app": "shop",
    "hours": 1,
    "since": "2027-01-15T07:00:00+00:00",
    "router": {"H10": 1, "H12": 3, "H27": 2},
    "dyno": {"web crashed": 1},
    "descriptions": {"H10": "App crashed", "H12": "Request timeout",
                     "H27": "Client Request Interrupted"},
}  # fmt: skip

METRICS = {
    "app": "shop",
    "resolution": 5,
    "router": _points(
        60,
        lambda i: {
            "t": NOW - 300 + 5 * i,
            "rps": 20 + (i % 12) * 3,
            "p50": 20,
            "p95": 60 + i % 9 * 5,
            "p99": 150,
            "r4xx": i % 5 == 0,
            "r5xx": 1 if i in (30, 31) else 0,
        },
    ),
    "dynos": {
        "web.1": _points(60, lambda i: {"t": NOW - 300 + 5 * i, "cpu": 5 + i % 7, "rss": 1e8}),
        "web.2": _points(60, lambda i: {"t": NOW - 300 + 5 * i, "cpu": 4 + i % 5, "rss": 9e7}),
    },
    "current": {
        "rps": 41.5,
        "p50": 20,
        "p95": 87.0,
        "p99": 150,
        "r4xx": 0.2,
        "r5xx": 0.0,
        "cpu": 21.5,
        "rss": 190_000_000,
    },
}

GIB = 1024**3

HOST = {
    "resolution": 5,
    "current": {"cpu": 23.5, "cpus": 2, "mem_used": int(1.5 * GIB), "mem_total": 4 * GIB,
                "disk_used": 12 * GIB, "disk_total": 40 * GIB},
    "sample_cpu_seconds": 0.002,
    "series": _points(
        60,
        lambda i: {"t": NOW - 300 + 5 * i, "cpu": 10 + (i % 10) * 3, "mem_used": GIB + i * 8e6,
                   "mem_total": 4 * GIB, "disk_used": 12 * GIB - (60 - i) * 1e6,
                   "disk_total": 40 * GIB},
    ),
}  # fmt: skip

LOG_LINES = [
    "2026-01-01T10:00:00.000000+00:00 app[web.1]: Listening on 0.0.0.0:5001",
    "2026-01-01T10:00:01.000000+00:00 router[web.1]: GET / 200 3ms",
    "2026-01-01T10:00:02.000000+00:00 app[worker.1]: heartbeat 1 from worker.1",
    "2026-01-01T10:00:03.000000+00:00 app[web.1]: bad bytes \ufffd\ufffd and \x1b[31mescapes",
    "2026-01-01T10:00:04.000000+00:00 app[worker.1]: heartbeat 2 from worker.1",
]


class FakeTransport:
    """In-memory stand-in for `AsyncClient`: same methods, fixed answers, records writes."""

    where = "fake://minipaas"

    def __init__(self) -> None:
        self.apps = copy.deepcopy(APPS)
        self.info = copy.deepcopy(INFO)
        self.config = dict(CONFIG)
        self.calls: list[tuple[str, str, Any]] = []
        self.down = False
        self.metrics_missing = False
        self.domains = [
            {"hostname": h, "app": "shop", "created_at": NOW - 86400} for h in INFO["domains"]
        ]
        self.addons = copy.deepcopy(ADDONS)
        self.drains = copy.deepcopy(DRAINS)
        self.older = False  # a server from before add-ons and drains
        self.info_error: str | None = None

    async def request(
        self, method: str, path: str, *, json_body: Any = None, params: Any = None
    ) -> Any:
        self.calls.append((method, path, json_body))
        if self.down:
            raise ApiError("Cannot reach the minipaas server at fake://minipaas.", 0)
        parts = path.strip("/").split("/")
        if path == "/api/apps":
            return self.apps
        if path == "/api/metrics/host":
            if self.metrics_missing:
                raise ApiError(f"No such API route: {path}.", 404)
            return HOST
        if len(parts) >= 3 and parts[2] not in ("shop", "worker-web", "blog", "fresh"):
            raise ApiError(f"No app named {parts[2]!r}.", 404)
        tail = "/".join(parts[3:])
        if tail == "":
            return self.info
        if tail == "dynos":
            return {"formation": self.info["formation"], "dynos": self.info["dynos"]}
        if tail == "releases":
            return RELEASES
        if tail == "config" and method == "GET":
            return self.config
        if tail == "config":
            for k, v in json_body.items():
                if v is None:
                    self.config.pop(k, None)
                else:
                    self.config[k] = v
            return self.config
        if tail == "formation":
            for k, v in json_body.items():
                if not 0 <= v <= 100:
                    raise ApiError(f"Invalid count {v} for {k!r}: use 0 to 100.", 400)
            self.info["formation"].update(json_body)
            return self.info["formation"]
        if tail == "metrics":
            if self.metrics_missing:
                raise ApiError(f"No such API route: {path}.", 404)
            return METRICS
        if tail == "maintenance":
            self.info["maintenance"] = json_body["on"]
            return {"maintenance": json_body["on"]}
        if tail == "domains" and method == "GET":
            return self.domains
        if tail == "certs":
            return [
                {"hostname": "shop.example.com", "status": "issued", "issuer": "Let's Encrypt",
                 "expires": "2027-03-06T08:00:00+00:00", "error": None},
                {"hostname": "www.shop.example.com", "status": "failing", "issuer": None,
                 "expires": None, "error": "DNS problem: NXDOMAIN looking up A for "
                 "www.shop.example.com - check that a DNS record exists for this domain"},
            ]  # fmt: skip
        if tail == "domains":
            host = str(json_body.get("hostname", "")).strip().lower()
            if not host or " " in host or "." not in host:
                raise ApiError(
                    f"Invalid hostname {json_body.get('hostname')!r}: use a DNS name such as "
                    "'www.example.com'.",
                    400,
                )
            if any(d["hostname"] == host for d in self.domains):
                raise ApiError(f"The domain {host!r} is already added to the app 'shop'.", 409)
            domain = {"hostname": host, "app": "shop", "created_at": NOW}
            self.domains.append(domain)
            self.info["domains"].append(host)
            return domain
        if tail.startswith("domains/") and method == "DELETE":
            host = tail.split("/", 1)[1]
            if not any(d["hostname"] == host for d in self.domains):
                raise ApiError(f"The domain {host!r} is not added to the app 'shop'.", 404)
            self.domains = [d for d in self.domains if d["hostname"] != host]
            self.info["domains"].remove(host)
            return {"removed": host}
        if self.older and tail.startswith(("addons", "drains", "errors")):
            raise ApiError(f"No such API route: {path}.", 404)
        if tail == "errors":
            return ERRORS
        if tail == "addons":
            return self.addons
        if tail == "addons/heroku-postgresql/info":
            if not self.addons:
                raise ApiError("The app 'shop' has no heroku-postgresql add-on.", 404)
            if self.info_error:
                raise ApiError(self.info_error, 503)
            return PG_INFO
        if tail == "addons/heroku-redis/info":
            return REDIS_INFO
        if tail == "drains" and method == "GET":
            return self.drains
        if tail == "drains" and method == "POST":
            url = str(json_body.get("url", ""))
            if not url.startswith(("syslog://", "syslog+tls://", "https://")):
                raise ApiError(  # as the server says it: the password hidden, not the user
                    f"The drain URL {redacted(url)!r} must start with syslog://, syslog+tls:// "
                    "or https:// (plain http would send the logs unencrypted).",
                    400,
                )
            drain = {"token": f"d.{len(self.drains):08d}-0000-4000-8000-000000000000",
                     "app": "shop", "url": url, "created_at": NOW, "status": None}  # fmt: skip
            self.drains.append(drain)
            return drain
        if tail == "drains" and method == "DELETE":
            key = json_body.get("drain")
            found = [d for d in self.drains if key in (d["token"], d["url"])]
            if not found:
                raise ApiError(f"The app 'shop' has no drain {key}.", 404)
            self.drains.remove(found[0])
            return {"removed": found[0]["token"], "url": found[0]["url"]}
        if tail == "restart":
            return {"restarted": parts[2], "type": json_body.get("type")}
        raise ApiError(f"No such API route: {path}.", 404)

    async def stream(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Any = None,
        read_timeout: float | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        dyno = (params or {}).get("dyno")
        for line in LOG_LINES:
            if dyno is None or f"[{dyno}]" in line:
                yield {"line": line}
        await asyncio.Event().wait()  # a tail never ends by itself

    async def aclose(self) -> None:
        pass


def fake_app() -> tuple[MinipaasApp, FakeTransport]:
    fake = FakeTransport()
    return create_app(lambda: fake, refresh_every=3600), fake


# -- the snapshots ----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Release dates are shown in local time: pin it (and put it back afterwards)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


async def settle(pilot: Pilot[Any]) -> None:
    await pilot.pause()
    app = pilot.app
    if isinstance(app.screen, AppScreen):
        await async_wait_for(lambda: app.screen.info.get("name") == "shop")  # type: ignore[attr-defined]
        # and the fetch a tab started (Add-ons asks for its database's info when opened)
        await async_wait_for(lambda: not any(w.is_running for w in app.workers))
    elif isinstance(app.screen, LogsScreen):
        view = app.screen.query_one(LogView)
        await async_wait_for(lambda: view.line_count >= 3)
    else:
        await async_wait_for(lambda: not any(w.is_running for w in app.workers))
    await pilot.pause()


def snap(snap_compare: Any, *keys: str, size: tuple[int, int] = (80, 24), push: Any = None) -> bool:
    app, _ = fake_app()

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        if push is not None:
            app.push_screen(push())
            await settle(pilot)
        for key in keys:
            await pilot.press(key)
            await settle(pilot)

    return bool(snap_compare(app, terminal_size=size, run_before=run_before))


def test_apps_list(snap_compare: Any) -> None:
    assert snap(snap_compare)


def test_app_dynos(snap_compare: Any) -> None:
    assert snap(snap_compare, push=lambda: AppScreen("shop"))


def test_app_releases(snap_compare: Any) -> None:
    assert snap(snap_compare, "2", push=lambda: AppScreen("shop"))


def test_app_config_masked(snap_compare: Any) -> None:
    assert snap(snap_compare, "3", push=lambda: AppScreen("shop"))


def test_rollback_confirmation(snap_compare: Any) -> None:
    assert snap(snap_compare, "2", "down", "b", push=lambda: AppScreen("shop"))


def test_logs(snap_compare: Any) -> None:
    assert snap(snap_compare, push=lambda: LogsScreen("shop"))


def test_metrics(snap_compare: Any) -> None:
    assert snap(snap_compare, push=lambda: MetricsScreen("shop"))


def test_host_metrics(snap_compare: Any) -> None:
    assert snap(snap_compare, push=HostScreen)


def test_app_domains(snap_compare: Any) -> None:
    assert snap(snap_compare, "4", push=lambda: AppScreen("shop"))


def test_add_domain_prompt(snap_compare: Any) -> None:
    assert snap(snap_compare, "4", "a", *"api.shop.example", push=lambda: AppScreen("shop"))


def test_remove_domain_confirmation(snap_compare: Any) -> None:
    assert snap(snap_compare, "4", "down", "x", push=lambda: AppScreen("shop"))


def test_app_addons(snap_compare: Any) -> None:
    assert snap(snap_compare, "5", push=lambda: AppScreen("shop"))


def test_app_drains(snap_compare: Any) -> None:
    """Delivering in green, failing in red (the cursor's row takes the cursor's colours), the
    URL without its credentials, the selected drain's status in full under the table."""
    assert snap(snap_compare, "6", push=lambda: AppScreen("shop"))


def test_help(snap_compare: Any) -> None:
    assert snap(snap_compare, "question_mark")


def test_tiny_terminal(snap_compare: Any) -> None:
    assert snap(snap_compare, size=(40, 12), push=lambda: AppScreen("shop"))


# -- behaviour with the fake (no server needed) ---------------------------------------------


async def test_lost_connection_is_said_once_and_back_once() -> None:
    app, fake = fake_app()
    app.refresh_every = 0.05
    seen = record_notifications(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        fake.down = True
        await async_wait_for(lambda: not app.connected)
        calls = len(fake.calls)
        await async_wait_for(lambda: len(fake.calls) > calls + 3)  # it keeps retrying
        fake.down = False
        await async_wait_for(lambda: app.connected)
        await pilot.pause()
    assert sum("Cannot reach" in m for m in seen) == 1
    assert sum("Reconnected" in m for m in seen) == 1


async def test_the_command_palette_offers_no_screenshot_on_the_server() -> None:
    """Over SSH the TUI runs on the server: a screenshot would land in the SSH user's working
    directory there."""
    app, _ = fake_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        titles = [command.title for command in app.get_system_commands(app.screen)]
    assert "Quit" in titles and "Theme" in titles
    assert "Screenshot" not in titles


async def test_metrics_missing_endpoint_is_explained() -> None:
    app, fake = fake_app()
    fake.metrics_missing = True
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.push_screen(MetricsScreen("shop"))
        await pilot.pause()
        summary = app.screen.query_one("#metrics-summary")
        await async_wait_for(lambda: "does not collect metrics" in str(summary.render()))
        await pilot.pause()


async def test_metrics_router_codes_asked_for_at_most_every_10_s_while_shown() -> None:
    """The last hour's router codes under the errors panel: most first, from the errors route,
    asked for once per ERRORS_EVERY while the screen is shown (the sparklines at every
    round), and not while the logs screen covers it; a server without the route is said so."""
    from tui.screens import metrics

    app, fake = fake_app()  # refresh_every=3600: the rounds below are the `r` key's

    def asked(tail: str) -> int:
        return sum(1 for call in fake.calls if call[1] == f"/api/apps/shop/{tail}")

    async def round_() -> None:
        before = asked("metrics")
        await pilot.press("r")
        await async_wait_for(lambda: asked("metrics") > before)
        await async_wait_for(lambda: not any(w.is_running for w in app.workers))

    async with app.run_test(size=(80, 40)) as pilot:
        await settle(pilot)
        app.push_screen(MetricsScreen("shop"))
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, MetricsScreen)
        line = screen.query_one("#router-codes", Static)
        want = ("Router errors (last hour): H12 Request timeout 3 · H27 Client Request "
                "Interrupted 2 · H10 App crashed 1")  # fmt: skip
        await async_wait_for(lambda: str(line.render()) == want)
        assert asked("errors") == 1
        for _ in range(3):
            await round_()
        assert asked("errors") == 1  # the sparklines refreshed, the counts waited
        screen._errors_at -= metrics.ERRORS_EVERY  # ten seconds later
        await round_()
        assert asked("errors") == 2
        await pilot.press("l")  # the logs screen over it: nothing asked for
        await pilot.pause()
        screen._errors_at -= metrics.ERRORS_EVERY
        await screen.load().wait()
        assert asked("errors") == 2
        await pilot.press("escape")
        await round_()
        assert asked("errors") == 3
        assert ("GET", "/api/apps/shop/errors", None) in fake.calls

    older, fake = fake_app()
    fake.older = True
    async with older.run_test(size=(80, 40)) as pilot:
        await settle(pilot)
        older.push_screen(MetricsScreen("shop"))
        await pilot.pause()
        line = older.screen.query_one("#router-codes", Static)
        await async_wait_for(lambda: "no errors endpoint" in str(line.render()))


def test_router_errors_text_without_codes() -> None:
    from tui.screens.metrics import router_errors_text

    assert router_errors_text({"router": {}}) == "Router errors (last hour): none"
    assert router_errors_text({"router": {"H99": 2}}) == "Router errors (last hour): H99 2"
    assert router_errors_text(None, loaded=False).endswith(fmt.DASH)


async def test_host_screen_from_the_apps_list_and_back() -> None:
    app, fake = fake_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("h")
        await settle(pilot)
        assert isinstance(app.screen, HostScreen)
        text = str(app.screen.query_one("#host-mem .metric-title").render())
        assert "1.5G / 4.0G (38%)" in text, text
        assert "2 CPUs" in str(app.screen.query_one("#host-summary").render())
        assert ("GET", "/api/metrics/host", None) in fake.calls
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HostScreen)


async def test_host_metrics_missing_endpoint_is_explained() -> None:
    app, fake = fake_app()
    fake.metrics_missing = True
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.push_screen(HostScreen())
        await pilot.pause()
        summary = app.screen.query_one("#host-summary")
        await async_wait_for(lambda: "does not collect host metrics" in str(summary.render()))


async def test_domain_errors_are_notifications_not_tracebacks() -> None:
    app, fake = fake_app()
    seen = record_notifications(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.push_screen(AppScreen("shop"))
        await settle(pilot)
        await pilot.press("4", "a", *"not a host", "enter")
        await async_wait_for(lambda: any("Invalid hostname 'not a host'" in m for m in seen))
        await pilot.press("a", *"shop.example.com", "enter")
        await async_wait_for(lambda: any("already added" in m for m in seen))
        fake.domains.clear()  # removed elsewhere meanwhile: the 404 is about the domain
        await pilot.press("x", "y")
        await async_wait_for(lambda: any("is not added" in m for m in seen))
        await pilot.pause()
        assert isinstance(app.screen, AppScreen)  # not mistaken for a deleted app
        assert not any("no longer exists" in m for m in seen)


def screen_text(app: MinipaasApp) -> str:
    """Everything drawn on the terminal now (the screen below a modal included)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(segment.text for segment in strip) for strip in strips)


def note(app: MinipaasApp, which: str) -> str:
    return str(app.screen.query_one(f"#{which}-note", Static).render())


async def open_shop(pilot: Pilot[Any], *keys: str) -> AppScreen:
    app = pilot.app
    await settle(pilot)
    app.push_screen(AppScreen("shop"))
    await settle(pilot)
    for key in keys:
        await pilot.press(key)
        await settle(pilot)
    assert isinstance(app.screen, AppScreen)
    return app.screen


def info_calls(fake: FakeTransport) -> int:
    return sum(path.endswith("/addons/heroku-postgresql/info") for _m, path, _b in fake.calls)


async def test_drains_add_and_remove_say_what_the_server_says() -> None:
    app, fake = fake_app()
    seen = record_notifications(app)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_shop(pilot, "6")
        table = app.screen.query_one("#drains-table", KeyedTable)
        await pilot.press("a", *"http://logs.example.com/x", "enter")
        await async_wait_for(lambda: any("must start with syslog://" in m for m in seen))
        await pilot.press("a", *"syslog://logs.example.com:514", "enter")
        await async_wait_for(lambda: any("Added drain syslog://logs.example.com:514" in m
                                         for m in seen))  # fmt: skip
        token = fake.drains[-1]["token"]
        await async_wait_for(lambda: table.selected_key == token)  # the new one, selected
        assert str(table.get_cell(token, "status")) == "unknown"  # no status: a word, no colour
        await pilot.press("x")
        await async_wait_for(lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await async_wait_for(
            lambda: ("DELETE", "/api/apps/shop/drains", {"drain": token}) in fake.calls
        )
        await async_wait_for(lambda: token not in table.row_keys())
        assert any("Removed drain syslog://logs.example.com:514 from shop" in m for m in seen)

        gone = fake.drains.pop(0)["token"]  # removed elsewhere meanwhile
        table.move_cursor(row=table.row_keys().index(gone), animate=False)
        await pilot.press("x", "y")
        await async_wait_for(lambda: any(f"has no drain {gone}" in m for m in seen))
        await async_wait_for(lambda: gone not in table.row_keys())
        assert isinstance(app.screen, AppScreen)  # not mistaken for a deleted app
        assert not any("no longer exists" in m for m in seen)


async def test_a_drain_urls_credentials_are_never_drawn() -> None:
    """The API lists a drain's URL as added, user and password included; the table, the
    note, the confirmation and the notifications show `***@` instead."""
    app, _ = fake_app()
    seen = record_notifications(app)
    async with app.run_test(size=(120, 30)) as pilot:
        await open_shop(pilot, "6", "down")
        drawn = [screen_text(app)]
        assert "https://***@collect.example.net/heroku" in drawn[0]
        assert "failing since 2027-01-15 07:50: Connection refused" in note(app, "drains")
        await pilot.press("x")
        await async_wait_for(lambda: isinstance(app.screen, ConfirmScreen))
        drawn.append(screen_text(app))
        assert "https://***@collect.example.net/heroku" in app.screen.question
        await pilot.press("y")
        await async_wait_for(lambda: any("Removed drain" in m for m in seen))
        await pilot.press("a", *"http://bob:pw123@h.example/p", "enter")  # refused: says why
        await async_wait_for(
            lambda: any("The drain URL 'http://***@h.example/p' must start" in m for m in seen)
        )
        await pilot.press("a", *"https://bob:pw123@h.example/p", "enter")
        await async_wait_for(lambda: any("Added drain" in m for m in seen))
        await settle(pilot)
        drawn.append(screen_text(app))
    everything = "\n".join(drawn + seen)
    assert "https://***@h.example/p" in everything
    for secret in ("s3cret", "user:", "pw123", "bob"):
        assert secret not in everything


async def test_addon_info_is_asked_for_only_while_its_tab_is_open() -> None:
    """`pg:info` runs SQL on the cluster: asked for when the Add-ons tab opens, then at most
    every INFO_EVERY seconds, not at each 2 s refresh; on another tab, never."""
    app, fake = fake_app()
    app.refresh_every = 0.02
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_shop(pilot)

        async def rounds(n: int) -> None:
            calls = len(fake.calls)
            await async_wait_for(lambda: len(fake.calls) >= calls + 6 * n)  # 6 GETs a round

        await rounds(5)
        assert info_calls(fake) == 0
        await pilot.press("5")
        await async_wait_for(lambda: info_calls(fake) == 1)
        table = screen.query_one("#addons-table", KeyedTable)
        await async_wait_for(lambda: str(table.get_cell("heroku-postgresql", "size")) == "7.5M")
        row = [str(c) for c in table.get_row("heroku-postgresql")]
        assert row == ["heroku-postgresql", "shop_1a2b3c4d", "local", "2027-01-12", "15.14",
                       "7.5M", "3"]  # fmt: skip
        assert "DATABASE_URL" in note(app, "addons")
        await rounds(5)
        assert info_calls(fake) == 1
        await pilot.press("1", "5")  # opened again: asked again
        await async_wait_for(lambda: info_calls(fake) == 2)


async def test_a_redis_addon_shows_its_memory_and_clients_and_its_own_destroy_command() -> None:
    app, fake = fake_app()
    fake.addons.append(copy.deepcopy(REDIS))
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_shop(pilot, "5")
        table = screen.query_one("#addons-table", KeyedTable)
        await async_wait_for(lambda: str(table.get_cell("heroku-redis", "size")) == "1.0M")
        assert [str(c) for c in table.get_row("heroku-redis")] == [
            "heroku-redis", "shop_9f8e7d6c", "local", fmt.day(REDIS["created_at"]), "7.0.15",
            "1.0M", "2"]  # fmt: skip
        assert "`minipaas addons:destroy heroku-postgresql -a shop" in note(app, "addons")
        await pilot.press("down")  # the Redis row: the note is about it
        await async_wait_for(lambda: "REDIS_URL" in note(app, "addons"))
        assert "`minipaas addons:destroy heroku-redis -a shop --confirm shop`" in note(
            app, "addons"
        )


async def test_addon_info_errors_are_said_once_and_kept_in_sight() -> None:
    app, fake = fake_app()
    fake.info_error = "PostgreSQL did not start: see the app's logs."
    seen = record_notifications(app)
    app.refresh_every = 0.02
    async with app.run_test(size=(100, 30)) as pilot:
        with patch("tui.screens.app_detail.INFO_EVERY", 0.0):  # asked at every round
            screen = await open_shop(pilot, "5")
            await async_wait_for(lambda: info_calls(fake) >= 5)
        said = "PostgreSQL info: PostgreSQL did not start: see the app's logs."
        await async_wait_for(lambda: note(app, "addons") == said)
        table = screen.query_one("#addons-table", KeyedTable)
        assert str(table.get_cell("heroku-postgresql", "version")) == "\u2013"
    assert sum("PostgreSQL did not start" in m for m in seen) == 1


async def test_empty_tabs_say_which_command_adds_one() -> None:
    app, fake = fake_app()
    fake.addons.clear()
    fake.drains.clear()
    seen = record_notifications(app)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_shop(pilot, "5")
        assert note(app, "addons") == (
            "No add-ons. `minipaas addons:create heroku-postgresql -a shop` (or heroku-redis) "
            "adds one."
        )
        await pilot.press("6")
        await settle(pilot)
        assert note(app, "drains").startswith("No log drains. a adds one")
    assert info_calls(fake) == 0 and not seen


async def test_a_server_without_addons_or_drains_is_said_in_the_tabs_not_as_errors() -> None:
    app, fake = fake_app()
    fake.older = True
    seen = record_notifications(app)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_shop(pilot, "5")
        assert "has no add-ons" in note(app, "addons")
        await pilot.press("6")
        await settle(pilot)
        assert "has no log drains" in note(app, "drains")
    assert not seen
