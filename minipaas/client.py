"""The API client contract: the only thing the CLI, the SSH entry point and the TUI use to talk
to a server.

It reaches the local server through `<data-dir>/minipaas.sock`, or a remote one through
`MINIPAAS_URL` + `MINIPAAS_TOKEN`. Errors come back as `ApiError` carrying the server's one
sentence. The sync client uses the standard library on the local socket and httpx only for a
remote server; the async client (the TUI's) uses httpx. Nothing of the server is imported.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


class ApiError(Exception):
    """The server refused a request (or could not be reached); `str()` is the sentence to show."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def default_data_dir() -> Path:
    env = os.environ.get("MINIPAAS_DATA_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/minipaas")
    return Path.home() / ".local" / "share" / "minipaas"


def endpoint_from_env(data_dir: Path | None = None) -> dict[str, Any]:
    """Where to reach the server: MINIPAAS_URL (+ MINIPAAS_TOKEN, MINIPAAS_CA_FILE) unless a
    data dir is given, else the local socket of the data dir (MINIPAAS_DATA_DIR or default)."""
    url = os.environ.get("MINIPAAS_URL")
    if url and data_dir is None:
        verify: bool | str = os.environ.get("MINIPAAS_CA_FILE") or True
        return {"url": url, "token": os.environ.get("MINIPAAS_TOKEN"), "verify": verify}
    return {"socket": (data_dir or default_data_dir()) / "minipaas.sock"}


def _headers(agent: str, token: str | None) -> dict[str, str]:
    headers = {"User-Agent": agent}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


class _UnixConnection(http.client.HTTPConnection):
    """HTTP/1.1 over the server's unix socket (no TLS, no DNS, nothing heavy to import)."""

    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("minipaas", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Client:
    """A synchronous client; one instance per command.

    On the local socket it speaks HTTP/1.1 through the standard library (the CLI and the SSH
    entry point start fast); a remote server (URL + token) goes through httpx.
    """

    def __init__(
        self,
        *,
        socket: Path | None = None,
        url: str | None = None,
        token: str | None = None,
        verify: bool | str = True,
        timeout: float | None = 30.0,
    ) -> None:
        self.token = token
        self.timeout = timeout
        self._headers = _headers("minipaas-cli", token)
        self._remote: Any = None
        if url:
            import httpx

            self.where = url
            self._remote = httpx.Client(
                base_url=url.rstrip("/"), headers=self._headers, verify=verify, timeout=timeout
            )
        else:
            assert socket is not None
            self.where = str(socket)

    @classmethod
    def from_env(cls, data_dir: Path | None = None, timeout: float | None = 30.0) -> Client:
        """Remote when MINIPAAS_URL is set (with MINIPAAS_TOKEN), else the local socket."""
        return cls(**endpoint_from_env(data_dir), timeout=timeout)

    def close(self) -> None:
        if self._remote is not None:
            self._remote.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _message(status: int, body: bytes) -> ApiError:
        try:
            message = json.loads(body).get("error") or body.decode(errors="replace")
        except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
            message = body.decode(errors="replace").strip() or f"HTTP {status}"
        return ApiError(str(message), status)

    def _unreachable(self, exc: BaseException) -> ApiError:
        if (
            isinstance(exc, PermissionError)
            or isinstance(exc.__cause__, PermissionError)
            or ("Permission denied" in str(exc))
        ):
            return ApiError(
                f"Permission denied on {self.where}: only root and the SSH user's group may "
                "use the minipaas API socket."
            )
        return ApiError(
            f"Cannot reach the minipaas server at {self.where} ({exc.__class__.__name__}); "
            "is `minipaas server` running?"
        )

    def _local(
        self,
        method: str,
        path: str,
        json_body: Any,
        params: dict[str, Any] | None,
        timeout: float | None,
    ) -> tuple[_UnixConnection, http.client.HTTPResponse]:
        if params:
            path += "?" + urllib.parse.urlencode(params)
        body = None if json_body is None else json.dumps(json_body).encode()
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn = _UnixConnection(self.where, timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            return conn, conn.getresponse()
        except (FileNotFoundError, ConnectionRefusedError, PermissionError) as exc:
            conn.close()
            raise self._unreachable(exc) from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise ApiError(f"The request to {self.where} failed: {exc}.") from exc

    def request(
        self, method: str, path: str, *, json_body: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        if self._remote is not None:
            return self._remote_request(method, path, json_body, params)
        conn, response = self._local(method, path, json_body, params, self.timeout)
        try:
            data = response.read()
        finally:
            conn.close()
        if response.status >= 400:
            raise self._message(response.status, data)
        return json.loads(data)

    def stream(
        self, method: str, path: str, *, json_body: Any = None, params: dict[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        """NDJSON objects as the server sends them."""
        if self._remote is not None:
            yield from self._remote_stream(method, path, json_body, params)
            return
        conn, response = self._local(method, path, json_body, params, None)
        try:
            if response.status >= 400:
                raise self._message(response.status, response.read())
            while line := response.readline():
                if line.strip():
                    yield json.loads(line)
        finally:
            conn.close()

    def _remote_request(
        self, method: str, path: str, json_body: Any, params: dict[str, Any] | None
    ) -> Any:
        import httpx

        try:
            response = self._remote.request(method, path, json=json_body, params=params)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise self._unreachable(exc) from exc
        except httpx.HTTPError as exc:
            raise ApiError(f"The request to {self.where} failed: {exc}.") from exc
        if response.status_code >= 400:
            raise self._message(response.status_code, response.content)
        return response.json()

    def _remote_stream(
        self, method: str, path: str, json_body: Any, params: dict[str, Any] | None
    ) -> Iterator[dict[str, Any]]:
        import httpx

        try:
            with self._remote.stream(
                method, path, json=json_body, params=params, timeout=httpx.Timeout(30.0, read=None)
            ) as response:
                if response.status_code >= 400:
                    raise self._message(response.status_code, response.read())
                for line in response.iter_lines():
                    if line.strip():
                        yield json.loads(line)
        except httpx.ConnectError as exc:
            raise self._unreachable(exc) from exc

    # -- conveniences used by several front ends ------------------------------------------

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def deploy(self, app: str, sha: str, who: str) -> Iterator[dict[str, Any]]:
        return self.stream("POST", f"/api/apps/{app}/deploy", json_body={"sha": sha, "who": who})


class AsyncClient:
    """The same contract as `Client`, for asyncio front ends (the TUI): one per session.

    Errors are `ApiError`s; `status == 0` means the server could not be reached at all (the
    caller may retry), anything else is the server's answer.
    """

    def __init__(
        self,
        *,
        socket: Path | None = None,
        url: str | None = None,
        token: str | None = None,
        verify: bool | str = True,
        timeout: float | None = 30.0,
    ) -> None:
        import httpx

        headers = _headers("minipaas-tui", token)
        if url:
            self.where = url
            self._http = httpx.AsyncClient(
                base_url=url.rstrip("/"), headers=headers, verify=verify, timeout=timeout
            )
        else:
            assert socket is not None
            self.where = str(socket)
            # No TLS on a unix socket: skipping the CA bundle saves ~0.1 s of TUI start-up.
            transport = httpx.AsyncHTTPTransport(uds=str(socket), verify=False)
            self._http = httpx.AsyncClient(
                transport=transport, base_url="http://minipaas", headers=headers, timeout=timeout
            )

    @classmethod
    def from_env(cls, data_dir: Path | None = None, timeout: float | None = 30.0) -> AsyncClient:
        """Remote when MINIPAAS_URL is set (with MINIPAAS_TOKEN), else the local socket."""
        return cls(**endpoint_from_env(data_dir), timeout=timeout)

    @classmethod
    def like(cls, client: Client, timeout: float | None = 30.0) -> AsyncClient:
        """An async client for the same server (and token) as a sync `Client`."""
        if client.where.startswith(("http://", "https://")):
            verify: bool | str = os.environ.get("MINIPAAS_CA_FILE") or True
            return cls(url=client.where, token=client.token, verify=verify, timeout=timeout)
        return cls(socket=Path(client.where), timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    def _unreachable(self, exc: Exception) -> ApiError:
        if "Permission denied" in str(exc) or isinstance(exc.__cause__, PermissionError):
            return ApiError(
                f"Permission denied on {self.where}: only root and the SSH user's group may "
                "use the minipaas API socket."
            )
        return ApiError(
            f"Cannot reach the minipaas server at {self.where} ({exc.__class__.__name__}); "
            "is `minipaas server` running?"
        )

    async def request(
        self, method: str, path: str, *, json_body: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        import httpx

        try:
            response = await self._http.request(method, path, json=json_body, params=params)
        except (httpx.TransportError, OSError) as exc:
            raise self._unreachable(exc) from exc
        except httpx.HTTPError as exc:
            raise ApiError(f"The request to {self.where} failed: {exc}.") from exc
        if response.status_code >= 400:
            raise Client._message(response.status_code, response.content)
        try:
            return response.json()
        except json.JSONDecodeError as exc:
            raise ApiError(
                f"The server at {self.where} sent a non-JSON answer to {path}.",
                response.status_code,
            ) from exc

    async def stream(
        self, method: str, path: str, *, json_body: Any = None, params: dict[str, Any] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """NDJSON objects as the server sends them; a line that is not JSON is skipped."""
        import httpx

        try:
            async with self._http.stream(
                method, path, json=json_body, params=params, timeout=httpx.Timeout(30.0, read=None)
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise Client._message(response.status_code, response.content)
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    try:
                        item = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if isinstance(item, dict):
                        yield item
        except (httpx.TransportError, OSError) as exc:
            raise self._unreachable(exc) from exc

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params=params or None)
