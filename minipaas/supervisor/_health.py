"""Readiness of a web dyno: its port accepts, its health check answers, it stayed up long enough.

Owns the probing only (one TCP connect, one HTTP GET on 127.0.0.1); it never kills, waits for
deadlines or changes state: `Probe.check()` says "ready" (None) or what is still missing.
"""

from __future__ import annotations

import asyncio

import httpx

from minipaas.supervisor._proc import accepts, group_listens_on
from minipaas.supervisor.dyno import HealthCheck

#: Bytes of a health check answer kept to look for `expect`.
MAX_BODY = 64 * 1024


class Probe:
    """Checks one web dyno life; keep it for the life's duration (it reuses its HTTP client)."""

    def __init__(self, port: int, check: HealthCheck | None, owner: int | None = None) -> None:
        self.port = port
        self.check = check
        #: The dyno's process group: the listener on the port must belong to it.
        self.owner = owner
        self._client: httpx.AsyncClient | None = None

    async def missing(self, uptime: float) -> tuple[str, str] | None:
        """None when ready, else (what is missing, detail).

        Worded to fit "it did not {what} within 30 s: {detail}".
        """
        if not await accepts(self.port):
            return f"accept connections on port {self.port}", ""
        if self.owner is not None and not await asyncio.to_thread(
            group_listens_on, self.owner, self.port
        ):
            return f"listen on port {self.port} itself", "another process holds that port"
        check = self.check
        if check is None or check.path is None:
            # No health check path: the app must at least answer HTTP (any status). A TCP
            # accept alone is not enough: gunicorn's socket accepts before its workers run.
            failure = await self._answers()
            if failure is not None:
                return f"answer HTTP on port {self.port}", failure
        if check is None:
            return None
        if check.path is not None:
            answer = await self._get(check.path)
            if answer is not None:
                return f"pass its health check GET {check.path}", f"last answer {answer}"
        if uptime < check.min_uptime:
            return f"stay up {check.min_uptime:g} s", ""
        return None

    async def _answers(self) -> str | None:
        """None if GET / gets any HTTP answer, else what went wrong."""
        try:
            await self._client_().get(
                f"http://127.0.0.1:{self.port}/", headers={"User-Agent": "minipaas-health"}
            )
        except httpx.HTTPError as exc:
            return f"no HTTP answer ({type(exc).__name__})"
        return None

    def _client_(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                trust_env=False, timeout=httpx.Timeout(5.0), follow_redirects=False
            )
        return self._client

    async def _get(self, path: str) -> str | None:
        """None if GET `path` answers 2xx (with `expect` in the body), else the answer."""
        assert self.check is not None
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            response = await self._client_().get(url, headers={"User-Agent": "minipaas-health"})
        except httpx.HTTPError as exc:
            return f"an error ({type(exc).__name__})"
        if not 200 <= response.status_code < 300:
            return str(response.status_code)
        expect = self.check.expect
        if expect is not None and expect not in response.text[:MAX_BODY]:
            return f"{response.status_code} without {expect!r} in its body"
        return None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
