"""The metrics service: one loop that samples dynos, the router and the host every interval,
keeps the latest numbers in memory and writes the time series through a `MetricsSink`.

All file reads of a round happen in one worker thread, so the event loop never waits on /proc
or the access log; the loop only asks the supervisor for its dynos, maps hosts to apps and
awaits the database write. Every minute it rolls raw points up into minute points and prunes
both tiers. It imports neither the store nor the supervisor: the server passes in a sink
(`minipaas.store.metrics.MetricsStore` fits) and callables.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from minipaas.metrics.access import AccessLogTail, HostStats, RouterSample, app_stats, parse_lines
from minipaas.metrics.dynos import DynoRef, DynoSample, DynoSampler
from minipaas.metrics.host import HostSample, HostSampler
from minipaas.metrics.prometheus import render_prometheus

log = logging.getLogger("minipaas.metrics")

MINUTE = 60
FINE_WINDOW = 3600  # raw points answer queries up to an hour back; minute points beyond
MAX_SINCE = 86400

DynoIn = tuple[str, str, float | None, int]
RouterIn = tuple[str, int, float, float | None, float | None, float | None, float, float]
HostIn = tuple[float | None, int, int, int, int]
DynoOut = tuple[float, str, float | None, int]
RouterOut = tuple[float, float, float | None, float | None, float | None, float, float]
HostOut = tuple[float, float | None, int, int, int, int]


class MetricsSink(Protocol):
    """Where the series live (`MetricsStore` in production)."""

    async def record(
        self,
        t: float,
        res: int,
        dynos: Sequence[DynoIn],
        routers: Sequence[RouterIn],
        host: HostIn | None,
    ) -> None: ...

    async def rollup(self, until: float) -> int: ...

    async def prune(self, now: float, fine_keep: float = ..., coarse_keep: float = ...) -> int: ...

    async def dyno_series(self, app: str, since: float, resolution: int) -> list[DynoOut]: ...

    async def router_series(self, app: str, since: float, resolution: int) -> list[RouterOut]: ...

    async def host_series(self, since: float, resolution: int) -> list[HostOut]: ...


@dataclass
class Round:
    """What one sampling round saw."""

    t: float
    seconds: float  # wall time the router numbers cover
    dynos: list[DynoSample] = field(default_factory=list)
    routers: dict[str, RouterSample] = field(default_factory=dict)
    host: HostSample | None = None
    cost: float = 0.0  # CPU seconds this process spent on the round (all threads)


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def router_json(s: RouterSample | None) -> dict[str, float | None]:
    if s is None:
        return {"rps": 0.0, "p50": None, "p95": None, "p99": None, "r4xx": 0.0, "r5xx": 0.0}
    return {
        "rps": _r(s.rps, 3),
        "p50": _r(s.p50),
        "p95": _r(s.p95),
        "p99": _r(s.p99),
        "r4xx": _r(s.r4xx, 3),
        "r5xx": _r(s.r5xx, 3),
    }


def host_json(h: HostSample | None) -> dict[str, Any]:
    if h is None:
        return {}
    return {
        "cpu": _r(h.cpu),
        "cpus": h.cpus,
        "mem_used": h.mem_used,
        "mem_total": h.mem_total,
        "disk_used": h.disk_used,
        "disk_total": h.disk_total,
    }


def resolution_for(since: float, interval: float) -> int:
    """Raw points for up to an hour back, minute points beyond."""
    return min(MINUTE - 1, max(1, round(interval))) if since <= FINE_WINDOW else MINUTE


class Metrics:
    """Samples every `interval` seconds; `latest`, `app_series`, `host_series` and
    `prometheus` answer the API."""

    def __init__(
        self,
        store: MetricsSink,
        interval: float = 5.0,
        *,
        dynos: Callable[[], list[DynoRef]],
        access_log: Path,
        host_to_app: Callable[[str], str | None],
        data_dir: Path,
        clock: Callable[[], float] = time.time,
        on_access_lines: Callable[[list[bytes]], None] | None = None,
        on_dynos: Callable[[list[DynoSample]], None] | None = None,
    ) -> None:
        self.store = store
        #: Gets each round's dyno samples (the server enforces memory quotas with them).
        self._on_dynos = on_dynos
        #: Gets each round's raw access-log lines (the router log source is built from them).
        self._on_access_lines = on_access_lines
        self.interval = interval
        self._dynos = dynos
        self._host_to_app = host_to_app
        self._clock = clock
        self._dyno_sampler = DynoSampler()
        self._host_sampler = HostSampler(data_dir)
        self._tail = AccessLogTail(access_log)
        self._last_read = time.monotonic()
        self._rolled_up_to = 0.0
        self.last: Round | None = None

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Sample until cancelled. A failing round is logged, never fatal."""
        try:
            next_at = time.monotonic()
            while True:
                try:
                    await self.sample_once()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("metrics sampling round failed")
                next_at += self.interval
                now = time.monotonic()
                if next_at < now:  # fell behind (a suspended machine): don't burst
                    next_at = now + self.interval
                await asyncio.sleep(next_at - now)
        finally:
            self._tail.close()

    async def sample_once(self) -> Round:
        """One round: read everything in a thread, remember it, store it; roll up and prune
        when a minute has passed."""
        refs = list(self._dynos())
        by_host, sampled, lines = await asyncio.to_thread(self._collect, refs)
        if self._on_access_lines is not None and lines:
            self._on_access_lines(lines)
        if self._on_dynos is not None:
            try:
                self._on_dynos(sampled.dynos)
            except Exception:  # a listener's bug must not stop the metrics
                log.exception("the dyno samples listener failed")
        now = self._clock()
        apps = {ref[0] for ref in refs}
        sampled.t = now
        sampled.routers = app_stats(by_host, self._host_to_app, sampled.seconds, apps)
        self.last = sampled
        await self.store.record(
            now,
            min(MINUTE - 1, max(1, round(self.interval))),
            [(d.app, d.dyno, _r(d.cpu), d.rss) for d in sampled.dynos],
            [
                (s.app, s.requests, s.rps, s.p50, s.p95, s.p99, s.r4xx, s.r5xx)
                for s in sampled.routers.values()
            ],
            None
            if sampled.host is None
            else (
                sampled.host.cpu,
                sampled.host.mem_used,
                sampled.host.mem_total,
                sampled.host.disk_used,
                sampled.host.disk_total,
            ),
        )
        minute = now // MINUTE * MINUTE
        if minute > self._rolled_up_to:
            await self.store.rollup(minute)
            await self.store.prune(now)
            self._rolled_up_to = minute
        return sampled

    def _collect(
        self, refs: list[DynoRef]
    ) -> tuple[dict[str, HostStats], Round, list[bytes]]:
        """The blocking part of a round (runs in a worker thread)."""
        cpu0 = time.thread_time()
        dynos = self._dyno_sampler.sample(refs)
        lines = self._tail.read_lines()
        now = time.monotonic()
        seconds, self._last_read = now - self._last_read, now
        by_host = parse_lines(lines)
        host = self._host_sampler.sample()
        cost = time.thread_time() - cpu0
        rnd = Round(t=0.0, seconds=seconds, dynos=dynos, host=host, cost=cost)
        return by_host, rnd, lines

    # -- answers -----------------------------------------------------------------------------

    def latest(self, app: str) -> dict[str, Any]:
        """The app's numbers from the last round: router figures, CPU and RSS summed over its
        dynos, and each dyno's own."""
        last = self.last
        if last is None:
            return {**router_json(None), "cpu": None, "rss": None, "dynos": {}}
        mine = [d for d in last.dynos if d.app == app]
        cpus = [d.cpu for d in mine if d.cpu is not None]
        return {
            **router_json(last.routers.get(app)),
            "cpu": _r(sum(cpus)) if cpus else None,
            "rss": sum(d.rss for d in mine) if mine else None,
            "dynos": {d.dyno: {"cpu": _r(d.cpu), "rss": d.rss} for d in mine},
        }

    async def app_series(self, app: str, since: float) -> dict[str, Any]:
        """The JSON of `GET /api/apps/{app}/metrics`: series from `since` seconds ago on."""
        res = resolution_for(since, self.interval)
        start = self._clock() - since
        router = await self.store.router_series(app, start, res)
        dyno_rows = await self.store.dyno_series(app, start, res)
        dynos: dict[str, list[dict[str, Any]]] = {}
        for t, dyno, cpu, rss in dyno_rows:
            dynos.setdefault(dyno, []).append({"t": t, "cpu": _r(cpu), "rss": rss})
        latest = self.latest(app)
        return {
            "app": app,
            "resolution": res,
            "interval": self.interval,
            "router": [
                {
                    "t": t,
                    "rps": _r(rps, 3),
                    "p50": _r(p50),
                    "p95": _r(p95),
                    "p99": _r(p99),
                    "r4xx": _r(r4, 3),
                    "r5xx": _r(r5, 3),
                }
                for t, rps, p50, p95, p99, r4, r5 in router
            ],
            "dynos": dict(sorted(dynos.items())),
            "current": {k: v for k, v in latest.items() if k != "dynos"},
            "current_dynos": latest["dynos"],
        }

    async def host_series(self, since: float = FINE_WINDOW) -> dict[str, Any]:
        """The JSON of `GET /api/metrics/host`: now, and the series from `since` seconds ago."""
        res = resolution_for(since, self.interval)
        rows = await self.store.host_series(self._clock() - since, res)
        last = self.last
        return {
            "resolution": res,
            "current": host_json(last.host if last else None),
            "sample_cpu_seconds": _r(last.cost, 6) if last else None,
            "series": [
                {
                    "t": t,
                    "cpu": _r(cpu),
                    "mem_used": mu,
                    "mem_total": mt,
                    "disk_used": du,
                    "disk_total": dt,
                }
                for t, cpu, mu, mt, du, dt in rows
            ],
        }

    def prometheus(self) -> str:
        """The last round in Prometheus' text format."""
        last = self.last
        if last is None:
            return render_prometheus([], {}, None)
        return render_prometheus(last.dynos, last.routers, last.host, last.cost)
