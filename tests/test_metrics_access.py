"""The router sampler: tailing a log file (rotation, truncation, partial lines), the pure
aggregation (tables), and the whole path against a real Caddy writing its access log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from minipaas.metrics.access import (
    AccessLogTail,
    HostMap,
    HostStats,
    app_stats,
    parse_lines,
    percentile,
    strip_port,
)
from minipaas.router import AppRoute, Router
from tests.test_router_caddy import Env, eventually, free_port


def line(host: str, status: int = 200, duration: float = 0.01) -> bytes:
    entry = {
        "level": "info",
        "logger": "http.log.access.router",
        "request": {"host": host, "uri": "/"},
        "duration": duration,
        "size": 2,
        "status": status,
    }
    return json.dumps(entry).encode()


# --- tailing ---------------------------------------------------------------------------------


def test_tail_starts_at_the_end_and_reads_only_complete_lines(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"old 1\nold 2\n")
    tail = AccessLogTail(log)
    try:
        assert tail.read_lines() == []  # history before we started is not "now"
        with log.open("ab") as fh:
            fh.write(b"new 1\nnew 2\npart")
        assert tail.read_lines() == [b"new 1", b"new 2"]
        assert tail.read_lines() == []
        with log.open("ab") as fh:
            fh.write(b"ial\n")
        assert tail.read_lines() == [b"partial"]
    finally:
        tail.close()


def test_tail_follows_rotation_without_losing_lines(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    tail = AccessLogTail(log)
    try:
        assert tail.read_lines() == []
        with log.open("ab") as fh:
            fh.write(b"a\n")
        assert tail.read_lines() == [b"a"]
        # Caddy's roller: more lines land in the old file, then it is renamed and a new one made.
        with log.open("ab") as fh:
            fh.write(b"b\n")
        log.rename(tmp_path / "access-2025.log")
        log.write_bytes(b"c\nd\n")
        assert tail.read_lines() == [b"b", b"c", b"d"]
        with log.open("ab") as fh:
            fh.write(b"e\n")
        assert tail.read_lines() == [b"e"]
    finally:
        tail.close()


def test_tail_handles_truncation_and_a_missing_file(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    tail = AccessLogTail(log)
    try:
        assert tail.read_lines() == []  # no file yet
        log.write_bytes(b"first\n")  # appears later: all of it is new
        assert tail.read_lines() == [b"first"]
        log.write_bytes(b"")  # truncated in place
        with log.open("ab") as fh:
            fh.write(b"x\n")
        assert tail.read_lines() == [b"x"]
        log.unlink()
        assert tail.read_lines() == []
        log.write_bytes(b"back\n")
        assert tail.read_lines() == [b"back"]
    finally:
        tail.close()


# --- aggregation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 50, None),
        ([7.0], 99, 7.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([float(i) for i in range(1, 101)], 95, 95.0),
        ([float(i) for i in range(1, 101)], 99, 99.0),
        ([float(i) for i in range(1, 11)], 95, 10.0),
    ],
)
def test_percentile(values: list[float], q: float, expected: float | None) -> None:
    assert percentile(values, q) == expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("web.localhost", "web.localhost"),
        ("web.localhost:8443", "web.localhost"),
        ("[::1]:8443", "[::1]"),
        ("::1", "::1"),
    ],
)
def test_strip_port(host: str, expected: str) -> None:
    assert strip_port(host) == expected


def test_parse_lines_groups_by_host_and_skips_junk() -> None:
    lines = [
        line("Web.Localhost:8443", 200, 0.002),
        line("web.localhost", 404, 0.004),
        line("web.localhost", 502, 0.1),
        line("api.example.com", 200, 0.001),
        b"not json",
        b'{"request": {}, "status": 200}',
        b'{"request": {"host": "x"}, "status": "oops", "duration": 1}',
    ]
    by_host = parse_lines(lines)
    assert set(by_host) == {"web.localhost", "api.example.com"}
    web = by_host["web.localhost"]
    assert web.durations == pytest.approx([2.0, 4.0, 100.0])
    assert (web.r4xx, web.r5xx) == (1, 1)


def test_app_stats_merges_hosts_and_reports_quiet_apps() -> None:
    by_host = {
        "web.localhost": HostStats([1.0, 2.0, 3.0], r4xx=1),
        "www.example.com": HostStats([4.0], r5xx=1),
        "stranger.localhost": HostStats([9.0]),
    }
    hosts = {"web.localhost": "web", "www.example.com": "web"}
    out = app_stats(by_host, hosts.get, 2.0, apps=["web", "quiet"])
    assert set(out) == {"web", "quiet"}
    web = out["web"]
    assert web.requests == 4
    assert web.rps == 2.0
    assert (web.p50, web.p95, web.p99) == (2.0, 4.0, 4.0)
    assert (web.r4xx, web.r5xx) == (0.5, 0.5)
    quiet = out["quiet"]
    assert (quiet.requests, quiet.rps, quiet.p95, quiet.r5xx) == (0, 0.0, None, 0.0)


# --- against a real Caddy ----------------------------------------------------------------------


async def status_upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers /404 with 404, /500 with 500, /slow after 50 ms, anything else with 200."""
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ", 2)[1].decode()
        status = {"/404": 404, "/500": 500}.get(path, 200)
        if path == "/slow":
            await asyncio.sleep(0.05)
        body = f"{status}".encode()
        writer.write(
            b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (status, len(body), body)
        )
        await writer.drain()
    writer.close()


@pytest.fixture
async def caddy(tmp_path: Path) -> AsyncIterator[Env]:
    router = Router(caddy_bin=None, workdir=tmp_path / "caddy")
    await router.start()
    pid = router.pid
    try:
        yield Env(router, free_port(), free_port())
    finally:
        await router.stop()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def test_router_sampler_against_real_caddy(caddy: Env) -> None:
    upstream = await asyncio.start_server(status_upstream, "127.0.0.1", 0)
    address = f"127.0.0.1:{upstream.sockets[0].getsockname()[1]}"
    tail = AccessLogTail(caddy.router.access_log)
    try:
        await caddy.router.apply(
            caddy.state(AppRoute(name="web", hosts=("web.localhost",), upstreams=(address,)))
        )
        async with caddy.client() as client:
            await caddy.wait_https(client, "web.localhost")
            await asyncio.to_thread(tail.read_lines)  # start after the warm-up requests
            paths = ["/ok"] * 30 + ["/slow"] * 5 + ["/404"] * 4 + ["/500"] * 2
            for path in paths:
                scheme = "http" if path == "/ok" else "https"
                await caddy.get(client, "web.localhost", path, scheme=scheme)

        lines: list[bytes] = []

        async def all_logged() -> bool:
            # (a warm-up request to "/" may be logged just after the first read)
            new = await asyncio.to_thread(tail.read_lines)
            lines.extend(ln for ln in new if json.loads(ln)["request"]["uri"] != "/")
            return len(lines) >= len(paths)

        await eventually(all_logged)
        assert len(lines) == len(paths)
        hosts = {"web.localhost": "web"}
        stats = app_stats(parse_lines(lines), hosts.get, 10.0)["web"]
        assert stats.requests == 41
        assert stats.rps == pytest.approx(4.1)
        assert stats.p50 is not None and stats.p50 > 0
        assert stats.p95 is not None and stats.p95 >= 50  # the /slow ones
        assert stats.p99 is not None and stats.p99 >= stats.p95 >= stats.p50
        assert stats.r4xx == pytest.approx(0.4)
        assert stats.r5xx == pytest.approx(0.2)
    finally:
        tail.close()
        upstream.close()
        await upstream.wait_closed()


def test_host_map() -> None:
    hosts = HostMap("Example.com")
    assert hosts("web.example.com") == "web"  # before any update: by the domain alone
    assert hosts("a.b.example.com") is None
    assert hosts("minipaas.example.com") is None
    assert hosts("example.com") is None
    hosts.update([("web", ["web.example.com", "WWW.Shop.io"]), ("api", ["api.example.com"])])
    assert hosts("www.shop.io") == "web"
    assert hosts("API.example.com") == "api"
    assert hosts("gone.example.com") is None  # not in the last router state
    assert hosts("other.io") is None
