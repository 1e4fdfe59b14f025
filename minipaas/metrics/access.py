"""The router sampler: tails Caddy's JSON access log and turns each interval's lines into
per-app throughput, latency percentiles and error rates.

`AccessLogTail` owns only a file offset: it starts at the end of the file (history before
minipaas started is not "now"), survives Caddy's log rotation (the file is renamed and a new
one created: the old one is read to its end first) and truncation. `HostStats` and
`app_stats` are pure. Lines look like (Caddy 2, `encoder: json`):

    {"ts":…, "logger":"http.log.access.router", "request":{"host":"web.localhost", …},
     "duration":0.0021, "size":2, "status":200, …}

with `duration` in seconds. Blocking reads: call `read_lines` from a worker thread.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

# One round reads at most this much; a larger backlog is read over the next rounds.
MAX_READ = 32 * 1024 * 1024


class AccessLogTail:
    """Incremental reader of one log file path (complete lines only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: BinaryIO | None = None
        self._inode: tuple[int, int] | None = None
        self._partial = b""
        self._started = False  # the first open seeks to the end; later ones read from 0

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            self._inode = None
        self._partial = b""

    def read_lines(self) -> list[bytes]:
        lines: list[bytes] = []
        budget = MAX_READ
        if self._fh is None:
            self._open()
        if self._fh is not None:
            budget -= self._drain(lines, budget)
            if budget > 0 and self._rotated():
                # Caddy renamed the file and started a new one: the old one is complete now.
                self.close()
                self._open()
                if self._fh is not None:
                    self._drain(lines, budget)
        return lines

    def _open(self) -> None:
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - kept open across rounds on purpose
        except FileNotFoundError:
            self._started = True  # a file that appears later is all new
            return
        st = os.fstat(fh.fileno())
        if not self._started:
            fh.seek(0, os.SEEK_END)
            self._started = True
        self._fh, self._inode, self._partial = fh, (st.st_dev, st.st_ino), b""

    def _rotated(self) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (st.st_dev, st.st_ino) != self._inode

    def _drain(self, lines: list[bytes], budget: int) -> int:
        assert self._fh is not None
        if os.fstat(self._fh.fileno()).st_size < self._fh.tell():
            self._fh.seek(0)  # truncated in place (copytruncate, or `: > access.log`)
            self._partial = b""
        data = self._fh.read(budget)
        if not data:
            return 0
        chunk = self._partial + data
        *complete, self._partial = chunk.split(b"\n")
        lines.extend(line for line in complete if line)
        return len(data)


@dataclass
class HostStats:
    """What one interval's lines say about one Host header."""

    durations: list[float] = field(default_factory=list)  # milliseconds
    r4xx: int = 0
    r5xx: int = 0


def parse_lines(lines: Iterable[bytes]) -> dict[str, HostStats]:
    """Group access-log lines by host (lower case, without a port); bad lines are skipped."""
    by_host: dict[str, HostStats] = {}
    for raw in lines:
        try:
            entry = json.loads(raw)
            host = str(entry["request"]["host"]).lower()
            status = int(entry["status"])
            duration = float(entry["duration"]) * 1000.0
        except (ValueError, KeyError, TypeError):
            continue
        host = strip_port(host)
        stats = by_host.get(host)
        if stats is None:
            stats = by_host[host] = HostStats()
        stats.durations.append(duration)
        if 400 <= status < 500:
            stats.r4xx += 1
        elif status >= 500:
            stats.r5xx += 1
    return by_host


def strip_port(host: str) -> str:
    if host.startswith("["):  # [::1]:8443
        return host[: host.index("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100)
    return ordered[int(rank) - 1]


@dataclass(frozen=True)
class RouterSample:
    app: str
    requests: int
    rps: float
    p50: float | None  # ms
    p95: float | None
    p99: float | None
    r4xx: float  # 4xx answers per second
    r5xx: float


def app_stats(
    by_host: Mapping[str, HostStats],
    host_to_app: Callable[[str], str | None],
    seconds: float,
    apps: Iterable[str] = (),
) -> dict[str, RouterSample]:
    """Per-app numbers for an interval of `seconds`; `apps` get a zero sample even without
    traffic (a quiet app is a point on the chart, not a gap). Unknown hosts are dropped."""
    merged: dict[str, HostStats] = {app: HostStats() for app in apps}
    for host, stats in by_host.items():
        app = host_to_app(host)
        if app is None:
            continue
        into = merged.setdefault(app, HostStats())
        into.durations.extend(stats.durations)
        into.r4xx += stats.r4xx
        into.r5xx += stats.r5xx
    seconds = max(seconds, 1e-6)
    out = {}
    for app, stats in merged.items():
        ordered = sorted(stats.durations)
        out[app] = RouterSample(
            app=app,
            requests=len(ordered),
            rps=len(ordered) / seconds,
            p50=percentile(ordered, 50),
            p95=percentile(ordered, 95),
            p99=percentile(ordered, 99),
            r4xx=stats.r4xx / seconds,
            r5xx=stats.r5xx / seconds,
        )
    return out


class HostMap:
    """`host_to_app` for the server: `NAME.<domain>` maps to NAME by itself, custom domains
    (`domains:add`) through `update`, which takes (app, hosts) pairs, e.g. from the
    `AppRoute`s of the last router state. Hosts of apps not in the last update (deleted ones)
    map to nothing."""

    def __init__(self, domain: str) -> None:
        self._suffix = "." + domain.lower()
        self._apps: set[str] = set()
        self._hosts: dict[str, str] = {}
        self._known = False

    def update(self, routes: Iterable[tuple[str, Iterable[str]]]) -> None:
        hosts: dict[str, str] = {}
        for app, names in routes:
            for host in names:
                hosts[host.lower()] = app
        self._hosts = hosts
        self._apps = set(hosts.values())
        self._known = True

    def __call__(self, host: str) -> str | None:
        host = host.lower()
        if host in self._hosts:
            return self._hosts[host]
        if host.endswith(self._suffix):
            name = host[: -len(self._suffix)]
            if (
                "." not in name
                and name not in ("minipaas", "www")
                and (not self._known or name in self._apps)
            ):
                return name
        return None
