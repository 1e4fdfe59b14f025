"""The TUI's only I/O: typed calls to the minipaas API through `minipaas.client.AsyncClient`.

Owns: the API paths the screens use and the shape checks on their answers. Errors stay
`ApiError`s (`status == 0`: the server could not be reached; 404 on an app route: the app is
gone). Must not touch: widgets, files or processes; tests pass a fake transport with the same
`request`/`stream`/`aclose` methods for rendering-only checks. The first apps list alone comes
through the sync `Client` (standard library, in a thread): `prefetched_apps` when the CLI asked
for it before importing Textual, else `first_apps`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Protocol
from urllib.parse import quote

from minipaas.client import FOLLOW_READ, ApiError, Client, Pending

__all__ = ["Api", "ApiError", "Transport", "first_apps", "prefetched_apps"]


class Transport(Protocol):
    """What `AsyncClient` offers and the TUI needs (a fake implements the same)."""

    where: str

    async def request(
        self, method: str, path: str, *, json_body: Any = None, params: dict[str, Any] | None = None
    ) -> Any: ...

    def stream(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        read_timeout: float | None = None,
    ) -> AsyncIterator[dict[str, Any]]: ...

    async def aclose(self) -> None: ...


def _list(data: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(data, list):
        raise ApiError(f"The server sent an unexpected answer for {what}.")
    return [item for item in data if isinstance(item, dict)]


def _dict(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ApiError(f"The server sent an unexpected answer for {what}.")
    return data


async def first_apps(client: Client) -> list[dict[str, Any]]:
    """`Api.apps()` through a sync `Client`, run in a thread (for the first frame only)."""
    return _list(await asyncio.to_thread(client.get, "/api/apps"), "apps")


async def prefetched_apps(pending: Pending) -> list[dict[str, Any]]:
    """`Api.apps()` from a `Client.fetch("/api/apps")` started earlier (waits in a thread only
    if it is still running)."""
    data = pending.result() if pending.done() else await asyncio.to_thread(pending.result)
    return _list(data, "apps")


class Api:
    """One per TUI session; every method raises `ApiError` with a sentence to show."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    @property
    def where(self) -> str:
        return self.transport.where

    async def close(self) -> None:
        await self.transport.aclose()

    @staticmethod
    def _app(name: str) -> str:
        return f"/api/apps/{quote(name, safe='')}"

    async def status(self) -> dict[str, Any]:
        return _dict(await self.transport.request("GET", "/api/status"), "status")

    async def apps(self) -> list[dict[str, Any]]:
        return _list(await self.transport.request("GET", "/api/apps"), "apps")

    async def app(self, name: str) -> dict[str, Any]:
        return _dict(await self.transport.request("GET", self._app(name)), f"app {name!r}")

    async def dynos(self, name: str) -> dict[str, Any]:
        return _dict(await self.transport.request("GET", f"{self._app(name)}/dynos"), "dynos")

    async def scale(self, name: str, counts: dict[str, int]) -> dict[str, Any]:
        return _dict(
            await self.transport.request("PATCH", f"{self._app(name)}/formation", json_body=counts),
            "formation",
        )

    async def restart(self, name: str, process_type: str | None = None) -> dict[str, Any]:
        return _dict(
            await self.transport.request(
                "POST", f"{self._app(name)}/restart", json_body={"type": process_type}
            ),
            "restart",
        )

    async def releases(self, name: str) -> list[dict[str, Any]]:
        return _list(await self.transport.request("GET", f"{self._app(name)}/releases"), "releases")

    async def rollback(self, name: str, version: int | None) -> int | None:
        data = await self.transport.request(
            "POST", f"{self._app(name)}/rollback", json_body={"version": version}
        )
        release = data.get("release") if isinstance(data, dict) else None
        return release if isinstance(release, int) else None

    async def config(self, name: str) -> dict[str, str]:
        data = _dict(await self.transport.request("GET", f"{self._app(name)}/config"), "config")
        return {str(k): str(v) for k, v in data.items()}

    async def set_config(self, name: str, changes: dict[str, str | None]) -> dict[str, str]:
        data = _dict(
            await self.transport.request("PATCH", f"{self._app(name)}/config", json_body=changes),
            "config",
        )
        return {str(k): str(v) for k, v in data.items()}

    async def domains(self, name: str) -> list[dict[str, Any]]:
        return _list(await self.transport.request("GET", f"{self._app(name)}/domains"), "domains")

    async def add_domain(self, name: str, hostname: str) -> dict[str, Any]:
        """Add `hostname` to the app; the server validates it (and says why it refuses)."""
        return _dict(
            await self.transport.request(
                "POST", f"{self._app(name)}/domains", json_body={"hostname": hostname}
            ),
            "domain",
        )

    async def remove_domain(self, name: str, hostname: str) -> dict[str, Any]:
        path = f"{self._app(name)}/domains/{quote(hostname, safe='')}"
        return _dict(await self.transport.request("DELETE", path), "domain")

    async def _served(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """`GET path`'s answer, or None when this server has no such endpoint (one older than
        the feature: add-ons, drains, metrics, errors)."""
        try:
            return await self.transport.request("GET", path, params=params)
        except ApiError as exc:
            if exc.status == 404 and "route" in str(exc):
                return None
            raise

    async def _listed(self, name: str, what: str) -> list[dict[str, Any]] | None:
        """`GET /api/apps/NAME/<what>`, or None when this server has no such endpoint (older
        than add-ons and drains)."""
        data = await self._served(f"{self._app(name)}/{what}")
        return None if data is None else _list(data, what)

    async def certs(self, name: str) -> list[dict[str, Any]] | None:
        """Each hostname's TLS certificate (hostname, status, issuer, expires, error); None:
        the server has no `certs`."""
        return await self._listed(name, "certs")

    async def addons(self, name: str) -> list[dict[str, Any]] | None:
        """The app's add-ons (service, name, plan, config var, created_at); None: the server
        has no add-ons."""
        return await self._listed(name, "addons")

    async def addon_info(self, name: str, service: str) -> dict[str, Any]:
        """What `pg:info` shows (version, size in bytes, connections, ...) of an add-on."""
        path = f"{self._app(name)}/addons/{quote(service, safe='')}/info"
        return _dict(await self.transport.request("GET", path), "add-on info")

    async def drains(self, name: str) -> list[dict[str, Any]] | None:
        """The app's log drains (url, token, created_at, status); None: the server has no
        drains. The URL is as it was added, credentials included: see `fmt.without_userinfo`."""
        return await self._listed(name, "drains")

    async def add_drain(self, name: str, url: str) -> dict[str, Any]:
        """Add a drain; the server checks the URL (and says why it refuses)."""
        return _dict(
            await self.transport.request(
                "POST", f"{self._app(name)}/drains", json_body={"url": url}
            ),
            "drain",
        )

    async def remove_drain(self, name: str, token: str) -> dict[str, Any]:
        """Remove the drain with this token (`d.…`) or URL."""
        return _dict(
            await self.transport.request(
                "DELETE", f"{self._app(name)}/drains", json_body={"drain": token}
            ),
            "drain",
        )

    async def maintenance(self, name: str, on: bool) -> dict[str, Any]:
        return _dict(
            await self.transport.request(
                "PUT", f"{self._app(name)}/maintenance", json_body={"on": on}
            ),
            "maintenance",
        )

    async def metrics(self, name: str, since: int = 3600) -> dict[str, Any] | None:
        """The app's time series, or None when this server has no metrics endpoint yet."""
        data = await self._served(f"{self._app(name)}/metrics", {"since": since})
        return None if data is None else _dict(data, "metrics")

    async def errors(self, name: str, hours: int = 1) -> dict[str, Any] | None:
        """What `apps:errors` counts over the last `hours` (router codes by code, dyno errors
        by process type), or None when this server has no errors endpoint."""
        data = await self._served(f"{self._app(name)}/errors", {"hours": hours})
        return None if data is None else _dict(data, "errors")

    async def host_metrics(self, since: int = 3600) -> dict[str, Any] | None:
        """The host's CPU, memory and data-dir disk (now and as series), or None when this
        server has no host metrics endpoint."""
        data = await self._served("/api/metrics/host", {"since": since})
        return None if data is None else _dict(data, "host metrics")

    async def logs(
        self, name: str, *, n: int = 200, source: str | None = None, dyno: str | None = None
    ) -> AsyncIterator[str]:
        """The last `n` lines, then new ones as they are written (never ends on its own)."""
        params: dict[str, Any] = {"n": n, "tail": 1}
        if source:
            params["source"] = source
        if dyno:
            params["dyno"] = dyno
        logs = f"{self._app(name)}/logs"
        async for item in self.transport.stream(
            "GET", logs, params=params, read_timeout=FOLLOW_READ
        ):
            line = item.get("line")
            if isinstance(line, str):
                yield line
