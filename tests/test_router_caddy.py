"""The router against a real Caddy: routing, TLS with the internal CA, reloads and restarts.

Every test starts its own Caddy in tmp_path on free 127.0.0.1 ports and stops it by pid; the
upstreams are tiny asyncio HTTP servers inside the test's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from minipaas.router import AppRoute, Router, RouterError, RouterState, caddy, dns, pidfile


def free_port() -> int:
    """A free port below the ephemeral range, so no bind(port 0) in the test can take it."""
    low, _high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    while True:
        port = random.randrange(10000, low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


# --- tiny upstreams ------------------------------------------------------------------------


async def _read_head(reader: asyncio.StreamReader) -> dict[str, str]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    headers[":request"] = lines[0]
    return headers


@dataclass
class Upstream:
    body: str
    server: asyncio.Server | None = None
    requests: list[dict[str, str]] = field(default_factory=list)

    @property
    def address(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            self.requests.append(await _read_head(reader))
            data = self.body.encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(data), data)
            )
            await writer.drain()
        writer.close()


@pytest.fixture
async def upstreams() -> AsyncIterator[tuple[Upstream, Upstream]]:
    ups = (Upstream("up1"), Upstream("up2"))
    for up in ups:
        up.server = await asyncio.start_server(up.handle, "127.0.0.1", 0)
    yield ups
    for up in ups:
        assert up.server is not None
        up.server.close()
        await up.server.wait_closed()


# --- the router under test ------------------------------------------------------------------


@dataclass
class Env:
    router: Router
    http_port: int
    https_port: int
    control_upstream: str = "127.0.0.1:9"

    def state(self, *apps: AppRoute, **changes: object) -> RouterState:
        state = self.router.state(
            domain="localhost",
            http_port=self.http_port,
            https_port=self.https_port,
            listen_host="127.0.0.1",
            control_upstream=self.control_upstream,
            apps=apps,
        )
        return replace(state, **changes)  # type: ignore[arg-type]

    def client(self) -> httpx.AsyncClient:
        context = ssl.create_default_context(cafile=str(self.router.root_certificate))
        return httpx.AsyncClient(verify=context, timeout=10)

    async def get(
        self, client: httpx.AsyncClient, host: str, path: str = "/", *, scheme: str = "https"
    ) -> httpx.Response:
        # Like curl --resolve: connect to 127.0.0.1, send SNI and Host for `host`.
        port = self.https_port if scheme == "https" else self.http_port
        return await client.get(
            f"{scheme}://127.0.0.1:{port}{path}",
            headers={"Host": host},
            extensions={"sni_hostname": host},
        )

    async def wait_https(self, client: httpx.AsyncClient, host: str) -> None:
        """The internal CA issues certificates just after a load; wait for the handshake."""

        async def ready() -> bool:
            if not self.router.root_certificate.exists():
                return False
            try:
                await self.get(client, host)
            except (httpx.ConnectError, ssl.SSLError):
                return False
            return True

        await eventually(ready)


def _kill(pid: int | None) -> None:
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    router = Router(caddy_bin=None, workdir=tmp_path / "caddy")
    await router.start()
    pid = router.pid
    try:
        yield Env(router, free_port(), free_port())
    finally:
        await router.stop()
        _kill(pid)  # no-op when stop() worked


def web(*ups: Upstream, **changes: object) -> AppRoute:
    route = AppRoute(name="web", hosts=("web.localhost",), upstreams=tuple(u.address for u in ups))
    return replace(route, **changes)  # type: ignore[arg-type]


# --- tests ----------------------------------------------------------------------------------


async def test_round_robin_over_https_with_internal_ca(
    env: Env, upstreams: tuple[Upstream, Upstream]
) -> None:
    await env.router.apply(env.state(web(*upstreams)))
    async with env.client() as client:
        await env.wait_https(client, "web.localhost")
        bodies = [(await env.get(client, "web.localhost")).text for _ in range(6)]
    assert set(bodies) == {"up1", "up2"}
    assert all(bodies[i] != bodies[i + 1] for i in range(5)), bodies  # round robin
    seen = upstreams[0].requests[-1]
    assert seen["host"] == "web.localhost"
    assert seen["x-forwarded-proto"] == "https"
    assert len(seen["x-request-id"]) == 36

    # A real client with the CA file, as a user would run it.
    # (the upstreams live in this loop, so curl must not block it)
    curl = await asyncio.create_subprocess_exec(
        "curl",
        "-sS",
        "--resolve",
        f"web.localhost:{env.https_port}:127.0.0.1",
        "--cacert",
        str(env.router.root_certificate),
        f"https://web.localhost:{env.https_port}/",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": os.environ["PATH"]},
    )
    out, err = await asyncio.wait_for(curl.communicate(), 10)
    assert curl.returncode == 0, err
    assert out.decode() in ("up1", "up2")
    # Internal TLS never reaches for a public CA (no internet in tests).
    log = (env.router.admin_socket.parent / "caddy.log").read_text()
    assert "acme" not in log.lower()


async def test_unknown_host_no_dynos_and_maintenance(
    env: Env, upstreams: tuple[Upstream, Upstream]
) -> None:
    await env.router.apply(
        env.state(
            web(*upstreams),
            AppRoute(name="idle", hosts=("idle.localhost",), upstreams=()),
            AppRoute(
                name="fixing",
                hosts=("fixing.localhost",),
                upstreams=(upstreams[0].address,),
                maintenance=True,
            ),
        )
    )
    async with env.client() as client:
        await env.wait_https(client, "idle.localhost")
        idle = await env.get(client, "idle.localhost")
        assert idle.status_code == 503
        assert "no web dynos running" in idle.text
        assert idle.headers["content-type"].startswith("text/plain")

        await env.wait_https(client, "fixing.localhost")
        fixing = await env.get(client, "fixing.localhost")
        assert fixing.status_code == 503
        assert "maintenance" in fixing.text
        assert upstreams[0].requests == []

        unknown = await env.get(client, "nope.localhost", scheme="http")
        assert unknown.status_code == 404
        assert "no app is served at nope.localhost" in unknown.text
        # Known SNI, unknown Host header: still 404, never an empty 200.
        mixed = await client.get(
            f"https://127.0.0.1:{env.https_port}/",
            headers={"Host": "other.localhost"},
            extensions={"sni_hostname": "web.localhost"},
        )
        assert mixed.status_code == 404

        plain = await env.get(client, "web.localhost", scheme="http")
        assert plain.text in ("up1", "up2")  # internal domains also serve plain HTTP


async def test_static_root_never_serves_dotfiles(env: Env, tmp_path: Path) -> None:
    # The root itself sits under a dot-directory, like ~/.local/share/minipaas does.
    root = tmp_path / ".local" / "public"
    (root / "sub").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "index.html").write_text("<h1>static home</h1>")
    (root / "sub" / "page.txt").write_text("a page")
    (root / ".env").write_text("SECRET=1")
    (root / ".git" / "config").write_text("[core]")
    (root / "sub" / ".hidden").write_text("hidden")
    await env.router.apply(
        env.state(AppRoute("site", ("site.localhost",), (), static_root=str(root)))
    )
    async with env.client() as client:
        await env.wait_https(client, "site.localhost")
        home = await env.get(client, "site.localhost")
        assert home.status_code == 200
        assert home.text == "<h1>static home</h1>"
        assert (await env.get(client, "site.localhost", "/sub/page.txt")).text == "a page"
        for path in ("/.env", "/.git/config", "/sub/.hidden", "/%2eenv", "/sub/../.env"):
            response = await env.get(client, "site.localhost", path)
            assert response.status_code == 404, path
            assert "SECRET" not in response.text
        # No 404.html: a short text, not an empty body.
        assert (await env.get(client, "site.localhost", "/missing")).text == "404 Not Found\n"

        # The site's own 404.html answers what is not found, dotfiles too, with status 404.
        (root / "404.html").write_text("<h1>custom not found</h1>")
        for path in ("/missing", "/sub/nope.txt", "/.env", "/sub/.hidden"):
            response = await env.get(client, "site.localhost", path)
            assert response.status_code == 404, path
            assert response.text == "<h1>custom not found</h1>", path
        assert (await env.get(client, "site.localhost", "/sub/page.txt")).text == "a page"
        assert (await env.get(client, "site.localhost", "/404.html")).status_code == 200


async def test_reapply_is_noop_and_switch_takes_effect(
    env: Env, upstreams: tuple[Upstream, Upstream]
) -> None:
    up1, up2 = upstreams
    both = env.state(web(up1, up2))
    await env.router.apply(both)
    await env.router.apply(both)
    await env.router.apply(env.state(web(up2, up1)))  # same set, other order: same document
    assert env.router.loads == 1

    latencies = []
    async with env.client() as client:
        await env.wait_https(client, "web.localhost")
        for target in (up2, up1, up2, up1, up2):
            started = time.monotonic()
            await env.router.apply(env.state(web(target)))
            assert (await env.get(client, "web.localhost")).text == target.body
            latencies.append((time.monotonic() - started) * 1000)
            bodies = {(await env.get(client, "web.localhost")).text for _ in range(4)}
            assert bodies == {target.body}
    # Switching dynos only changes the resolver's table: Caddy's configuration stays the same,
    # so it never replaces its servers (and never closes a client's keep-alive connection).
    assert env.router.loads == 1
    print(f"apply→routed latency ms: median {statistics.median(latencies):.1f}, {latencies}")


async def test_dead_upstream_is_retried_on_the_next(
    env: Env, upstreams: tuple[Upstream, Upstream]
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    await env.router.apply(
        env.state(AppRoute("web", ("web.localhost",), (dead, upstreams[0].address)))
    )
    async with env.client() as client:
        await env.wait_https(client, "web.localhost")
        responses = [await env.get(client, "web.localhost") for _ in range(6)]
    assert [r.status_code for r in responses] == [200] * 6
    assert {r.text for r in responses} == {"up1"}


async def test_restart_converges_and_a_new_router_adopts_caddy(
    env: Env, upstreams: tuple[Upstream, Upstream]
) -> None:
    state = env.state(web(upstreams[0]))
    await env.router.apply(state)
    first_pid = env.router.pid
    assert first_pid is not None
    environ = Path(f"/proc/{first_pid}/environ").read_bytes().split(b"\0")
    procs = caddy.go_procs(len(os.sched_getaffinity(0)))
    assert {b"GOGC=400", b"GOMEMLIMIT=256MiB", b"GOMAXPROCS=%d" % procs} <= set(environ)
    assert [caddy.go_procs(n) for n in (1, 2, 3, 8)] == [1, 1, 1, 4]
    async with env.client() as client:
        await env.wait_https(client, "web.localhost")

        await env.router.stop()
        assert first_pid is not None
        assert not Path(f"/proc/{first_pid}").exists() or "Z" in _state_of(first_pid)
        with pytest.raises(httpx.ConnectError):
            await env.get(client, "web.localhost", scheme="http")

        await env.router.start()
        assert env.router.pid != first_pid
        await env.router.apply(state)  # same state, new Caddy: loaded again
        assert env.router.loads == 2
        assert (await env.get(client, "web.localhost")).text == "up1"

        # minipaas restarts: a fresh Router finds the running Caddy and keeps it.
        again = Router(caddy_bin=None, workdir=env.router.admin_socket.parent)
        await again.start()
        assert again.pid == env.router.pid
        await again.apply(replace(state, apps=(web(upstreams[1]),)))
        assert (await env.get(client, "web.localhost")).text == "up2"
        await again.aclose()

        # Caddy killed behind our back: the next apply starts it again.
        killed = env.router.pid
        assert killed is not None
        _kill(killed)

        async def restarted() -> bool:
            # (a killed Go process lingers a moment as a zombie leader while its threads exit)
            await env.router.apply(state)
            return env.router.pid not in (None, killed)

        await eventually(restarted)
        await env.wait_https(client, "web.localhost")
        assert (await env.get(client, "web.localhost")).text == "up1"


def _state_of(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return "gone"


async def test_control_plane_streams_without_buffering(env: Env) -> None:
    release = asyncio.Event()

    async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def chunk(data: bytes) -> bytes:
            return b"%x\r\n%s\r\n" % (len(data), data)

        head = await _read_head(reader)
        if not head[":request"].startswith("GET /builds/1/log "):
            writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunk(b'{"line": 1}\n')
        )
        await writer.drain()
        await release.wait()  # the rest only once the client has seen the first line
        writer.write(chunk(b'{"line": 2}\n') + b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(stream, "127.0.0.1", 0)
    try:
        env.control_upstream = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        await env.router.apply(env.state())
        async with env.client() as client:
            await env.wait_https(client, "minipaas.localhost")
            async with client.stream(
                "GET",
                f"https://127.0.0.1:{env.https_port}/builds/1/log",
                headers={"Host": "minipaas.localhost"},
                extensions={"sni_hostname": "minipaas.localhost"},
            ) as response:
                chunks = response.aiter_bytes()
                first = await asyncio.wait_for(anext(chunks), 5)
                assert first == b'{"line": 1}\n'
                release.set()
                rest = b"".join([c async for c in chunks])
            assert rest == b'{"line": 2}\n'
    finally:
        release.set()
        server.close()
        await server.wait_closed()


async def test_access_log_has_app_requests_only(
    env: Env, upstreams: tuple[Upstream, Upstream]
) -> None:
    env.control_upstream = upstreams[1].address
    await env.router.apply(env.state(web(upstreams[0])))
    async with env.client() as client:
        await env.wait_https(client, "web.localhost")
        await env.get(client, "web.localhost", "/hello?x=1")
        await env.get(client, "minipaas.localhost", "/api", scheme="http")
        await env.get(client, "nope.localhost", scheme="http")

    def entries() -> list[dict[str, Any]]:
        path = env.router.access_log
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line) for line in lines]

    async def logged() -> bool:
        return any(e["request"]["uri"] == "/hello?x=1" for e in entries())

    await eventually(logged)
    for entry in entries():
        # Never the control plane. A name under the domain that is no app's may be there (the
        # catch-all route logs it as a 404); the router log source drops hosts that are no app's.
        host = entry["request"]["host"].rsplit(":", 1)[0]
        assert host == "web.localhost" or (host == "nope.localhost" and entry["status"] == 404)
        assert {"status", "duration", "size"} <= entry.keys()
    hello = next(e for e in entries() if e["request"]["uri"] == "/hello?x=1")
    assert hello["status"] == 200
    assert hello["request"]["method"] == "GET"


async def test_rejected_config_keeps_the_old_one(
    env: Env, upstreams: tuple[Upstream, Upstream]
) -> None:
    good = env.state(web(upstreams[0]))
    await env.router.apply(good)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = replace(good, http_port=taken.getsockname()[1])
        with pytest.raises(RouterError, match="address already in use"):
            await env.router.apply(busy)
    assert env.router.loads == 1
    async with env.client() as client:
        response = await env.get(client, "web.localhost", scheme="http")
        assert response.text == "up1"
    with pytest.raises(RouterError, match="admin socket"):
        await env.router.apply(replace(good, admin_socket=Path("/tmp/elsewhere.sock")))


def test_listener_migration_setting(tmp_path: Path) -> None:
    """Reloads must not reset queued connections: the kernel hands them to the new listener."""
    from minipaas.router.caddy import MIGRATE_REQ, enable_listener_migration

    fake = tmp_path / "tcp_migrate_req"
    fake.write_text("0\n")
    assert enable_listener_migration(fake) is True  # tests run as root
    assert fake.read_text().strip() == "1"
    assert enable_listener_migration(tmp_path / "missing") is False
    if MIGRATE_REQ.exists():
        assert enable_listener_migration() is True
        assert MIGRATE_REQ.read_text().strip() == "1"


async def _keepalive_client(
    port: int, host: str, stop: asyncio.Event, seen: dict[str, int], errors: list[str]
) -> None:
    """One keep-alive HTTP/1.1 connection that never retries: every failure counts."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while not stop.is_set():
            try:
                writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                await writer.drain()
                head = await _read_head(reader)
                body = await reader.readexactly(int(head["content-length"]))
            except (OSError, asyncio.IncompleteReadError, KeyError, ValueError) as exc:
                errors.append(repr(exc))
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            status = head[":request"].split()[1]
            key = body.decode() if status == "200" else status
            seen[key] = seen.get(key, 0) + 1
    finally:
        writer.close()


async def test_switching_dynos_under_keepalive_load_fails_no_request(
    env: Env, upstreams: tuple[Upstream, Upstream]
) -> None:
    """The switch a deploy makes changes no Caddy configuration, so connections stay open."""
    up1, up2 = upstreams
    await env.router.apply(env.state(web(up1)))
    loads = env.router.loads
    stop = asyncio.Event()
    seen: dict[str, int] = {}
    errors: list[str] = []
    clients = [
        asyncio.create_task(_keepalive_client(env.http_port, "web.localhost", stop, seen, errors))
        for _ in range(4)
    ]
    try:
        for target in (up2, up1) * 5:
            before = len(target.requests)
            await env.router.apply(env.state(web(target)))
            # Once apply returns, the new dynos get the traffic: wait until they have had some.
            await eventually(lambda t=target, n=before: _grown(t, n))  # type: ignore[misc]
    finally:
        stop.set()
        await asyncio.gather(*clients)
    assert errors == []
    assert set(seen) == {"up1", "up2"}, seen
    assert env.router.loads == loads  # not one reload for ten switches


async def _grown(upstream: Upstream, count: int) -> bool:
    return len(upstream.requests) > count + 20


async def test_resolver_outlives_minipaas_and_comes_back_on_its_port(
    env: Env, upstreams: tuple[Upstream, Upstream]
) -> None:
    state = env.state(web(upstreams[0]))
    await env.router.apply(state)
    resolver = json.loads((env.router.admin_socket.parent / "resolver.json").read_text())

    # minipaas restarts: the resolver keeps answering and the next Router adopts it.
    again = Router(caddy_bin=None, workdir=env.router.admin_socket.parent)
    await again.start()
    assert json.loads((env.router.admin_socket.parent / "resolver.json").read_text()) == resolver
    await again.aclose()
    assert _state_of(resolver["pid"]) not in ("gone", "Z")

    # Killed behind our back: the next apply starts another one on the same port, and routing
    # needs no new Caddy configuration.
    _kill(resolver["pid"])

    async def restarted() -> bool:
        await env.router.apply(env.state(web(upstreams[1])))
        now = json.loads((env.router.admin_socket.parent / "resolver.json").read_text())
        return bool(now["pid"] != resolver["pid"])

    await eventually(restarted)
    now = json.loads((env.router.admin_socket.parent / "resolver.json").read_text())
    assert now["port"] == resolver["port"]
    async with env.client() as client:
        await env.wait_https(client, "web.localhost")
        assert (await env.get(client, "web.localhost")).text == "up2"


async def test_watch_starts_a_killed_caddy_or_resolver_again_without_any_apply(
    env: Env, upstreams: tuple[Upstream, Upstream], tmp_path: Path
) -> None:
    public = tmp_path / "public"
    public.mkdir()
    (public / "index.html").write_text("static v1")
    site = AppRoute("site", ("site.localhost",), (), static_root=str(public))
    await env.router.apply(env.state(web(upstreams[0]), site))
    resolver_json = env.router.admin_socket.parent / "resolver.json"
    watch = asyncio.get_running_loop().create_task(env.router.watch())
    try:
        async with env.client() as client:
            await env.wait_https(client, "web.localhost")
            for n in range(2):  # twice in a row: the second start waits a moment (crash loop)
                killed = env.router.pid
                _kill(killed)

                async def serving_again(killed: int | None = killed) -> bool:
                    if env.router.pid in (None, killed):
                        return False
                    try:
                        return (await env.get(client, "web.localhost")).text == "up1"
                    except (httpx.ConnectError, ssl.SSLError):
                        return False

                await eventually(serving_again)
                assert env.router.loads == 2 + n  # the last state, loaded into the new Caddy
                assert (await env.get(client, "site.localhost")).text == "static v1"

            resolver = json.loads(resolver_json.read_text())
            _kill(resolver["pid"])

            async def resolver_back() -> bool:
                now = json.loads(resolver_json.read_text())
                return bool(now["pid"] != resolver["pid"]) and pidfile.alive(now["pid"])

            await eventually(resolver_back)
            assert json.loads(resolver_json.read_text())["port"] == resolver["port"]
            await env.router.apply(env.state(web(upstreams[1])))  # routed through the new one
            assert (await env.get(client, "web.localhost")).text == "up2"
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
    # Cancelled, as the server does before `down`: a stopped Caddy stays stopped.
    pid = env.router.pid
    await env.router.stop()
    assert pid is not None and not pidfile.alive(pid)
    assert env.router.pid is None


async def test_static_deploy_swaps_a_symlink_not_the_config(env: Env, tmp_path: Path) -> None:
    roots = []
    for n in (1, 2):
        root = tmp_path / f"v{n}" / "public"
        root.mkdir(parents=True)
        (root / "index.html").write_text(f"release {n}")
        roots.append(root)
    site = AppRoute("site", ("site.localhost",), (), static_root=str(roots[0]))
    await env.router.apply(env.state(site))
    loads = env.router.loads
    async with env.client() as client:
        await env.wait_https(client, "site.localhost")
        assert (await env.get(client, "site.localhost")).text == "release 1"
        await env.router.apply(env.state(replace(site, static_root=str(roots[1]))))
        assert (await env.get(client, "site.localhost")).text == "release 2"
        assert env.router.loads == loads
        # gone from the state: its link goes too
        await env.router.apply(env.state())
        assert not (env.router.admin_socket.parent / "static" / "site").exists()


async def test_first_dyno_and_scaling_to_zero_reload_nothing(
    env: Env, upstreams: tuple[Upstream, Upstream]
) -> None:
    await env.router.apply(env.state(web()))
    loads = env.router.loads
    async with env.client() as client:
        await env.wait_https(client, "web.localhost")
        idle = await env.get(client, "web.localhost")
        assert idle.status_code == 503
        assert idle.text == "503 Service Unavailable: no web dynos running for 'web.localhost'.\n"
        await env.router.apply(env.state(web(upstreams[0])))
        assert (await env.get(client, "web.localhost")).text == "up1"
        await env.router.apply(env.state(web()))
        assert (await env.get(client, "web.localhost")).status_code == 503
    assert env.router.loads == loads


async def test_creating_and_destroying_apps_reloads_nothing(
    env: Env, upstreams: tuple[Upstream, Upstream]
) -> None:
    """Plain apps share the catch-all route: a new one is served (over HTTPS too, with a
    certificate issued at its first handshake) without a new Caddy configuration."""
    await env.router.apply(env.state(web(upstreams[0])))
    loads = env.router.loads
    fresh = AppRoute(name="fresh", hosts=("fresh.localhost",), upstreams=())
    async with env.client() as client:
        await env.wait_https(client, "web.localhost")
    await env.router.apply(env.state(web(upstreams[0]), fresh))
    # a client of its own: one TLS connection per host, so the handshake names fresh.localhost
    async with env.client() as client:
        await env.wait_https(client, "fresh.localhost")
        idle = await env.get(client, "fresh.localhost")
        assert idle.status_code == 503
        assert idle.text == "503 Service Unavailable: no web dynos running for 'fresh.localhost'.\n"
        await env.router.apply(
            env.state(web(upstreams[0]), replace(fresh, upstreams=(upstreams[1].address,)))
        )
        assert (await env.get(client, "fresh.localhost")).text == "up2"
        assert upstreams[1].requests[-1]["host"] == "fresh.localhost"

        await env.router.apply(env.state(web(upstreams[0])))  # destroyed

        async def gone() -> bool:
            response = await env.get(client, "fresh.localhost")
            return response.status_code == 404

        await eventually(gone)
        response = await env.get(client, "fresh.localhost")
        assert response.text == "404 Not Found: no app is served at fresh.localhost.\n"
        # A name that can be no app is not even looked up; over plain HTTP it is a 404 too.
        odd = await env.get(client, "no_such_app.localhost", scheme="http")
        assert odd.status_code == 404
        assert "no app is served at no_such_app.localhost" in odd.text
    certificates = env.router.storage_dir / "certificates"
    assert any(certificates.glob("*/fresh.localhost"))
    # No certificate is issued for a name that is no app's: the handshake fails.
    async with env.client() as client:
        with pytest.raises((httpx.ConnectError, ssl.SSLError)):
            await env.get(client, "never-created.localhost")
    assert not any(certificates.glob("*/never-created.localhost"))
    assert env.router.loads == loads


def _spawn_stray(*argv: str) -> subprocess.Popen[bytes]:
    """A process whose command line ends like a Caddy's or resolver's: found by it alone."""
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", *argv], start_new_session=True
    )


async def test_processes_whose_pid_files_were_lost_are_stopped_before_new_ones_start(
    tmp_path: Path,
) -> None:
    """A Caddy (or resolver) nobody recorded would serve a stale configuration on the same
    SO_REUSEPORT ports next to the new one: a start stops it first, and so does `down`."""
    workdir = tmp_path / "caddy"
    first = Router(caddy_bin=None, workdir=workdir)
    await first.start()
    old_caddy = first.pid
    old_resolvers = pidfile.find_running([str(workdir / "upstreams.json")], marker="resolver")
    assert old_caddy is not None and len(old_resolvers) == 1
    again = Router(caddy_bin=None, workdir=workdir)
    try:
        (workdir / "caddy.pid").unlink()  # lost: neither can be adopted
        (workdir / "resolver.json").unlink()
        await again.start()
        assert again.pid not in (None, old_caddy)
        assert not pidfile.alive(old_caddy)
        assert not pidfile.alive(old_resolvers[0])
        now = pidfile.find_running(["run", "--config", str(workdir / "boot.json")])
        assert now == [again.pid]
    finally:
        await again.stop()
        _kill(old_caddy)
        for pid in old_resolvers:
            _kill(pid)


def test_down_stops_strays_found_by_their_command_lines(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "caddy").mkdir(parents=True)
    strays = [
        _spawn_stray("run", "--config", str(data / "caddy" / "boot.json")),
        _spawn_stray("minipaas.router.resolver", str(data / "caddy" / "upstreams.json")),
    ]
    bystander = _spawn_stray("run", "--config", str(tmp_path / "other" / "caddy" / "boot.json"))
    try:
        down = subprocess.run(
            [str(Path(sys.executable).parent / "minipaas"), "down", "--data-dir", str(data)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert down.returncode == 0, down.stderr
        assert "Stopped minipaas, its dynos and Caddy." in down.stdout
        for proc in strays:
            assert proc.wait(timeout=10) == -signal.SIGTERM
        assert bystander.poll() is None  # another data dir's: not ours to stop
    finally:
        for proc in [*strays, bystander]:
            proc.kill()
            proc.wait()


async def test_caddy_dials_dynos_without_asking_the_resolver(
    env: Env, upstreams: tuple[Upstream, Upstream]
) -> None:
    """Caddy runs with a private /etc/hosts naming the SRV target: with the resolver gone (its
    last answer kept for the grace period) an upstream that closes every connection, as
    gunicorn does, is still dialled for each request, with no lookup left to fail."""
    await env.router.apply(env.state(web(upstreams[0])))
    caddy_pid = env.router.pid
    assert caddy_pid is not None
    seen = Path(f"/proc/{caddy_pid}/root/etc/hosts").read_text()
    assert f"127.0.0.1 {dns.TARGET}\n" in seen and seen.startswith(Path("/etc/hosts").read_text())
    assert dns.TARGET not in Path("/etc/hosts").read_text()  # the host's own is untouched
    async with env.client() as client:
        await env.wait_https(client, "web.localhost")
        resolver = json.loads((env.router.admin_socket.parent / "resolver.json").read_text())
        _kill(resolver["pid"])
        before = len(upstreams[0].requests)
        for _ in range(5):  # each on a new upstream connection: one dial (and lookup) each
            assert (await env.get(client, "web.localhost")).text == "up1"
        assert len(upstreams[0].requests) == before + 5
