"""Log drains (`drains:add`): URL rules and the syslog framing (pure), then a real server copying
an app's log lines to real receivers on loopback: syslog over TCP, syslog over TLS and HTTPS
(Heroku's logplex batches), through a receiver that goes away and comes back, a certificate the
server does not trust, a restart of the server, and bad input at the CLI and the API."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from minipaas.drains import Drains, DrainSpec, forwarder, parse_drain_url, redacted, syslog_frame
from minipaas.errors import UserError
from minipaas.logs import LogStore
from tests.paas import SAMPLES, Paas, deployed, git_repo, https_push, start_paas
from tests.support.ports import free_port, wait_for

T = TypeVar("T")

# -- pure ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port"),
    [
        ("syslog://logs.example.com:514", "syslog", "logs.example.com", 514),
        ("syslog+tls://logs4.papertrailapp.com:12345", "syslog+tls", "logs4.papertrailapp.com",
         12345),
        ("https://user:pw@collector.example.com/heroku?x=1", "https", "collector.example.com",
         443),
        ("https://[::1]:8443/in", "https", "::1", 8443),
        ("SYSLOG://127.0.0.1:601/", "syslog", "127.0.0.1", 601),
    ],
)
def test_drain_urls(url: str, scheme: str, host: str, port: int) -> None:
    parsed = parse_drain_url(url)
    assert (parsed.url, parsed.scheme, parsed.host, parsed.port) == (url, scheme, host, port)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "No drain URL given; use syslog://HOST:PORT"),
        ("http://example.com/x", "The drain URL 'http://example.com/x' must start with syslog://"),
        ("example.com:514", "must start with syslog://, syslog+tls:// or https://"),
        ("syslog://example.com", "The drain URL 'syslog://example.com' needs a port, e.g. "
         "syslog://example.com:514."),
        ("syslog://example.com:514/path", "has a path; a syslog drain is HOST:PORT only."),
        ("syslog://:514", "The drain URL 'syslog://:514' has no host."),
        ("https://example.com:99999/", "is not a valid URL (Port out of range 0-65535)."),
        ("https://u:secret@example.com:x/", "The drain URL 'https://u:***@example.com:x/' is "
         "not a valid URL (Port could not be cast to integer value as 'x')."),
        ("syslog://example.com:0", "has port 0."),
        ("https://exa mple.com/", "The drain URL 'https://exa mple.com/' has spaces or control"),
        ("https://example.com/\n", "The drain URL 'https://example.com/\\n' has spaces"),
        ("https://example.com/" + "a" * 3000, "is longer than 2048 characters."),
    ],
)
def test_bad_drain_urls(url: str, message: str) -> None:
    with pytest.raises(UserError) as caught:
        parse_drain_url(url)
    assert message in str(caught.value)


def test_a_password_in_a_drain_url_is_never_shown() -> None:
    assert redacted("https://user:s3cret@h.example/p?q") == "https://user:***@h.example/p?q"
    assert redacted("https://:s3cret@h.example/") == "https://:***@h.example/"
    assert redacted("https://h.example/") == "https://h.example/"
    with pytest.raises(UserError) as caught:
        parse_drain_url("ftp://user:s3cret@h.example/")
    assert "s3cret" not in str(caught.value) and "user:***@h.example" in str(caught.value)


def test_syslog_frame_is_heroku_shaped_and_octet_counted() -> None:
    ts = datetime(2026, 12, 6, 10, 0, 0, 123456, tzinfo=UTC)
    frame = syslog_frame(ts, "myapp", "app", "web.1", "hello wörld")
    message = "<190>1 2026-12-06T10:00:00.123456+00:00 myapp app web.1 - - hello wörld".encode()
    assert frame == b"%d %s" % (len(message), message)
    # header fields never hold spaces (they would shift every later field)
    assert syslog_frame(ts, "a", "app", "", "x").split(b" ")[5] == b"-"
    assert syslog_frame(ts, "a", "app", "we b", "x").split(b" ")[5] == b"we_b"


def frames(data: bytes) -> list[bytes]:
    """The messages of an octet-counted stream (RFC 6587)."""
    out = []
    while data:
        length, rest = data.split(b" ", 1)
        out.append(rest[: int(length)])
        data = rest[int(length):]
    return out


# -- receivers on loopback ---------------------------------------------------------------------


def make_cert(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 (cert, key)."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", f"/CN=minipaas test {name}", "-keyout", str(key), "-out", str(cert),
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


class SyslogReceiver:
    """A syslog receiver over TCP (or TLS) on 127.0.0.1 that keeps every byte it gets."""

    def __init__(self, port: int, cert: tuple[Path, Path] | None = None) -> None:
        self.port = port
        self.cert = cert
        self.data = b""
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SyslogReceiver:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        return self

    def _accept(self) -> None:
        assert self._listener is not None
        context = None
        if self.cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.cert)
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if context is not None:
                try:
                    conn = context.wrap_socket(conn, server_side=True)
                except (OSError, ssl.SSLError):
                    conn.close()
                    continue
            self._conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        while True:
            try:
                chunk = conn.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self.data += chunk

    def messages(self) -> list[str]:
        with self._lock:
            data = self.data
        while data:
            try:
                return [m.decode() for m in frames(data)]
            except (ValueError, IndexError):  # a frame half-way through: leave it out
                data = data[: data.rfind(b"<190>1 ")].rsplit(b" ", 1)[0]
        return []

    def stop(self) -> None:
        if self._listener is None or self._thread is None:
            return  # stopped already
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._listener = None
        self._thread.join(timeout=10)
        for conn in self._conns:
            conn.close()
        self._conns.clear()


class HttpsReceiver:
    """An HTTPS server on 127.0.0.1 that keeps each POST's headers and body."""

    def __init__(self, cert: tuple[Path, Path]) -> None:
        posts: list[tuple[dict[str, str], bytes]] = []
        self.posts = posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*cert)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def messages(self) -> list[str]:
        return [m.decode() for _headers, body in list(self.posts) for m in frames(body)]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)


# -- a real server ---------------------------------------------------------------------------


class Drained:
    """The module's server (trusting the test CA through SSL_CERT_FILE), an app on it, certs."""

    def __init__(self, paas: Paas, app: str, trusted: tuple[Path, Path],
                 untrusted: tuple[Path, Path]) -> None:
        self.paas, self.app, self.trusted, self.untrusted = paas, app, trusted, untrusted

    def say(self, text: str) -> None:
        """A line in the app's log (a one-off dyno's output, app[run.N])."""
        self.paas.cli("run", "-a", self.app, "--", "echo", text)

    def drains(self) -> list[dict[str, Any]]:
        return list(json.loads(self.paas.cli("drains", "-a", self.app, "--json").stdout))

    def status(self, token: str) -> dict[str, Any]:
        return next(d["status"] for d in self.drains() if d["token"] == token)

    def add(self, url: str) -> str:
        out = self.paas.cli("drains:add", url, "-a", self.app).stdout
        token = re.search(r"\((d\.[0-9a-f-]{36})\)", out)
        assert token is not None, out
        return token.group(1)


@pytest.fixture(scope="module")
def drained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drained]:
    work = tmp_path_factory.mktemp("drains")
    trusted, untrusted = make_cert(work, "trusted"), make_cert(work, "untrusted")
    before = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = str(trusted[0])  # the server's trust: this CA alone
    try:
        paas = start_paas(work / "authorized_keys", work / "server.log")
    finally:
        if before is None:
            del os.environ["SSL_CERT_FILE"]
        else:
            os.environ["SSL_CERT_FILE"] = before
    try:
        app = "drained"
        paas.cli("apps:create", app)
        token = paas.cli("auth:token").stdout.strip()
        deployed(https_push(paas, git_repo(SAMPLES / "python-stdlib", work / app), app, token))
        yield Drained(paas, app, trusted, untrusted)
    finally:
        paas.stop()
        shutil.rmtree(paas.data_dir.parent, ignore_errors=True)
    paas.assert_no_crashes()


def has(receiver: SyslogReceiver | HttpsReceiver, text: str) -> list[str]:
    return [m for m in receiver.messages() if m.endswith(text)]


def test_syslog_drain_gets_app_and_router_lines_and_survives_its_receiver_going_away(
    drained: Drained,
) -> None:
    receiver = SyslogReceiver(free_port()).start()
    try:
        token = drained.add(f"syslog://127.0.0.1:{receiver.port}")
        drained.say("drain-marker-1")
        got = wait_for(lambda: has(receiver, " - - drain-marker-1"), timeout=30)
        assert re.fullmatch(
            r"<190>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00 drained app run\.\d+ - - "
            r"drain-marker-1", got[0]), got
        status, _ = drained.paas.curl(f"{drained.app}.localhost", "/drain-path")
        assert status == 200
        routed = wait_for(lambda: [m for m in receiver.messages()
                                   if " drained router router - - " in m and "/drain-path" in m],
                          timeout=30)
        assert "status=200" in routed[0], routed
        assert drained.status(token)["error"] is None
        # The receiver goes: the drain says so, keeps what is logged meanwhile, and delivers
        # it once the receiver is back on the same port.
        receiver.stop()
        drained.say("drain-marker-2")
        failing = wait_for(lambda: drained.status(token)["failing_since"], timeout=30)
        assert failing and drained.status(token)["error"] == "Connection refused"
        listing = drained.paas.cli("drains", "-a", drained.app).stdout
        assert f"syslog://127.0.0.1:{receiver.port} ({token}): failing for" in listing
        assert "Connection refused" in listing
        receiver = SyslogReceiver(receiver.port).start()
        wait_for(lambda: has(receiver, " - - drain-marker-2"), timeout=60)
        wait_for(lambda: drained.status(token)["error"] is None, timeout=10)
        assert "lines delivered" in drained.paas.cli("drains", "-a", drained.app).stdout
        # Removed by its URL: no more lines go there.
        out = drained.paas.cli("drains:remove", f"syslog://127.0.0.1:{receiver.port}",
                               "-a", drained.app).stdout
        assert out == (f"Removed drain syslog://127.0.0.1:{receiver.port} ({token}) "
                       f"from {drained.app}.\n")
        drained.say("drain-marker-3")
        drained.say("drain-marker-4")
        assert drained.drains() == []
        assert not has(receiver, "drain-marker-3")
    finally:
        receiver.stop()


def test_tls_and_https_drains_check_the_certificate(drained: Drained) -> None:
    tls = SyslogReceiver(free_port(), drained.trusted).start()
    https = HttpsReceiver(drained.trusted)
    stranger = HttpsReceiver(drained.untrusted)
    tokens = []
    try:
        tokens = [
            drained.add(f"syslog+tls://localhost:{tls.port}"),
            drained.add(f"https://user:s3cret@localhost:{https.port}/logs?app=x"),
            drained.add(f"https://127.0.0.1:{stranger.port}/logs"),
        ]
        listing = drained.paas.cli("drains", "-a", drained.app).stdout
        assert "s3cret" not in listing and f"https://user:***@localhost:{https.port}" in listing
        # Nor does the API hand it out (`drains --json` prints its answer as is; the TUI).
        listed = drained.paas.cli("drains", "-a", drained.app, "--json").stdout
        assert "s3cret" not in listed and "user:***@" in listed, listed
        drained.say("drain-marker-tls")
        wait_for(lambda: has(tls, " - - drain-marker-tls"), timeout=30)
        wait_for(lambda: has(https, " - - drain-marker-tls"), timeout=30)
        headers, body = next(p for p in https.posts if b"drain-marker-tls" in p[1])
        assert headers["content-type"] == "application/logplex-1"
        assert headers["logplex-msg-count"] == str(len(frames(body)))
        assert headers["logplex-drain-token"] == tokens[1]
        assert headers["authorization"] == httpx.BasicAuth("user", "s3cret")._auth_header
        failing = wait_for(lambda: drained.status(tokens[2])["error"], timeout=30)
        assert failing.startswith("TLS certificate not trusted"), failing
        assert stranger.posts == []
        assert "s3cret" not in drained.paas.log.read_text(errors="replace")
    finally:
        for token in tokens:
            drained.paas.cli("drains:remove", token, "-a", drained.app)
        tls.stop()
        https.stop()
        stranger.stop()


def test_drains_outlive_a_restart_of_the_server(drained: Drained) -> None:
    receiver = SyslogReceiver(free_port()).start()
    try:
        token = drained.add(f"syslog://127.0.0.1:{receiver.port}")
        assert drained.paas.proc is not None
        drained.paas.proc.terminate()  # a restart or upgrade: dynos and Caddy keep running
        drained.paas.proc.wait(timeout=60)
        drained.paas.restart()
        drained.say("drain-marker-restarted")
        wait_for(lambda: has(receiver, " - - drain-marker-restarted"), timeout=30)
        drained.paas.cli("drains:remove", token, "-a", drained.app)
    finally:
        receiver.stop()


def test_bad_drain_input(drained: Drained) -> None:
    paas, app = drained.paas, drained.app

    def fails(*args: str) -> str:
        result = paas.cli(*args, check=False)
        assert result.returncode == 1, result
        return result.stderr.rstrip("\n")

    assert fails("drains:add", "http://example.com/logs", "-a", app) == (
        " !    The drain URL 'http://example.com/logs' must start with syslog://, syslog+tls:// "
        "or https:// (plain http would send the logs unencrypted)."
    )
    assert "needs a port" in fails("drains:add", "syslog://example.com", "-a", app)
    assert fails("drains:remove", "d.nope", "-a", app) == (
        f" !    The app '{app}' has no drain 'd.nope'."
    )
    assert "No app named 'nope'" in fails("drains", "-a", "nope")
    urls = [f"syslog://127.0.0.1:{port}" for port in range(1, 6)]
    for url in urls:
        drained.add(url)
    try:
        assert fails("drains:add", urls[0], "-a", app) == (
            f" !    The app '{app}' already drains its logs to '{urls[0]}'."
        )
        assert "has 5 drains, the most it may have" in fails(
            "drains:add", "syslog://127.0.0.1:6", "-a", app
        )
    finally:
        for url in urls:
            paas.cli("drains:remove", url, "-a", app)
    # The API's own answers to bad input: tests/test_api_bad_input.py (drains rows).


def test_destroying_an_app_removes_its_drains(drained: Drained) -> None:
    paas, app = drained.paas, "drained-gone"
    receiver = SyslogReceiver(free_port()).start()
    try:
        paas.cli("apps:create", app)
        paas.cli("drains:add", f"syslog://127.0.0.1:{receiver.port}", "-a", app)
        paas.cli("apps:destroy", "-a", app, "--confirm", app)
        paas.cli("apps:create", app)  # the name again: a new app, without the old one's drains
        assert json.loads(paas.cli("drains", "-a", app, "--json").stdout) == []
        assert paas.cli("drains", "-a", app).stdout == (
            f"{app} has no log drains; add one with `minipaas drains:add URL -a {app}`.\n"
        )
        paas.cli("apps:destroy", "-a", app, "--confirm", app)
    finally:
        receiver.stop()


async def test_a_drain_that_falls_behind_loses_the_oldest_lines_and_says_how_many(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its buffer is bounded (here 10 lines): while the receiver is away the oldest lines go,
    and once it is back it first gets Heroku's L10 line with the count, then the newest lines."""
    monkeypatch.setattr(forwarder, "MAX_BUFFER", 10)
    port = free_port()
    logs = LogStore(tmp_path)
    spec = DrainSpec("behind", "d.test", parse_drain_url(f"syslog://127.0.0.1:{port}"))

    async def load() -> list[DrainSpec]:
        return [spec]

    drains = Drains(logs, load)
    await drains.reload()
    receiver = SyslogReceiver(port)
    try:
        logs.append_many("behind", "app", "web.1", [f"line {n}" for n in range(30)])
        await async_wait_for(lambda: drains.status("d.test").error == "Connection refused")
        receiver.start()
        got = await async_wait_for(lambda: len(receiver.messages()) >= 11 and receiver.messages())
        assert got[0].endswith(" behind minipaas drain - - Error L10 (output buffer overflow): "
                               "20 messages dropped because this drain fell behind")
        assert [m.rsplit(" - - ", 1)[1] for m in got[1:]] == [f"line {n}" for n in range(20, 30)]
        status = drains.status("d.test")
        assert status is not None and (status.delivered, status.dropped) == (10, 20)
    finally:
        await drains.close()
        receiver.stop()
        logs.close()


async def async_wait_for(predicate: Callable[[], T], timeout: float = 30) -> T:
    """`wait_for` for a predicate that needs this event loop to run meanwhile."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"still {value!r} after {timeout:g} s")
        await asyncio.sleep(0.05)
    return value
