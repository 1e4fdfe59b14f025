"""A small load generator for zero-downtime tests: keep-alive GETs through Caddy on loopback.

Threads loop on `http.client` connections (plain HTTP to the router's port with a Host header,
so every request goes through Caddy exactly as an app's visitors' do) until stopped or a
request/time budget runs out. Every non-2xx answer and every connection error is a failure.

One exception, the one every HTTP client makes (browsers, curl, Go, urllib3): when a request
sent on a *reused* keep-alive connection gets no response byte because the server had just
closed that idle connection, it is retried once on a fresh connection (RFC 9112 §9.3.1). Caddy
closes idle client connections on every config change, so this happens at each switch. Those
retries are counted in `stale_retries`; a failure on a fresh connection is a failure.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    ok: int = 0
    stale_retries: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    bodies: Counter[str] = field(default_factory=Counter)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


class Load:
    """`with Load(port, host) as load: …` then `load.result`."""

    def __init__(self, port: int, host: str, *, path: str = "/", workers: int = 4,
                 max_seconds: float = 300, max_requests: int = 500_000) -> None:
        self.port, self.host, self.path = port, host, path
        self.workers, self.max_seconds, self.max_requests = workers, max_seconds, max_requests
        self.result = LoadResult()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Load:
        deadline = time.monotonic() + self.max_seconds
        for _ in range(self.workers):
            thread = threading.Thread(target=self._work, args=(deadline,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> LoadResult:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        return self.result

    def total(self) -> int:
        with self._lock:
            return self.result.ok + self.result.failed

    def _record(self, ok: bool, what: str) -> None:
        with self._lock:
            if ok:
                self.result.ok += 1
                self.result.bodies[what] += 1
            else:
                self.result.failures[what] += 1

    def _work(self, deadline: float) -> None:
        conn: http.client.HTTPConnection | None = None
        reused = False
        while not self._stop.is_set() and time.monotonic() < deadline:
            if self.total() >= self.max_requests:
                break
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                    reused = False
                try:
                    conn.request("GET", self.path, headers={"Host": self.host})
                    response = conn.getresponse()
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    if not reused:
                        raise
                    # The idle connection was closed under us: retry once, fresh.
                    with self._lock:
                        self.result.stale_retries += 1
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                    reused = False
                    conn.request("GET", self.path, headers={"Host": self.host})
                    response = conn.getresponse()
                reused = True
                body = response.read().decode(errors="replace")
                if 200 <= response.status < 300:
                    self._record(True, body.strip()[:80])
                else:
                    self._record(False, f"HTTP {response.status}: {body.strip()[:80]}")
                if response.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                self._record(False, f"{exc.__class__.__name__}: {exc}")
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()
