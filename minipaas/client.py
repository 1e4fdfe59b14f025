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
import threading
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio


FOLLOW_READ = 45.0
"""Seconds a `logs` follower waits for a byte over MINIPAAS_URL: three of the server's
heartbeats (`api.app.FOLLOW_HEARTBEAT`), so a silently dead connection is noticed."""


DOWNLOAD_CHUNK = 256 * 1024
"""Bytes a download (`pg:backups:download`) reads and writes at a time."""


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
        if not url.lower().startswith(("https://", "http://")):
            raise ApiError(
                f"MINIPAAS_URL {url[:100]!r} is not a URL: use https://HOST, e.g. "
                "https://minipaas.example.com."
            )
        verify: bool | str = os.environ.get("MINIPAAS_CA_FILE") or True
        return {"url": url, "token": token_from_env(), "verify": verify}
    return {"socket": (data_dir or default_data_dir()) / "minipaas.sock"}


def token_from_env() -> str | None:
    """MINIPAAS_TOKEN without the blanks around it (`$(cat token-file)`, a pasted line); an
    `ApiError` if it holds what no token does (it goes into an HTTP header): a space, a control
    character, a non-ASCII letter. The message never shows the value: it is a secret."""
    token = (os.environ.get("MINIPAAS_TOKEN") or "").strip()
    if not token:
        return None
    if not (token.isascii() and token.isprintable()) or " " in token:
        raise ApiError(
            "MINIPAAS_TOKEN is not a minipaas token: it holds a space, a control character or "
            "a non-ASCII character; `minipaas auth:token` on the server prints the token."
        )
    return token


def _headers(agent: str, token: str | None) -> dict[str, str]:
    headers = {"User-Agent": agent}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def unreachable(where: str, exc: BaseException) -> ApiError:
    """The sentence for a server that could not be reached at `where` (or not by this user)."""
    if (
        isinstance(exc, PermissionError)
        or isinstance(exc.__cause__, PermissionError)
        or "Permission denied" in str(exc)
    ):
        return ApiError(
            f"Permission denied on {where}: only root and the SSH user's group may use the "
            "minipaas API socket."
        )
    return ApiError(
        f"Cannot reach the minipaas server at {where} ({exc.__class__.__name__}); "
        "is `minipaas server` running?"
    )


def request_failed(where: str, exc: BaseException) -> ApiError:
    """The sentence for a request to `where` that broke off (`exc` says how)."""
    reason = str(exc).rstrip(".")
    return ApiError(f"The request to {where} failed: {reason}.")


class Pending:
    """A request running in a daemon thread: `result()` waits for its answer or raises its
    `ApiError`. The TUI starts its first apps list this way before it imports Textual, so the
    answer is there by the time the first frame is drawn."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None
        threading.Thread(target=self._run, args=(call,), name="minipaas-fetch", daemon=True).start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self._value = call()
        except BaseException as exc:  # handed over to whoever asks for the result
            self._error = exc
        finally:
            self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> Any:
        if not self._done.wait(timeout):
            raise TimeoutError("The request did not finish in time.")
        if self._error is not None:
            raise self._error
        return self._value


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

    def _json(self, status: int, path: str, body: bytes | str) -> Any:
        """A successful answer's JSON; `ApiError` if it is not JSON (a redirect's empty body,
        or MINIPAAS_URL pointing at something that is not a minipaas server)."""
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(
                f"The server at {self.where} sent a non-JSON answer (HTTP {status}) to {path}; "
                "is it a minipaas server?",
                status,
            ) from None

    def _unreachable(self, exc: BaseException) -> ApiError:
        return unreachable(self.where, exc)

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
            raise request_failed(self.where, exc) from exc

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
        return self._json(response.status, path, data)

    def stream(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        read_timeout: float | None = None,
    ) -> Iterator[dict[str, Any]]:
        """NDJSON objects as the server sends them. Over MINIPAAS_URL, `read_timeout` seconds
        without a byte end the stream with httpx's ReadTimeout (a connection that died)."""
        if self._remote is not None:
            yield from self._remote_stream(method, path, json_body, params, read_timeout)
            return
        conn, response = self._local(method, path, json_body, params, None)
        try:
            if response.status >= 400:
                raise self._message(response.status, response.read())
            while line := response.readline():
                if line.strip():
                    yield self._json(response.status, path, line)
        finally:
            conn.close()

    def download(
        self, path: str, write: Callable[[bytes], object], *, params: dict[str, Any] | None = None
    ) -> dict[str, str]:
        """GET `path` and hand its body to `write` chunk by chunk as it arrives (a dump of
        gigabytes is never held in memory); the answer's headers."""
        if self._remote is not None:
            return self._remote_download(path, write, params)
        conn, response = self._local("GET", path, None, params, self.timeout)
        try:
            if response.status >= 400:
                raise self._message(response.status, response.read())
            while chunk := response.read(DOWNLOAD_CHUNK):
                write(chunk)
            return {k.lower(): v for k, v in response.getheaders()}
        except (OSError, http.client.HTTPException) as exc:
            raise request_failed(self.where, exc) from exc
        finally:
            conn.close()

    def upload(
        self,
        path: str,
        read: Callable[[int], bytes],
        *,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """POST what `read(n)` gives until it gives b"" (a file, stdin) as the body, sent as
        it is read (chunked: a dump of gigabytes is never held in memory); the JSON answer."""

        def chunks() -> Iterator[bytes]:
            while chunk := read(DOWNLOAD_CHUNK):
                yield chunk

        if self._remote is not None:
            return self._remote_request(
                "POST", path, None, params, content=chunks(),
                headers={"Content-Type": "application/octet-stream"},
            )
        if params:
            path += "?" + urllib.parse.urlencode(params)
        headers = {**self._headers, "Content-Type": "application/octet-stream"}
        conn = _UnixConnection(self.where, self.timeout)
        try:
            conn.request("POST", path, body=chunks(), headers=headers, encode_chunked=True)
            response = conn.getresponse()
            data = response.read()
        except (FileNotFoundError, ConnectionRefusedError, PermissionError) as exc:
            raise self._unreachable(exc) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise request_failed(self.where, exc) from exc
        finally:
            conn.close()
        if response.status >= 400:
            raise self._message(response.status, data)
        return self._json(response.status, path, data)

    def _remote_download(
        self, path: str, write: Callable[[bytes], object], params: dict[str, Any] | None
    ) -> dict[str, str]:
        import httpx

        try:
            with self._remote.stream("GET", path, params=params) as response:
                if response.status_code >= 400:
                    raise self._message(response.status_code, response.read())
                for chunk in response.iter_bytes(DOWNLOAD_CHUNK):
                    write(chunk)
                return {k.lower(): v for k, v in response.headers.items()}
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise self._unreachable(exc) from exc
        except httpx.HTTPError as exc:
            raise request_failed(self.where, exc) from exc

    def _remote_request(
        self,
        method: str,
        path: str,
        json_body: Any,
        params: dict[str, Any] | None,
        *,
        content: Iterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One request over MINIPAAS_URL (a JSON body, or `content` as it is produced); the
        JSON answer, or the error it says in one sentence."""
        import httpx

        try:
            response = self._remote.request(
                method, path, json=json_body, params=params, content=content, headers=headers
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise self._unreachable(exc) from exc
        except httpx.HTTPError as exc:
            raise request_failed(self.where, exc) from exc
        if response.status_code >= 400:
            raise self._message(response.status_code, response.content)
        return self._json(response.status_code, path, response.content)

    def _remote_stream(
        self,
        method: str,
        path: str,
        json_body: Any,
        params: dict[str, Any] | None,
        read_timeout: float | None,
    ) -> Iterator[dict[str, Any]]:
        import httpx

        timeout = httpx.Timeout(30.0, read=read_timeout)
        try:
            with self._remote.stream(
                method, path, json=json_body, params=params, timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    raise self._message(response.status_code, response.read())
                for line in response.iter_lines():
                    if line.strip():
                        yield self._json(response.status_code, path, line)
        except httpx.ConnectError as exc:
            raise self._unreachable(exc) from exc

    # -- conveniences used by several front ends ------------------------------------------

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def fetch(self, path: str, **params: Any) -> Pending:
        """`get(path)` started in a thread: returns at once, `result()` gives the answer."""
        return Pending(lambda: self.get(path, **params))

    def deploy(
        self, app: str, sha: str, who: str, *, ref: str | None = None, old: str | None = None
    ) -> Iterator[dict[str, Any]]:
        body = {"sha": sha, "who": who, "ref": ref, "old": old}
        return self.stream("POST", f"/api/apps/{app}/deploy", json_body=body)

    # The app's buildpacks (`buildpacks:*`): each call answers the list as it now is, in order.

    def buildpacks(self, app: str) -> list[str]:
        return [b["url"] for b in self.get(f"/api/apps/{app}/buildpacks")]

    def _buildpacks(self, method: str, path: str, body: dict[str, Any]) -> list[str]:
        return [b["url"] for b in self.request(method, path, json_body=body)]

    def add_buildpack(self, app: str, url: str, index: int | None = None) -> list[str]:
        """Insert `url` at 1-based `index`, or append it."""
        return self._buildpacks(
            "POST", f"/api/apps/{app}/buildpacks", {"url": url, "index": index}
        )

    def set_buildpack(self, app: str, url: str, index: int = 1) -> list[str]:
        """`url` in place of buildpack `index` (or appended, one past the last)."""
        return self._buildpacks("PUT", f"/api/apps/{app}/buildpacks/{index}", {"url": url})

    def remove_buildpack(
        self, app: str, url: str | None = None, index: int | None = None
    ) -> list[str]:
        return self._buildpacks(
            "DELETE", f"/api/apps/{app}/buildpacks", {"url": url, "index": index}
        )

    def replace_buildpacks(self, app: str, urls: list[str]) -> list[str]:
        """The whole list at once; [] clears it (builds detect their buildpack again)."""
        return self._buildpacks("PUT", f"/api/apps/{app}/buildpacks", {"buildpacks": urls})


class _UnixStreams:
    """HTTP/1.1 over the server's unix socket with asyncio streams, for `AsyncClient`.

    One connection per request (`Connection: close`), like the sync client. It exists so that
    the TUI's session client costs no httpx import (0.1-0.2 s of CPU while the first frames are
    drawn). Transport failures surface as `OSError`, `EOFError` or `ValueError` (a garbled
    answer); `AsyncClient` turns them into `ApiError`s.
    """

    def __init__(self, path: str, headers: dict[str, str]) -> None:
        self.path = path
        self.headers = headers

    async def open(
        self, method: str, target: str, body: bytes | None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int, dict[str, str]]:
        """Send the request; return the connection and the response's status and headers."""
        import asyncio

        reader, writer = await asyncio.open_unix_connection(self.path)
        try:
            lines = [f"{method} {target} HTTP/1.1", "Host: minipaas", "Connection: close"]
            lines += [f"{name}: {value}" for name, value in self.headers.items()]
            if body is not None:
                lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
            await writer.drain()
            version, _, rest = (await reader.readline()).partition(b" ")
            if not version.startswith(b"HTTP/1."):
                raise ValueError("the answer is not HTTP/1.x")
            status = int(rest[:3])  # a ValueError if it is not a number
            headers: dict[str, str] = {}
            while (line := await reader.readline()).strip():
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            return reader, writer, status, headers
        except BaseException:
            writer.close()
            raise

    @staticmethod
    async def body(reader: asyncio.StreamReader, headers: dict[str, str]) -> AsyncIterator[bytes]:
        """The response body as it arrives (chunked, sized, or up to the end of the stream)."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while size := int((await reader.readline()).split(b";", 1)[0], 16):
                yield await reader.readexactly(size)
                await reader.readexactly(2)  # the CRLF after each chunk
        elif "content-length" in headers:
            if length := int(headers["content-length"]):
                yield await reader.readexactly(length)
        else:
            while data := await reader.read(65536):
                yield data


class AsyncClient:
    """The same contract as `Client`, for asyncio front ends (the TUI): one per session.

    Errors are `ApiError`s; `status == 0` means the server could not be reached at all (the
    caller may retry), anything else is the server's answer. The local socket is spoken with
    asyncio streams (nothing to import); a remote server goes through httpx.
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
        headers = _headers("minipaas-tui", token)
        self.timeout = timeout
        self._unix: _UnixStreams | None = None
        self._http: Any = None
        if url:
            import httpx

            self.where = url
            self._http = httpx.AsyncClient(
                base_url=url.rstrip("/"), headers=headers, verify=verify, timeout=timeout
            )
        else:
            assert socket is not None
            self.where = str(socket)
            self._unix = _UnixStreams(self.where, headers)

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
        if self._http is not None:
            await self._http.aclose()

    def _unreachable(self, exc: BaseException) -> ApiError:
        return unreachable(self.where, exc)

    @staticmethod
    def _target(path: str, params: dict[str, Any] | None) -> str:
        return path + ("?" + urllib.parse.urlencode(params) if params else "")

    @staticmethod
    def _body(json_body: Any) -> bytes | None:
        return None if json_body is None else json.dumps(json_body).encode()

    async def _unix_request(
        self, unix: _UnixStreams, method: str, path: str, json_body: Any, params: Any
    ) -> tuple[int, bytes]:
        import asyncio

        try:
            async with asyncio.timeout(self.timeout):
                reader, writer, status, headers = await unix.open(
                    method, self._target(path, params), self._body(json_body)
                )
                try:
                    return status, b"".join([part async for part in unix.body(reader, headers)])
                finally:
                    writer.close()
        except (OSError, EOFError, ValueError) as exc:  # TimeoutError is an OSError
            raise self._unreachable(exc) from exc

    async def _remote_request(
        self, method: str, path: str, json_body: Any, params: Any
    ) -> tuple[int, bytes]:
        import httpx

        try:
            response = await self._http.request(method, path, json=json_body, params=params)
        except (httpx.TransportError, OSError) as exc:
            raise self._unreachable(exc) from exc
        except httpx.HTTPError as exc:
            raise request_failed(self.where, exc) from exc
        return response.status_code, response.content

    async def request(
        self, method: str, path: str, *, json_body: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        if self._unix is not None:
            status, body = await self._unix_request(self._unix, method, path, json_body, params)
        else:
            status, body = await self._remote_request(method, path, json_body, params)
        if status >= 400:
            raise Client._message(status, body)
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(
                f"The server at {self.where} sent a non-JSON answer to {path}.", status
            ) from exc

    async def stream(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        read_timeout: float | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """NDJSON objects as the server sends them; a line that is not JSON is skipped. Over
        MINIPAAS_URL, `read_timeout` seconds without a byte end it as unreachable."""
        lines = (
            self._unix_lines(self._unix, method, path, json_body, params)
            if self._unix is not None
            else self._remote_lines(method, path, json_body, params, read_timeout)
        )
        async for line in lines:
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(item, dict):
                yield item

    async def _unix_lines(
        self, unix: _UnixStreams, method: str, path: str, json_body: Any, params: Any
    ) -> AsyncIterator[bytes]:
        import asyncio

        try:
            # The time limit covers connecting and the answer's head, never the stream itself.
            async with asyncio.timeout(30.0):
                reader, writer, status, headers = await unix.open(
                    method, self._target(path, params), self._body(json_body)
                )
        except (OSError, EOFError, ValueError) as exc:
            raise self._unreachable(exc) from exc
        try:
            if status >= 400:
                body = b"".join([part async for part in unix.body(reader, headers)])
                raise Client._message(status, body)
            pending = b""
            async for part in unix.body(reader, headers):
                *complete, pending = (pending + part).split(b"\n")
                for line in complete:
                    yield line
            if pending:
                yield pending
        except (OSError, EOFError, ValueError) as exc:
            raise self._unreachable(exc) from exc
        finally:
            writer.close()

    async def _remote_lines(
        self, method: str, path: str, json_body: Any, params: Any, read_timeout: float | None
    ) -> AsyncIterator[str]:
        import httpx

        timeout = httpx.Timeout(30.0, read=read_timeout)
        try:
            async with self._http.stream(
                method, path, json=json_body, params=params, timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise Client._message(response.status_code, response.content)
                async for line in response.aiter_lines():
                    yield line
        except (httpx.TransportError, OSError) as exc:
            raise self._unreachable(exc) from exc

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params=params or None)
