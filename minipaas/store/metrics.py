"""Typed writes and reads of the metrics time series (tables of migration 0002).

Two tiers per table, told apart by `res` (seconds per point): raw samples at the sampling
interval, kept `FINE_KEEP` seconds, and minute roll-ups (`res = 60`), kept `COARSE_KEEP`.
`rollup` averages finished minutes of raw rows into minute rows (latency percentiles weighted
by request counts); `prune` drops what is older than each tier keeps.

It runs on its own aiosqlite connection to the same WAL file, opened after `Store.open()`
has migrated it: a write every few seconds must never slip between the statements of one of
`Store`'s transactions on the shared connection (they interleave across awaits), and with WAL
the two connections never block each other for longer than one short write. Rows name apps by
name; samples of unknown apps are dropped, and an app's rows go when the app is deleted.
It knows nothing of /proc, Caddy or the sampler; values come and go as plain tuples.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiosqlite

from minipaas.store.store import CACHE_SIZE, Store

MINUTE = 60
FINE_KEEP = 3600.0
COARSE_KEEP = 86400.0

# What goes in (one sampling round):
DynoIn = tuple[str, str, float | None, int]  # app, dyno, cpu %, rss bytes
RouterIn = tuple[
    str, int, float, float | None, float | None, float | None, float, float
]  # app, requests, rps, p50, p95, p99 (ms), 4xx/s, 5xx/s
HostIn = tuple[float | None, int, int, int, int]  # cpu %, mem used, mem total, disk used, total

# What comes out (time first, oldest first):
DynoOut = tuple[float, str, float | None, int]  # t, dyno, cpu, rss
RouterOut = tuple[float, float, float | None, float | None, float | None, float, float]
HostOut = tuple[float, float | None, int, int, int, int]

_ROLLUPS = (
    """
    INSERT INTO dyno_samples (app_id, dyno, res, t, cpu, rss)
    SELECT app_id, dyno, 60, CAST(t / 60 AS INTEGER) * 60 AS m, AVG(cpu),
           CAST(AVG(rss) AS INTEGER)
    FROM dyno_samples
    WHERE res < 60 AND t >= COALESCE((SELECT MAX(t) + 60 FROM dyno_samples WHERE res = 60), 0)
      AND t < ?
    GROUP BY app_id, dyno, m
    """,
    """
    INSERT INTO router_samples (app_id, res, t, requests, rps, p50, p95, p99, r4xx, r5xx)
    SELECT app_id, 60, CAST(t / 60 AS INTEGER) * 60 AS m, SUM(requests), AVG(rps),
           SUM(p50 * requests) / NULLIF(SUM(requests), 0),
           SUM(p95 * requests) / NULLIF(SUM(requests), 0),
           SUM(p99 * requests) / NULLIF(SUM(requests), 0),
           AVG(r4xx), AVG(r5xx)
    FROM router_samples
    WHERE res < 60 AND t >= COALESCE((SELECT MAX(t) + 60 FROM router_samples WHERE res = 60), 0)
      AND t < ?
    GROUP BY app_id, m
    """,
    """
    INSERT INTO host_samples (res, t, cpu, mem_used, mem_total, disk_used, disk_total)
    SELECT 60, CAST(t / 60 AS INTEGER) * 60 AS m, AVG(cpu), CAST(AVG(mem_used) AS INTEGER),
           MAX(mem_total), CAST(AVG(disk_used) AS INTEGER), MAX(disk_total)
    FROM host_samples
    WHERE res < 60 AND t >= COALESCE((SELECT MAX(t) + 60 FROM host_samples WHERE res = 60), 0)
      AND t < ?
    GROUP BY m
    """,
)

_TABLES = ("dyno_samples", "router_samples", "host_samples")


def _tier(resolution: int) -> tuple[int, int]:
    """The `res` range of a tier: minute roll-ups, or raw samples."""
    return (MINUTE, MINUTE) if resolution >= MINUTE else (0, MINUTE - 1)


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


class MetricsStore:
    """The metrics tables, over a connection of their own to the store's file."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._db: aiosqlite.Connection | None = None
        self._opening: asyncio.Future[aiosqlite.Connection] | None = None

    async def _conn(self) -> aiosqlite.Connection:
        if self._db is not None:
            return self._db
        # The schema is the store's: make sure it has been opened (and migrated) first.
        _ = self.store.db
        if self._opening is None or self._opening.done():  # first time, or the last one failed
            self._opening = asyncio.ensure_future(self._open())
        # Shielded: a caller cancelled half-way (the sampler stopping) must not leave behind a
        # connection nobody holds; its non-daemon thread would keep the process alive at exit.
        return await asyncio.shield(self._opening)

    async def _open(self) -> aiosqlite.Connection:
        db = await aiosqlite.connect(self.store.path, timeout=10)
        try:
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute(CACHE_SIZE)
        except BaseException:
            await db.close()
            raise
        # Only now: every caller waits on the same opening until the connection is set up.
        self._db = db
        return db

    async def close(self) -> None:
        # An unclosed aiosqlite connection keeps a non-daemon thread alive and hangs exit.
        if self._opening is not None:
            with contextlib.suppress(Exception):
                await self._opening  # a connection still being opened is closed too
            self._opening = None
        if self._db is not None:
            await self._db.close()
            self._db = None

    # -- writes ------------------------------------------------------------------------------

    async def record(
        self,
        t: float,
        res: int,
        dynos: Sequence[DynoIn],
        routers: Sequence[RouterIn],
        host: HostIn | None,
    ) -> None:
        """Store one sampling round (taken at `t`, covering `res` seconds) in one transaction."""
        if not 0 < res < MINUTE:
            raise ValueError(f"Raw samples cover 1 to 59 seconds, not {res}.")
        db = await self._conn()
        async with _immediate(db):
            await db.executemany(
                "INSERT INTO dyno_samples (app_id, dyno, res, t, cpu, rss) "
                "SELECT id, ?, ?, ?, ?, ? FROM apps WHERE name = ?",
                [(dyno, res, t, cpu, rss, app) for app, dyno, cpu, rss in dynos],
            )
            await db.executemany(
                "INSERT INTO router_samples "
                "(app_id, res, t, requests, rps, p50, p95, p99, r4xx, r5xx) "
                "SELECT id, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM apps WHERE name = ?",
                [(res, t, *row[1:], row[0]) for row in routers],
            )
            if host is not None:
                await db.execute(
                    "INSERT INTO host_samples "
                    "(res, t, cpu, mem_used, mem_total, disk_used, disk_total) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (res, t, *host),
                )

    async def rollup(self, until: float) -> int:
        """Average the raw rows of every finished minute before `until` not rolled up yet into
        minute rows; returns how many minute rows were written. Safe to call any time."""
        db = await self._conn()
        end = int(until // MINUTE) * MINUTE
        written = 0
        async with _immediate(db):
            for sql in _ROLLUPS:
                cursor = await db.execute(sql, (end,))
                written += max(0, cursor.rowcount)
                await cursor.close()
        return written

    async def prune(
        self, now: float, fine_keep: float = FINE_KEEP, coarse_keep: float = COARSE_KEEP
    ) -> int:
        """Drop raw rows older than `fine_keep` and minute rows older than `coarse_keep`."""
        db = await self._conn()
        removed = 0
        async with _immediate(db):
            for table in _TABLES:
                cursor = await db.execute(
                    f"DELETE FROM {table} WHERE (res < 60 AND t < ?) OR (res = 60 AND t < ?)",  # noqa: S608 - table names are constants
                    (now - fine_keep, now - coarse_keep),
                )
                removed += max(0, cursor.rowcount)
                await cursor.close()
        return removed

    # -- reads -------------------------------------------------------------------------------

    async def dyno_series(self, app: str, since: float, resolution: int) -> list[DynoOut]:
        """Points of every dyno of `app` from `since` on, at raw (`resolution` < 60) or minute
        resolution, oldest first."""
        db = await self._conn()
        rows = await db.execute_fetchall(
            "SELECT t, dyno, cpu, rss FROM dyno_samples "
            "WHERE app_id = (SELECT id FROM apps WHERE name = ?) "
            "AND res BETWEEN ? AND ? AND t >= ? ORDER BY t, dyno",
            (app, *_tier(resolution), since),
        )
        return [(float(r[0]), str(r[1]), _opt(r[2]), int(r[3])) for r in rows]

    async def router_series(self, app: str, since: float, resolution: int) -> list[RouterOut]:
        db = await self._conn()
        rows = await db.execute_fetchall(
            "SELECT t, rps, p50, p95, p99, r4xx, r5xx FROM router_samples "
            "WHERE app_id = (SELECT id FROM apps WHERE name = ?) "
            "AND res BETWEEN ? AND ? AND t >= ? ORDER BY t",
            (app, *_tier(resolution), since),
        )
        return [
            (float(r[0]), float(r[1]), _opt(r[2]), _opt(r[3]), _opt(r[4]), float(r[5]), float(r[6]))
            for r in rows
        ]

    async def host_series(self, since: float, resolution: int) -> list[HostOut]:
        db = await self._conn()
        rows = await db.execute_fetchall(
            "SELECT t, cpu, mem_used, mem_total, disk_used, disk_total FROM host_samples "
            "WHERE res BETWEEN ? AND ? AND t >= ? ORDER BY t",
            (*_tier(resolution), since),
        )
        return [(float(r[0]), _opt(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5])) for r in rows]

    async def counts(self) -> dict[str, int]:
        """Rows per table and tier ("dyno_samples/raw", …): for tests and diagnostics."""
        db = await self._conn()
        out: dict[str, int] = {}
        for table in _TABLES:
            rows = await db.execute_fetchall(
                f"SELECT res = 60, COUNT(*) FROM {table} GROUP BY res = 60"  # noqa: S608
            )
            for coarse, count in rows:
                out[f"{table}/{'minute' if coarse else 'raw'}"] = int(count)
        return out


@contextlib.asynccontextmanager
async def _immediate(db: aiosqlite.Connection) -> AsyncIterator[None]:
    """A write transaction on `db`, committed at the end, rolled back on any error.

    BEGIN is inside: a caller cancelled while BEGIN waits for the lock (the sampler stopping
    while a deploy writes) stops waiting, but aiosqlite's thread still runs the BEGIN later;
    the ROLLBACK queued behind it ends that transaction, which would otherwise hold the
    database's write lock, with nobody to release it, until the connection closed: every
    write of the store (deploys, scaling, shutdown) waited its 60 s patience and failed."""
    try:
        await db.execute("BEGIN IMMEDIATE")
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):  # also when BEGIN itself failed
            await db.rollback()
        raise
    await db.commit()
