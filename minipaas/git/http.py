"""Git's smart HTTP protocol for the apps' repositories, as an ASGI app mounted at `/git`.

`https://minipaas.<domain>/git/NAME.git` serves clone/fetch (upload-pack) and push
(receive-pack) behind HTTP Basic auth, where the password is an API token. Dulwich's handlers are
synchronous and block on the request body, so they run as a WSGI app in a2wsgi's thread pool;
a2wsgi streams what they write, which is what makes the build's `remote:` lines arrive live.
This module owns only the HTTP framing: auth, URL checks, error answers git can display. Pushing
itself is `receive.GatedReceivePack`; storage is `repos.Repos`.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast
from urllib.parse import parse_qs
from wsgiref.types import StartResponse, WSGIEnvironment

from a2wsgi import WSGIMiddleware
from dulwich.protocol import pkt_line
from dulwich.server import Handler, UploadPackHandler
from dulwich.web import GunzipFilter, HTTPGitApplication, LimitedInputFilter
from starlette.types import ASGIApp

from minipaas.errors import NotFound, UserError
from minipaas.git.receive import DEFAULT_MAX_PUSH_BYTES, Gate, receive_pack_factory
from minipaas.git.repos import AppsBackend, Repos

Authorize = Callable[[str | None, str | None], bool]
"""`authorize(user, password)`: True if these Basic credentials may use git (password = token)."""

SERVICES = ("git-upload-pack", "git-receive-pack")
_ENDPOINT = re.compile(r"(?P<repo>.*?)/(?P<endpoint>info/refs|git-upload-pack|git-receive-pack)")
_REQUEST_SLACK = 16 * 1024 * 1024  # ref lines and negotiation around the pack itself
_log = logging.getLogger(__name__)


def make_git_app(
    repos: Repos,
    gate: Gate,
    authorize: Authorize,
    *,
    max_push_bytes: int = DEFAULT_MAX_PUSH_BYTES,
    workers: int = 8,
) -> ASGIApp:
    """The ASGI app to mount at `/git`; each clone or push in progress holds one of `workers`."""
    wsgi = GitWSGI(repos, gate, authorize, max_push_bytes=max_push_bytes)
    return cast(ASGIApp, WSGIMiddleware(wsgi, workers=workers))  # type: ignore[arg-type]


def basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    """(user, password) from an `Authorization: Basic ...` header, (None, None) if absent/bad."""
    if not header:
        return None, None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else (None, None)


class GitWSGI:
    """The WSGI side: runs in a2wsgi's worker threads, one request per call."""

    def __init__(
        self, repos: Repos, gate: Gate, authorize: Authorize, *, max_push_bytes: int
    ) -> None:
        self.repos = repos
        self.gate = gate
        self.authorize = authorize
        self.max_push_bytes = max_push_bytes

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        user, password = basic_credentials(environ.get("HTTP_AUTHORIZATION"))
        if not self.authorize(user, password):
            start_response(
                "401 Unauthorized",
                [("Content-Type", "text/plain"), ("WWW-Authenticate", 'Basic realm="minipaas"')],
            )
            return [b"Use a minipaas API token as the password.\n"]
        # uvicorn has already de-chunked the body; left in place, this header makes dulwich
        # de-chunk it a second time and fail every push larger than git's 1 MiB postBuffer.
        environ.pop("HTTP_TRANSFER_ENCODING", None)

        match = _ENDPOINT.fullmatch(environ.get("PATH_INFO", ""))
        if match is None:
            return _text(start_response, "404 Not Found", "Git repositories live at /git/NAME.git.")
        endpoint = match["endpoint"]
        if endpoint == "info/refs":
            service = parse_qs(environ.get("QUERY_STRING", "")).get("service", [""])[0]
        else:
            service = endpoint
        if service not in SERVICES:
            return _text(
                start_response, "403 Forbidden", "minipaas speaks only git's smart HTTP protocol."
            )
        try:
            app = self.repos.parse_path(match["repo"])
            self.repos.require(app)
        except UserError as error:
            if endpoint == "info/refs":
                # git shows an ERR line in the advertisement as "remote error: ..." (a 404
                # would only say "repository not found", hiding how to fix it).
                start_response(
                    "200 OK", [("Content-Type", f"application/x-{service}-advertisement")]
                )
                return [pkt_line(f"ERR {error}".encode())]
            status = "404 Not Found" if isinstance(error, NotFound) else "400 Bad Request"
            return _text(start_response, status, str(error))
        return self._serve(app, environ, start_response)

    def _serve(
        self, app: str, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterator[bytes]:
        backend = AppsBackend(self.repos)
        handlers: dict[bytes, Callable[..., Handler]] = {
            b"git-upload-pack": UploadPackHandler,
            b"git-receive-pack": receive_pack_factory(
                self.repos, app, self.gate, self.max_push_bytes
            ),
        }
        git = LimitedInputFilter(
            GunzipFilter(HTTPGitApplication(backend, handlers=handlers)),
            max_request_size=self.max_push_bytes + _REQUEST_SLACK,
        )
        # Dulwich answers `200` before it reads the request body; sent at once (a2wsgi does
        # that), the headers reach git while it is still uploading the pack, and curl's HTTP/2
        # upload then sometimes resets its own stream: the push dies with "early EOF" here and
        # git hangs. As PEP 3333 asks of servers, the status goes out with the first body bytes.
        pending: tuple[str, list[tuple[str, str]], Any] | None = None
        send: Callable[[bytes], object] | None = None

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            nonlocal pending
            pending = (status, headers, exc_info)
            return write

        def flush() -> None:
            nonlocal pending, send
            if pending is not None:
                send = start_response(*pending)
                pending = None

        def write(data: bytes) -> None:
            if data:
                flush()
                assert send is not None
                send(data)

        try:
            for chunk in git(environ, start):
                if chunk:
                    flush()
                    yield chunk
            flush()
        except Exception:
            _log.exception("git over HTTP failed for app %s", app)
            if send is None:  # else the status is out already: all we can do is end the body
                yield from _text(start_response, "500 Internal Server Error", "minipaas failed.")
        finally:
            backend.close()


def _text(start_response: StartResponse, status: str, message: str) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [f"{message}\n".encode()]
