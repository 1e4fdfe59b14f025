"""Token auth for the API: bearer tokens or HTTP basic (token as the password, for git).

Requests that arrive on the local unix socket are trusted: the socket is owner-only, so reaching
it already proves the caller is the server's user (or root). `LocalMarker` tags those requests.
`private_unix_socket` makes such sockets (the API's and the attached-run one).
Only sha256 hashes of tokens are kept in memory; comparison is by hash lookup.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import socket
from collections.abc import Iterable
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

LOCAL_KEY = "minipaas.local"


class Tokens:
    """The set of valid API token hashes (loaded at start, grown by `add`)."""

    def __init__(self, hashes: Iterable[str] = ()) -> None:
        self._hashes = set(hashes)

    def add_hash(self, token_hash: str) -> None:
        self._hashes.add(token_hash)

    def valid(self, token: str | None) -> bool:
        if not token:
            return False
        return hashlib.sha256(token.encode()).hexdigest() in self._hashes


def credentials(authorization: str | None) -> str | None:
    """The token carried by an Authorization header (Bearer, or Basic's password)."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


class LocalMarker:
    """Marks every request of the wrapped app as coming from the local socket."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, LOCAL_KEY: True}
        await self.app(scope, receive, send)


class TokenAuth:
    """401 for TCP requests (and WebSocket upgrades) without a valid token; local-socket
    requests pass."""

    def __init__(self, app: ASGIApp, tokens: Tokens, public: tuple[str, ...] = ()) -> None:
        self.app = app
        self.tokens = tokens
        self.public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        guarded = kind in ("http", "websocket") and not scope.get(LOCAL_KEY)
        if not guarded or scope["path"] in self.public:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if self.tokens.valid(credentials(auth)):
            await self.app(scope, receive, send)
            return
        # A WebSocket upgrade (the remote `run`) is refused with the same 401 answer, through
        # ASGI's denial response (uvicorn has it), after the handshake's connect event.
        prefix = "http"
        if kind == "websocket":
            if (await receive())["type"] != "websocket.connect":
                return
            prefix = "websocket.http"
        message = (
            "Missing API token: send it as a Bearer token (MINIPAAS_TOKEN) or as the basic-auth "
            "password."
            if not auth
            else "Invalid API token; `minipaas auth:token` on the server prints a valid one."
        )
        body = json.dumps({"error": message}).encode()
        await send(
            {
                "type": f"{prefix}.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Basic realm="minipaas"'),
                ],
            }
        )
        await send({"type": f"{prefix}.response.body", "body": body})


def private_unix_socket(path: Path, gid: int | None = None) -> socket.socket:
    """A listening, non-blocking unix socket, owner-only from the start (uvicorn's own would be
    0666); with `gid`, that group (the SSH user's, see Settings.ssh_user) may use it too."""
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    if gid is None:
        os.chmod(path, 0o600)
    else:
        os.chown(path, 0, gid)
        os.chmod(path, 0o660)
    sock.listen(128)
    sock.setblocking(False)
    return sock
