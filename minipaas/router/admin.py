"""A small async client for Caddy's admin API over its unix socket.

Owns the HTTP conversation with the admin endpoint (`/load`, `/config/`, upstream status) and
turns every failure into a `RouterError` carrying Caddy's own message. It never renders
configuration and never starts or stops processes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from minipaas.router.errors import RouterError


class _Dropped(RouterError):
    """The admin socket closed or reset the connection before answering (not a timeout)."""


class CaddyAdmin:
    """Talks to one Caddy through `socket`; create it before Caddy is up, it connects lazily."""

    def __init__(self, socket: Path, *, timeout: float = 30.0) -> None:
        self._socket = socket
        # Host "localhost" matches the `origins` the rendered admin block allows.
        self._client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(socket)),
            base_url="http://localhost",
            timeout=timeout,
            # Caddy replaces its admin server on every /load, which drops idle keep-alive
            # connections; a fresh connect over the unix socket costs next to nothing.
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    @property
    def socket(self) -> Path:
        return self._socket

    async def load(self, config: dict[str, Any]) -> None:
        """Replace Caddy's whole configuration; on any error the old one stays active."""
        body = json.dumps(config, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        try:
            await self._request("POST", "/load", content=body, headers=headers)
        except _Dropped:
            # Caddy replaces its admin server while it applies a configuration, and again when
            # it rolls a failed one back; under load the answer can go down with the old server
            # (an empty read, no status). Loading the same document again is safe: Caddy answers
            # at once when it already runs it, else applies it or says why it cannot.
            await self._request("POST", "/load", content=body, headers=headers)

    async def config(self) -> dict[str, Any]:
        """The configuration Caddy is running (empty when it has none)."""
        response = await self._request("GET", "/config/")
        data = response.json()
        return data if isinstance(data, dict) else {}

    async def upstreams(self) -> list[dict[str, Any]]:
        """Reverse-proxy upstream counters: `[{"address", "num_requests", "fails"}]`."""
        response = await self._request("GET", "/reverse_proxy/upstreams")
        data = response.json()
        return data if isinstance(data, list) else []

    async def ping(self) -> bool:
        """True when the admin endpoint answers."""
        try:
            await self._request("GET", "/config/")
        except RouterError:
            return False
        return True

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            dropped = isinstance(exc, httpx.TransportError) and not isinstance(
                exc, httpx.TimeoutException
            )
            raise (_Dropped if dropped else RouterError)(
                f"Caddy's admin socket {self._socket} did not answer {method} {path}: "
                f"{str(exc) or type(exc).__name__}."
            ) from exc
        if response.is_success:
            return response
        raise RouterError(
            f"Caddy refused {method} {path} ({response.status_code}): {_caddy_message(response)}"
        )


def _caddy_message(response: httpx.Response) -> str:
    """Caddy answers errors as `{"error": "..."}`; fall back to the raw body."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])
    return response.text.strip() or response.reason_phrase
