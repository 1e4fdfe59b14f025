"""The Metrics service end to end (real processes, a real SQLite file, an access log file),
its API routes through httpx.ASGITransport, the Prometheus text, and the CLI rendering."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from minipaas.api.metrics import metrics_routes, parse_since
from minipaas.errors import UserError
from minipaas.metrics import Metrics, render_metrics, render_prometheus
from minipaas.metrics.access import RouterSample
from minipaas.metrics.dynos import DynoSample
from minipaas.metrics.host import HostSample
from minipaas.store import Store
from minipaas.store.metrics import MetricsStore


def spawn(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", code],
        start_new_session=True,
        env={"PATH": os.environ["PATH"]},
    )


def kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@pytest.fixture
def busy() -> Iterator[int]:
    proc = spawn("while True: pass")
    try:
        yield proc.pid
    finally:
        kill(proc)


@pytest.fixture
def idle() -> Iterator[int]:
    proc = spawn("import time; time.sleep(600)")
    try:
        yield proc.pid
    finally:
        kill(proc)


def access_line(host: str, status: int, ms: float) -> str:
    return json.dumps(
        {
            "logger": "http.log.access.router",
            "request": {"host": host},
            "duration": ms / 1000,
            "size": 1,
            "status": status,
        }
    )


@dataclass
class World:
    store: Store
    sink: MetricsStore
    metrics: Metrics
    log: Path
    dynos: list[tuple[str, str, int]]

    def write_log(self, *lines: str) -> None:
        with self.log.open("a") as fh:
            fh.write("".join(line + "\n" for line in lines))


@pytest.fixture
async def world(tmp_path: Path, busy: int, idle: int) -> AsyncIterator[World]:
    store = Store(tmp_path / "minipaas.db")
    await store.open()
    await store.create_app("web")
    await store.create_app("quiet")
    sink = MetricsStore(store)
    log = tmp_path / "access.log"
    log.write_text(access_line("web.localhost", 200, 1) + "\n")  # history: never counted
    dynos = [("web", "web.1", busy), ("web", "worker.1", idle), ("quiet", "web.1", idle)]
    hosts = {"web.localhost": "web", "www.example.com": "web", "quiet.localhost": "quiet"}
    metrics = Metrics(
        sink,
        5.0,
        dynos=lambda: dynos,
        access_log=log,
        host_to_app=hosts.get,
        data_dir=tmp_path,
    )
    try:
        yield World(store, sink, metrics, log, dynos)
    finally:
        await sink.close()
        await store.close()


async def rounds_until_cpu(world: World) -> None:
    """Sample until the busy dyno's CPU figure shows (needs two rounds some time apart)."""
    deadline = time.monotonic() + 10
    while True:
        await world.metrics.sample_once()
        cpu = world.metrics.latest("web")["dynos"]["web.1"]["cpu"]
        if cpu is not None and cpu > 50:
            return
        assert time.monotonic() < deadline, "no CPU figure in time"
        await asyncio.sleep(0.2)  # the sampling interval of this test


async def test_sampling_rounds_fill_latest_and_the_series(world: World) -> None:
    await rounds_until_cpu(world)
    world.write_log(
        *[access_line("web.localhost:443", 200, 10) for _ in range(37)],
        access_line("WWW.example.com", 404, 20),
        access_line("www.example.com", 503, 900),
        access_line("quiet.localhost", 500, 5),
        access_line("unknown.localhost", 200, 1),
    )
    last = await world.metrics.sample_once()
    web = last.routers["web"]
    assert web.requests == 39
    assert web.rps == pytest.approx(39 / last.seconds)
    assert (web.p50, web.p95, web.p99) == (10.0, 20.0, 900.0)
    assert web.r4xx == web.r5xx == pytest.approx(1 / last.seconds)
    assert last.routers["quiet"].requests == 1

    latest = world.metrics.latest("web")
    assert latest["rps"] > 0 and latest["p95"] == 20.0
    assert set(latest["dynos"]) == {"web.1", "worker.1"}
    assert latest["cpu"] is not None  # (this round came right after the last: ~0 %)
    assert latest["rss"] == sum(d["rss"] for d in latest["dynos"].values()) > 0
    assert world.metrics.latest("nope")["rss"] is None

    series = await world.metrics.app_series("web", 3600)
    assert series["resolution"] == 5
    assert len(series["router"]) >= 3
    assert series["router"][-1]["p99"] == 900.0
    assert set(series["dynos"]) == {"web.1", "worker.1"}
    assert max(p["cpu"] or 0 for p in series["dynos"]["web.1"]) > 50
    assert series["current"]["p95"] == 20.0
    host = await world.metrics.host_series(3600)
    assert host["current"]["mem_total"] > 0 and len(host["series"]) >= 3


async def test_run_loops_until_cancelled(world: World) -> None:
    world.metrics.interval = 0.05
    task = asyncio.create_task(world.metrics.run())
    try:
        deadline = time.monotonic() + 10
        while len(await world.sink.host_series(0, 5)) < 3:
            assert time.monotonic() < deadline, "the loop did not sample"
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # the first round of a minute rolled up what was there and pruned
    assert (await world.sink.counts()).get("host_samples/raw", 0) >= 3


# --- the API ----------------------------------------------------------------------------------


def api(world: World) -> httpx.AsyncClient:
    async def user_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, UserError)
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    app = Starlette(
        routes=metrics_routes(world.metrics, world.store, None),
        exception_handlers={UserError: user_error},
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_api_routes(world: World) -> None:
    await rounds_until_cpu(world)
    world.write_log(access_line("web.localhost", 200, 3), access_line("web.localhost", 500, 7))
    await world.metrics.sample_once()
    async with api(world) as client:
        r = await client.get("/api/apps/web/metrics", params={"since": "600"})
        assert r.status_code == 200, r.text
        data = r.json()
        assert data["app"] == "web" and data["resolution"] == 5
        assert set(data["current"]) == {"rps", "p50", "p95", "p99", "r4xx", "r5xx", "cpu", "rss"}
        assert data["current"]["rps"] > 0 and data["current"]["r5xx"] > 0
        assert data["current"]["cpu"] is not None
        assert max(p["cpu"] or 0 for p in data["dynos"]["web.1"]) > 50
        point = data["router"][-1]
        assert set(point) == {"t", "rps", "p50", "p95", "p99", "r4xx", "r5xx"}
        assert set(data["dynos"]["web.1"][-1]) == {"t", "cpu", "rss"}

        day = (await client.get("/api/apps/web/metrics?since=86400")).json()
        assert day["resolution"] == 60

        missing = await client.get("/api/apps/nope/metrics")
        assert missing.status_code == 404 and "nope" in missing.json()["error"]
        for bad in ("-5", "abc", "0", "86401", "1e3"):
            r = await client.get(f"/api/apps/web/metrics?since={bad}")
            assert r.status_code == 400, bad
            assert repr(bad) in r.json()["error"]
        assert (await client.get("/api/apps/Bad_Name/metrics")).status_code == 400

        host = await client.get("/api/metrics/host")
        assert host.status_code == 200
        body = host.json()
        assert body["current"]["disk_total"] > 0 and body["series"]

        prom = await client.get("/metrics")
        assert prom.status_code == 200
        assert prom.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert re.search(
            r'^minipaas_dyno_cpu_percent\{app="web",dyno="web.1"\} \d', prom.text, re.M
        )
        assert 'minipaas_app_response_time_ms{app="web",quantile="0.95"} 7' in prom.text
        assert 'minipaas_app_http_errors_per_second{app="web",class="5xx"} ' in prom.text


def test_parse_since() -> None:
    assert parse_since(None) == 3600
    assert parse_since("") == 3600
    assert parse_since("60") == 60
    with pytest.raises(UserError, match="Invalid since '99999'"):
        parse_since("99999")


# --- Prometheus text ----------------------------------------------------------------------------

PROM_LINE = re.compile(
    r'^[a-z_]+(\{[a-z_]+="(?:[^"\\]|\\.)*"(,[a-z_]+="(?:[^"\\]|\\.)*")*\})? -?[0-9.e+-]+$'
)


def test_prometheus_text_format() -> None:
    text = render_prometheus(
        [
            DynoSample("web", "web.2", 2, None, 2048, 1),
            DynoSample("web", "web.1", 1, 12.5, 1 << 20, 3),
        ],
        {
            "web": RouterSample("web", 10, 2.0, 1.5, 9.25, 30.0, 0.1, 0.0),
            'we"ird': RouterSample('we"ird', 0, 0.0, None, None, None, 0.0, 0.0),
        },
        HostSample(33.3, 100, 200, 300, 400, 2),
        0.0012,
    )
    lines = text.splitlines()
    assert text.endswith("\n")
    for ln in lines:
        assert ln.startswith("# HELP ") or ln.startswith("# TYPE ") or PROM_LINE.match(ln), ln
    # Every family has HELP then TYPE gauge before its samples.
    names = [ln.split()[2] for ln in lines if ln.startswith("# TYPE")]
    assert len(names) == len(set(names))
    assert all(f"# TYPE {n} gauge" in lines for n in names)
    assert 'minipaas_dyno_cpu_percent{app="web",dyno="web.1"} 12.5' in lines
    assert not any(
        ln.startswith('minipaas_dyno_cpu_percent{app="web",dyno="web.2"}') for ln in lines
    )
    assert 'minipaas_dyno_rss_bytes{app="web",dyno="web.1"} 1048576' in lines
    assert 'minipaas_app_requests_per_second{app="web"} 2' in lines
    assert 'minipaas_app_response_time_ms{app="web",quantile="0.95"} 9.25' in lines
    assert 'minipaas_app_http_errors_per_second{app="web",class="4xx"} 0.1' in lines
    assert 'minipaas_app_requests_per_second{app="we\\"ird"} 0' in lines
    assert "minipaas_host_cpu_percent 33.3" in lines
    assert "minipaas_host_disk_total_bytes 400" in lines
    assert "minipaas_metrics_sample_cpu_seconds 0.0012" in lines


def test_prometheus_before_the_first_round() -> None:
    text = render_prometheus([], {}, None)
    assert "minipaas_dyno_cpu_percent" in text
    assert all(ln.startswith("#") for ln in text.splitlines())


# --- CLI rendering ------------------------------------------------------------------------------


def test_render_metrics() -> None:
    data = {
        "app": "web",
        "resolution": 5,
        "router": [
            {"t": 1.0, "rps": 0.0, "p50": None, "p95": None, "p99": None, "r4xx": 0, "r5xx": 0},
            *[
                {"t": 5.0 * i, "rps": float(i), "p50": 1.0, "p95": 2.0 * i, "p99": 9.0}
                for i in range(1, 20)
            ],
        ],
        "dynos": {
            "web.10": [{"t": 1.0, "cpu": 1.0, "rss": 1}],
            "web.2": [{"t": 1.0, "cpu": 3.0, "rss": 5 << 20}],
            "old.1": [{"t": 1.0, "cpu": 0.5, "rss": 2048}],
        },
        "current": {
            "rps": 12.345,
            "p50": 3.0,
            "p95": 12.0,
            "p99": 40.25,
            "r4xx": 0.2,
            "r5xx": 0.0,
            "cpu": 55.5,
            "rss": 48 << 20,
        },
        "current_dynos": {
            "web.2": {"cpu": 50.0, "rss": 40 << 20},
            "web.10": {"cpu": None, "rss": 8 << 20},
        },
    }
    text = render_metrics(data)
    assert text.startswith("=== web metrics\n")
    assert "Throughput     12.35 req/s" in text
    assert "p50 3.0 ms · p95 12.0 ms · p99 40.2 ms" in text
    assert "4xx 0.20/s · 5xx 0.00/s" in text
    assert "CPU            55.5 %" in text
    assert "Memory         48.0 MB" in text
    rows = [ln.split() for ln in text.splitlines() if ln.startswith(("web.", "old."))]
    assert [r[0] for r in rows] == ["old.1", "web.2", "web.10"]  # by type, then number
    assert rows[1] == ["web.2", "50.0", "%", "40.0", "MB", "running"]
    assert rows[2] == ["web.10", "-", "8.0", "MB", "running"]
    assert rows[0][-1] == "gone"
    assert "▁" in text and "█" in text  # sparklines
    for ln in text.splitlines():
        assert len(ln) <= 80


def test_render_metrics_without_samples() -> None:
    text = render_metrics({"app": "new", "router": [], "dynos": {}, "current": {}})
    assert "Throughput     - req/s" not in text  # no unit without a number
    assert "No dyno samples yet." in text


# --- cost -------------------------------------------------------------------------------------


async def test_sampling_cost_with_twenty_apps(tmp_path: Path) -> None:
    """20 apps x 2 dynos (each a small process tree), some traffic: one round must stay tiny.

    The goal is an idle server at <= 0.5 % CPU with a 5 s interval, i.e. <= 25 ms per round;
    the bound here is loose (a shared CI box), the measured figure is printed."""
    procs = [spawn("import time; time.sleep(600)") for _ in range(40)]
    store = Store(tmp_path / "minipaas.db")
    await store.open()
    sink = MetricsStore(store)
    try:
        dynos = []
        for i in range(20):
            await store.create_app(f"app{i}")
            dynos += [
                (f"app{i}", "web.1", procs[2 * i].pid),
                (f"app{i}", "web.2", procs[2 * i + 1].pid),
            ]
        log = tmp_path / "access.log"
        log.touch()
        hosts = {f"app{i}.localhost": f"app{i}" for i in range(20)}
        metrics = Metrics(
            sink, dynos=lambda: dynos, access_log=log, host_to_app=hosts.get, data_dir=tmp_path
        )
        await metrics.sample_once()
        rounds = 20
        cpu0, wall0 = time.process_time(), time.monotonic()
        for _ in range(rounds):
            with log.open("a") as fh:  # 50 requests per round: 10 req/s at a 5 s interval
                fh.write(
                    "".join(access_line(f"app{j % 20}.localhost", 200, 5) + "\n" for j in range(50))
                )
            await metrics.sample_once()
        per_round = (time.process_time() - cpu0) / rounds
        wall = (time.monotonic() - wall0) / rounds
        print(
            f"\nsampling round, 20 apps / 40 dynos: {per_round * 1000:.2f} ms CPU, "
            f"{wall * 1000:.2f} ms wall; at 5 s: {per_round / 5 * 100:.3f} % CPU"
        )
        assert per_round < 0.1
        assert len(await sink.router_series("app3", 0, 5)) == rounds + 1
    finally:
        await sink.close()
        await store.close()
        for proc in procs:
            kill(proc)


async def test_each_round_hands_its_dyno_samples_to_on_dynos(world: World, tmp_path: Path) -> None:
    """The server enforces memory quotas with them (R14/R15); a failing listener is logged and
    the round still records its numbers."""
    seen: list[list[tuple[str, str, int, int]]] = []

    def listener(samples: list[DynoSample]) -> None:
        seen.append([(s.app, s.dyno, s.pid, s.rss) for s in samples])
        raise RuntimeError("a listener's bug")

    metrics = Metrics(
        world.sink,
        5.0,
        dynos=lambda: world.dynos,
        access_log=world.log,
        host_to_app=lambda _host: None,
        data_dir=tmp_path,
        on_dynos=listener,
    )
    last = await metrics.sample_once()
    assert [(app, dyno, pid) for app, dyno, pid, _ in seen[0]] == world.dynos
    assert all(rss > 0 for *_, rss in seen[0])  # the tree's resident memory, in bytes
    assert metrics.last is last and len(last.dynos) == 3
