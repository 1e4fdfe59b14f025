"""Token auth of the API: bearer and basic credentials, local-socket trust, 401 answers."""

from __future__ import annotations

import base64
import hashlib

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from minipaas.api.auth import LocalMarker, TokenAuth, Tokens, credentials


def test_credentials_parsing() -> None:
    basic = base64.b64encode(b"user:s3cret").decode()
    assert credentials(f"Basic {basic}") == "s3cret"
    assert credentials("Bearer abc") == "abc"
    assert credentials("Basic !!!notbase64") is None
    assert credentials("Digest x") is None
    assert credentials(None) is None
    assert credentials("Bearer ") is None


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


async def test_token_auth_over_asgi() -> None:
    tokens = Tokens([hashlib.sha256(b"good").hexdigest()])
    inner = Starlette(routes=[Route("/x", hello)])
    guarded = TokenAuth(inner, tokens)
    transport = httpx.ASGITransport(app=guarded)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        missing = await client.get("/x")
        assert missing.status_code == 401
        assert "Missing API token" in missing.json()["error"]
        assert missing.headers["www-authenticate"].startswith("Basic")
        wrong = await client.get("/x", headers={"Authorization": "Bearer bad"})
        assert wrong.status_code == 401 and "Invalid API token" in wrong.json()["error"]
        ok = await client.get("/x", headers={"Authorization": "Bearer good"})
        assert ok.status_code == 200 and ok.text == "hello"
        basic = await client.get("/x", auth=("git", "good"))
        assert basic.status_code == 200

    local = LocalMarker(TokenAuth(inner, tokens))
    transport = httpx.ASGITransport(app=local)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert (await c.get("/x")).status_code == 200
