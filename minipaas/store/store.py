"""Typed queries over the SQLite file (aiosqlite, WAL) and the numbered migrations.

Owns `minipaas.db`: opening it, applying `migrations/NNNN_*.sql` in order inside transactions,
and every read and write. It never touches processes, files outside the database, or Caddy.
Values are always bound as parameters, never formatted into SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

from minipaas import __version__
from minipaas.errors import Conflict, DiskFull, NotFound, UserError
from minipaas.models import (
    Addon,
    App,
    Backup,
    Build,
    Domain,
    Drain,
    Release,
    ReleaseOutput,
    SSHKey,
)

_log = logging.getLogger(__name__)


def _migrations() -> list[tuple[int, str]]:
    """The packaged migrations as (number, sql), in order."""
    found = []
    for entry in resources.files("minipaas.store").joinpath("migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), entry.read_text(encoding="utf-8")))
    return sorted(found)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


#: How long a write waits for the database before the error reaches the caller.
BEGIN_PATIENCE = 60.0

#: SQLite's page cache per connection: 512 KiB instead of 2 MiB. The database is small and
#: the OS caches the file anyway; every cached page is resident memory of the server.
CACHE_SIZE = "PRAGMA cache_size=-512"


class Store:
    """One aiosqlite connection; every method is one short transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        self._db = await aiosqlite.connect(self.path, timeout=10)
        self._db.row_factory = aiosqlite.Row
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.execute("PRAGMA foreign_keys=ON")
        await self._db.execute(CACHE_SIZE)
        self.path.chmod(0o600)
        try:
            await self._migrate()
        except BaseException:
            await self.close()  # its thread would keep the process from exiting
            raise

    async def close(self) -> None:
        # An unclosed aiosqlite connection keeps a non-daemon thread alive and hangs exit.
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("the store is not open")
        return self._db

    async def _migrate(self) -> None:
        await self.db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, applied_at REAL)"
        )
        rows = await self.db.execute_fetchall("SELECT version FROM schema_migrations")
        done = {row[0] for row in rows}
        known = _migrations()
        newest = max((version for version, _ in known), default=0)
        if done and max(done) > newest:
            # A downgrade: this code would run on tables it does not know (and may misread).
            raise UserError(
                f"The database {self.path} has schema version {max(done)} and this minipaas "
                f"{__version__} knows only up to {newest}: a newer minipaas wrote it; install "
                "that version again (going back to an older minipaas is not supported)."
            )
        for version, sql in known:
            if version in done:
                continue
            # executescript commits first; the migration and its record commit together.
            await self.db.executescript(
                f"BEGIN;\n{sql}\n"
                f"INSERT INTO schema_migrations VALUES ({int(version)}, {time.time()});\nCOMMIT;"
            )

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        # One connection serves every coroutine: a transaction spans several awaits, so two
        # must never interleave on it.
        async with self._lock:
            await self._begin_immediate()
            try:
                yield self.db
                await self.db.commit()
            except BaseException as exc:
                # Also when COMMIT itself failed (a full disk): the connection must never stay
                # inside a transaction, or the next write would join this half-done one.
                with contextlib.suppress(sqlite3.Error):
                    await self.db.rollback()
                if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                    raise DiskFull(self.path) from exc
                raise

    async def _begin_immediate(self) -> None:
        """BEGIN IMMEDIATE, waiting out the other connection (the metrics store) for as long as
        `BEGIN_PATIENCE`: SQLite's own busy timeout does not cover every case (a stale read
        snapshot, SQLITE_BUSY_SNAPSHOT, fails at once), and a deploy must not fail on it."""
        deadline = time.monotonic() + BEGIN_PATIENCE
        delay = 0.01
        while True:
            try:
                await self.db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                _log.warning("the database is busy (%s); trying again", exc)
                with contextlib.suppress(sqlite3.Error):
                    await self.db.rollback()  # drop whatever snapshot the connection held
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
            except BaseException:
                # Cancelled while BEGIN waited for the lock: aiosqlite's thread still runs it
                # once the lock is free; the ROLLBACK queued behind it ends that transaction,
                # which would otherwise stay open on this connection: every later write would
                # fail ("cannot start a transaction within a transaction").
                with contextlib.suppress(sqlite3.Error):
                    await self.db.rollback()
                raise

    @staticmethod
    async def _scalar(db: aiosqlite.Connection, sql: str, params: Iterable[Any]) -> Any:
        """The first column of the first row of `sql` read inside a transaction, or None."""
        async with db.execute(sql, tuple(params)) as cur:
            row = await cur.fetchone()
        return None if row is None else row[0]

    async def _one(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        async with self.db.execute(sql, tuple(params)) as cur:
            return await cur.fetchone()

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        return list(await self.db.execute_fetchall(sql, tuple(params)))

    async def _of_apps(
        self, columns: str, table: str, order: str, app: App | None
    ) -> list[aiosqlite.Row]:
        """`columns` of `table` (as `d`, joined to its app as `a`) of one app or of all."""
        sql = f"SELECT {columns} FROM {table} d JOIN apps a ON a.id = d.app_id"  # noqa: S608
        params: tuple[Any, ...] = ()
        if app is not None:
            sql += " WHERE d.app_id = ?"
            params = (app.id,)
        return await self._all(f"{sql} ORDER BY {order}", params)

    # -- apps ------------------------------------------------------------------------------

    @staticmethod
    def _app(row: aiosqlite.Row) -> App:
        return App(
            id=row["id"],
            name=row["name"],
            created_at=row["created_at"],
            current_release=row["current_release"],
            maintenance=bool(row["maintenance"]),
        )

    async def create_app(self, name: str) -> App:
        async with self._tx() as db:
            # Checked in the transaction: two creates of one name at once both passed a check
            # made before it, and the second failed on the UNIQUE constraint (a 500).
            if await self._scalar(db, "SELECT 1 FROM apps WHERE name = ?", (name,)):
                raise Conflict(f"The app {name!r} already exists.")
            await db.execute(
                "INSERT INTO apps (name, created_at) VALUES (?, ?)", (name, time.time())
            )
        return await self.app(name)

    async def app(self, name: str) -> App:
        row = await self._one("SELECT * FROM apps WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"No app named {name!r}; create it with `minipaas apps:create {name}`.")
        return self._app(row)

    async def apps(self) -> list[App]:
        return [self._app(r) for r in await self._all("SELECT * FROM apps ORDER BY name")]

    async def delete_app(self, name: str) -> None:
        async with self._tx() as db:
            await db.execute("DELETE FROM apps WHERE name = ?", (name,))

    async def rename_app(self, app: App, new: str, slugs: tuple[str, str]) -> App:
        """`apps:rename`'s commit point, one transaction: the app's row takes the name `new`
        and its builds' and releases' slug paths (and static roots) move from the prefix
        `slugs[0]` to `slugs[1]` (the app's slug dir under each name). Everything else refers
        to the app by its id. `Conflict` if `new` is taken, `NotFound` if the app is gone."""
        old_prefix, new_prefix = slugs
        async with self._tx() as db:
            if await self._scalar(db, "SELECT 1 FROM apps WHERE name = ?", (new,)):
                raise Conflict(f"The app {new!r} already exists; choose another name.")
            cur = await db.execute("UPDATE apps SET name = ? WHERE id = ?", (new, app.id))
            if cur.rowcount != 1:
                raise NotFound(f"No app named {app.name!r}; nothing was renamed.")
            moved = "? || substr({0}, ?)"
            where = "app_id = ? AND substr({0}, 1, ?) = ?"
            start, size = len(old_prefix) + 1, len(old_prefix)
            for table, column in (
                ("builds", "slug"), ("releases", "slug"), ("releases", "static_root"),
            ):
                await db.execute(
                    f"UPDATE {table} SET {column} = {moved.format(column)} "  # noqa: S608
                    f"WHERE {where.format(column)}",
                    (new_prefix, start, app.id, size, old_prefix),
                )
        return await self.app(new)

    async def set_current_release(self, app: App, version: int) -> None:
        async with self._tx() as db:
            await db.execute("UPDATE apps SET current_release = ? WHERE id = ?", (version, app.id))

    async def set_maintenance(self, app: App, on: bool) -> None:
        async with self._tx() as db:
            await db.execute("UPDATE apps SET maintenance = ? WHERE id = ?", (int(on), app.id))

    # -- config ----------------------------------------------------------------------------

    async def config(self, app: App) -> dict[str, str]:
        rows = await self._all(
            "SELECT key, value FROM config_vars WHERE app_id = ? ORDER BY key", (app.id,)
        )
        return {r["key"]: r["value"] for r in rows}

    async def update_config(self, app: App, changes: dict[str, str | None]) -> dict[str, str]:
        """Set (value) or unset (None) keys in one transaction; returns the new config."""
        async with self._tx() as db:
            for key, value in changes.items():
                if value is None:
                    await db.execute(
                        "DELETE FROM config_vars WHERE app_id = ? AND key = ?", (app.id, key)
                    )
                else:
                    await db.execute(
                        "INSERT INTO config_vars (app_id, key, value) VALUES (?, ?, ?) "
                        "ON CONFLICT (app_id, key) DO UPDATE SET value = excluded.value",
                        (app.id, key, value),
                    )
        return await self.config(app)

    # -- builds ----------------------------------------------------------------------------

    @staticmethod
    def _build(row: aiosqlite.Row, *, with_log: bool = False) -> Build:
        return Build(
            id=row["id"],
            app_id=row["app_id"],
            sha=row["sha"],
            status=row["status"],
            buildpacks=json.loads(row["buildpacks"]),
            slug=row["slug"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            log=row["log"] if with_log else "",
        )

    async def create_build(self, app: App, sha: str) -> Build:
        async with self._tx() as db:
            cur = await db.execute(
                "INSERT INTO builds (app_id, sha, status, started_at) VALUES (?, ?, 'pending', ?)",
                (app.id, sha, time.time()),
            )
            build_id = cur.lastrowid
        row = await self._one("SELECT * FROM builds WHERE id = ?", (build_id,))
        assert row is not None
        return self._build(row)

    async def finish_build(
        self, build: Build, *, status: str, log: str, buildpacks: list[str], slug: str | None
    ) -> None:
        async with self._tx() as db:
            await db.execute(
                "UPDATE builds SET status = ?, log = ?, buildpacks = ?, slug = ?, finished_at = ? "
                "WHERE id = ?",
                (status, log, json.dumps(buildpacks), slug, time.time(), build.id),
            )

    async def end_interrupted(self, reason: str) -> list[tuple[str, str, int]]:
        """At start-up: end what a killed server left unfinished, in one transaction.

        Builds still 'pending' fail with `reason` as their log line. A 'pending' release that
        is its app's current one had been switched to (the routes pointed at it): it succeeded;
        any other 'pending' release failed. Returns (app, "build" or "release", build id or
        version) for each one failed."""
        ended: list[tuple[str, str, int]] = []
        async with self._tx() as db:
            async with db.execute(
                "SELECT apps.name, builds.id FROM builds JOIN apps ON apps.id = builds.app_id "
                "WHERE builds.status = 'pending' ORDER BY builds.id"
            ) as cur:
                ended += [(r[0], "build", r[1]) for r in await cur.fetchall()]
            await db.execute(
                "UPDATE builds SET status = 'failed', finished_at = ?, "
                "log = log || CASE WHEN log = '' THEN '' ELSE char(10) END || ? "
                "WHERE status = 'pending'",
                (time.time(), reason),
            )
            await db.execute(
                "UPDATE releases SET status = 'succeeded' WHERE status = 'pending' AND EXISTS "
                "(SELECT 1 FROM apps WHERE apps.id = releases.app_id "
                "AND apps.current_release = releases.version)"
            )
            async with db.execute(
                "SELECT apps.name, releases.version FROM releases "
                "JOIN apps ON apps.id = releases.app_id "
                "WHERE releases.status = 'pending' ORDER BY releases.id"
            ) as cur:
                ended += [(r[0], "release", r[1]) for r in await cur.fetchall()]
            await db.execute("UPDATE releases SET status = 'failed' WHERE status = 'pending'")
        return ended

    async def builds(self, app: App, limit: int = 20) -> list[Build]:
        rows = await self._all(
            "SELECT * FROM builds WHERE app_id = ? ORDER BY id DESC LIMIT ?", (app.id, limit)
        )
        return [self._build(r) for r in rows]

    async def build(self, app: App, build_id: int) -> Build:
        row = await self._one(
            "SELECT * FROM builds WHERE app_id = ? AND id = ?", (app.id, build_id)
        )
        if row is None:
            raise NotFound(f"No build {build_id} for app {app.name!r}.")
        return self._build(row, with_log=True)

    # -- releases --------------------------------------------------------------------------

    @staticmethod
    def _release(row: aiosqlite.Row) -> Release:
        return Release(
            id=row["id"],
            app_id=row["app_id"],
            version=row["version"],
            build_id=row["build_id"],
            sha=row["sha"],
            slug=row["slug"],
            static_root=row["static_root"],
            config=json.loads(row["config"]),
            process_types=json.loads(row["process_types"]),
            description=row["description"],
            created_by=row["created_by"],
            created_at=row["created_at"],
            status=row["status"],
            app_json=json.loads(row["app_json"]),
        )

    async def create_release(
        self,
        app: App,
        *,
        build_id: int | None,
        sha: str | None,
        slug: str | None,
        static_root: str | None,
        config: dict[str, str],
        process_types: dict[str, str],
        description: str,
        created_by: str,
        app_json: dict[str, Any] | None = None,
    ) -> Release:
        """A new release vN (status pending) numbered after every earlier one, failed included."""
        async with self._tx() as db:
            # The cursor is closed at once: a statement left open keeps a read snapshot on the
            # connection, and its next BEGIN IMMEDIATE would fail with "database is locked"
            # (SQLITE_BUSY_SNAPSHOT) once the metrics connection has committed meanwhile.
            async with db.execute(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM releases WHERE app_id = ?", (app.id,)
            ) as cursor:
                row = await cursor.fetchone()
            assert row is not None
            version = int(row[0])
            await db.execute(
                "INSERT INTO releases (app_id, version, build_id, sha, slug, static_root, config, "
                "process_types, description, created_by, created_at, status, app_json) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                (
                    app.id,
                    version,
                    build_id,
                    sha,
                    slug,
                    static_root,
                    json.dumps(config),
                    json.dumps(process_types),
                    description,
                    created_by,
                    time.time(),
                    json.dumps(app_json or {}),
                ),
            )
        return await self.release(app, version)

    async def set_release_status(self, release: Release, status: str) -> None:
        async with self._tx() as db:
            await db.execute("UPDATE releases SET status = ? WHERE id = ?", (status, release.id))

    async def release(self, app: App, version: int) -> Release:
        row = await self._one(
            "SELECT * FROM releases WHERE app_id = ? AND version = ?", (app.id, version)
        )
        if row is None:
            raise NotFound(f"No release v{version} for app {app.name!r}.")
        return self._release(row)

    async def current_release(self, app: App) -> Release | None:
        fresh = await self.app(app.name)
        if fresh.current_release is None:
            return None
        return await self.release(fresh, fresh.current_release)

    async def releases(self, app: App, limit: int = 50) -> list[Release]:
        rows = await self._all(
            "SELECT * FROM releases WHERE app_id = ? ORDER BY version DESC LIMIT ?", (app.id, limit)
        )
        return [self._release(r) for r in rows]

    async def set_release_output(
        self, release: Release, output: str, exit_code: int | None, started_at: float
    ) -> None:
        """Keep what `release`'s release phase printed (`releases:output`)."""
        async with self._tx() as db:
            await db.execute(
                "INSERT OR REPLACE INTO release_outputs "
                "(release_id, output, exit_code, started_at, finished_at) VALUES (?, ?, ?, ?, ?)",
                (release.id, output, exit_code, started_at, time.time()),
            )

    async def release_output(self, app: App, version: int | None) -> ReleaseOutput | None:
        """The release phase output of release `version` (None: of the newest release that
        had a release phase); None if it had none (or no release had one)."""
        sql = (
            "SELECT releases.version, o.output, o.exit_code, o.started_at, o.finished_at "
            "FROM release_outputs AS o JOIN releases ON releases.id = o.release_id "
            "WHERE releases.app_id = ?"
        )
        if version is None:
            row = await self._one(sql + " ORDER BY releases.version DESC LIMIT 1", (app.id,))
        else:
            await self.release(app, version)  # NotFound for a release that does not exist
            row = await self._one(sql + " AND releases.version = ?", (app.id, version))
        if row is None:
            return None
        return ReleaseOutput(
            version=row[0],
            output=row[1],
            exit_code=row[2],
            started_at=row[3],
            finished_at=row[4],
        )

    # -- buildpacks ------------------------------------------------------------------------

    async def buildpacks(self, app: App) -> list[str]:
        """The app's own buildpacks (`buildpacks:set`), in order; empty: builds detect one."""
        rows = await self._all(
            "SELECT url FROM app_buildpacks WHERE app_id = ? ORDER BY position", (app.id,)
        )
        return [r["url"] for r in rows]

    async def change_buildpacks(
        self, app: App, change: Callable[[list[str]], list[str]]
    ) -> list[str]:
        """Replace the app's buildpacks with `change(current)` in one transaction, so two
        changes at once both count; `change` raises (`UserError`) to change nothing."""
        async with self._tx() as db:
            if not await self._scalar(db, "SELECT 1 FROM apps WHERE id = ?", (app.id,)):
                raise NotFound(f"No app named {app.name!r}.")  # destroyed meanwhile
            async with db.execute(
                "SELECT url FROM app_buildpacks WHERE app_id = ? ORDER BY position", (app.id,)
            ) as cur:
                current = [row[0] for row in await cur.fetchall()]
            urls = change(current)
            await db.execute("DELETE FROM app_buildpacks WHERE app_id = ?", (app.id,))
            await db.executemany(
                "INSERT INTO app_buildpacks (app_id, position, url) VALUES (?, ?, ?)",
                [(app.id, n, url) for n, url in enumerate(urls, start=1)],
            )
        return urls

    # -- formation -------------------------------------------------------------------------

    async def formation(self, app: App) -> dict[str, int]:
        """Desired counts per process type (what `ps:scale` set, stopped types included)."""
        rows = await self._all(
            "SELECT process_type, quantity FROM formation WHERE app_id = ? ORDER BY process_type",
            (app.id,),
        )
        return {r["process_type"]: r["quantity"] for r in rows}

    async def sizes(self, app: App) -> dict[str, str]:
        """Dyno sizes per process type (`ps:type`); types without one have no memory quota."""
        rows = await self._all(
            "SELECT process_type, size FROM formation WHERE app_id = ? AND size IS NOT NULL "
            "ORDER BY process_type",
            (app.id,),
        )
        return {r["process_type"]: r["size"] for r in rows}

    async def set_sizes(self, app: App, sizes: dict[str, str | None]) -> dict[str, str]:
        """Set (text) or clear (None) the size of process types; returns the new sizes."""
        async with self._tx() as db:
            for ptype, size in sizes.items():
                await db.execute(
                    "INSERT INTO formation (app_id, process_type, quantity, size) "
                    "VALUES (?, ?, 0, ?) "
                    "ON CONFLICT (app_id, process_type) DO UPDATE SET size = excluded.size",
                    (app.id, ptype, size),
                )
        return await self.sizes(app)

    async def stopped_types(self, app: App) -> set[str]:
        rows = await self._all(
            "SELECT process_type FROM formation WHERE app_id = ? AND stopped = 1", (app.id,)
        )
        return {r["process_type"] for r in rows}

    async def set_stopped(self, app: App, process_type: str, stopped: bool) -> None:
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO formation (app_id, process_type, quantity, stopped) "
                "VALUES (?, ?, 0, ?) "
                "ON CONFLICT (app_id, process_type) DO UPDATE SET stopped = excluded.stopped",
                (app.id, process_type, int(stopped)),
            )

    # -- health checks ---------------------------------------------------------------------

    async def check(self, app: App) -> dict[str, Any] | None:
        row = await self._one("SELECT * FROM app_checks WHERE app_id = ?", (app.id,))
        if row is None:
            return None
        return {k: row[k] for k in ("path", "expect", "min_uptime", "timeout")}

    async def set_check(self, app: App, check: dict[str, Any] | None) -> None:
        async with self._tx() as db:
            await db.execute("DELETE FROM app_checks WHERE app_id = ?", (app.id,))
            if check is not None:
                await db.execute(
                    "INSERT INTO app_checks (app_id, path, expect, min_uptime, timeout) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (app.id, check.get("path"), check.get("expect"),
                     float(check.get("min_uptime") or 0), check.get("timeout")),
                )

    async def set_formation(self, app: App, counts: dict[str, int]) -> dict[str, int]:
        async with self._tx() as db:
            for ptype, qty in counts.items():
                await db.execute(
                    "INSERT INTO formation (app_id, process_type, quantity) VALUES (?, ?, ?) "
                    "ON CONFLICT (app_id, process_type) DO UPDATE SET quantity = excluded.quantity",
                    (app.id, ptype, qty),
                )
        return await self.formation(app)

    # -- running dynos ---------------------------------------------------------------------

    DYNO_FIELDS = ("name", "process_type", "release", "pid", "start_ticks", "port", "started_at",
                   "restarts")

    async def replace_dynos(self, app_name: str, records: list[dict[str, Any]]) -> None:
        """The app's running dynos, as the supervisor last reported them."""
        async with self._tx() as db:
            # Read in the transaction: an app destroyed between a read before it and the
            # insert failed the write (FOREIGN KEY constraint) in a task nobody awaited.
            async with db.execute("SELECT id FROM apps WHERE name = ?", (app_name,)) as cur:
                row = await cur.fetchone()
            if row is None:
                return  # the app was destroyed meanwhile
            await db.execute("DELETE FROM dynos WHERE app_id = ?", (row["id"],))
            await db.executemany(
                "INSERT INTO dynos (app_id, name, process_type, release, pid, start_ticks, port, "
                "started_at, restarts, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'running')",
                [(row["id"], *(r[k] for k in self.DYNO_FIELDS)) for r in records],
            )

    async def dyno_records(self, app: App) -> list[dict[str, Any]]:
        rows = await self._all(
            "SELECT * FROM dynos WHERE app_id = ? ORDER BY name, started_at", (app.id,)
        )
        return [{k: r[k] for k in self.DYNO_FIELDS} for r in rows]

    # -- domains ---------------------------------------------------------------------------

    async def domains(self, app: App | None = None) -> list[Domain]:
        rows = await self._of_apps(
            "d.hostname, a.name AS app, d.created_at", "domains", "d.hostname", app
        )
        return [
            Domain(hostname=r["hostname"], app=r["app"], created_at=r["created_at"]) for r in rows
        ]

    async def add_domain(self, app: App, hostname: str) -> Domain:
        async with self._tx() as db:
            owner = await self._scalar(
                db,
                "SELECT a.name FROM domains d JOIN apps a ON a.id = d.app_id WHERE d.hostname = ?",
                (hostname,),
            )
            if owner is not None:
                raise Conflict(f"The domain {hostname!r} is already added to the app {owner!r}.")
            await db.execute(
                "INSERT INTO domains (app_id, hostname, created_at) VALUES (?, ?, ?)",
                (app.id, hostname, time.time()),
            )
        return Domain(hostname=hostname, app=app.name, created_at=time.time())

    async def remove_domain(self, app: App, hostname: str) -> None:
        async with self._tx() as db:
            cur = await db.execute(
                "DELETE FROM domains WHERE app_id = ? AND hostname = ?", (app.id, hostname)
            )
            if cur.rowcount == 0:
                raise NotFound(f"The domain {hostname!r} is not added to the app {app.name!r}.")

    # -- log drains ------------------------------------------------------------------------

    async def drains(self, app: App | None = None) -> list[Drain]:
        rows = await self._of_apps(
            "d.token, a.name AS app, d.url, d.created_at", "drains", "d.id", app
        )
        return [Drain(r["token"], r["app"], r["url"], r["created_at"]) for r in rows]

    async def add_drain(self, app: App, url: str, token: str, limit: int, shown: str) -> Drain:
        """Add a drain (Conflict if the app has it already or has `limit` drains); `shown` is
        the URL as messages may show it (without its password)."""
        now = time.time()
        async with self._tx() as db:
            cur = await db.execute("SELECT url FROM drains WHERE app_id = ?", (app.id,))
            urls = [row[0] for row in await cur.fetchall()]
            if url in urls:
                raise Conflict(f"The app {app.name!r} already drains its logs to {shown}.")
            if len(urls) >= limit:
                raise Conflict(
                    f"The app {app.name!r} has {len(urls)} drains, the most it may have; "
                    "remove one with `minipaas drains:remove` first."
                )
            await db.execute(
                "INSERT INTO drains (app_id, token, url, created_at) VALUES (?, ?, ?, ?)",
                (app.id, token, url, now),
            )
        return Drain(token, app.name, url, now)

    async def remove_drain(self, app: App, url_or_token: str, shown: str) -> Drain:
        """Remove the app's drain with this URL or token (NotFound if it has none)."""
        for drain in await self.drains(app):
            if url_or_token in (drain.url, drain.token):
                async with self._tx() as db:
                    await db.execute("DELETE FROM drains WHERE token = ?", (drain.token,))
                return drain
        raise NotFound(f"The app {app.name!r} has no drain {shown}.")

    # -- add-ons ---------------------------------------------------------------------------

    async def addons(self, app: App | None = None) -> list[Addon]:
        rows = await self._of_apps(
            "d.service, a.name AS app, d.name, d.config_var, d.created_at", "addons", "d.id", app
        )
        return [
            Addon(r["service"], r["app"], r["name"], r["config_var"], r["created_at"])
            for r in rows
        ]

    async def add_addon(self, app: App, service: str, name: str, config_var: str) -> Addon:
        """Record the app's add-on (Conflict if the app has this service already)."""
        now = time.time()
        async with self._tx() as db:
            cur = await db.execute(
                "SELECT 1 FROM addons WHERE app_id = ? AND service = ?", (app.id, service)
            )
            if await cur.fetchone() is not None:
                raise Conflict(f"The app {app.name!r} already has the add-on {service}.")
            await db.execute(
                "INSERT INTO addons (app_id, service, name, config_var, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (app.id, service, name, config_var, now),
            )
        return Addon(service, app.name, name, config_var, now)

    async def remove_addon(self, app: App, service: str) -> None:
        async with self._tx() as db:
            await db.execute(
                "DELETE FROM addons WHERE app_id = ? AND service = ?", (app.id, service)
            )

    # -- backups ---------------------------------------------------------------------------

    @staticmethod
    def _backup(row: aiosqlite.Row) -> Backup:
        return Backup(
            app=row["app"],
            number=row["number"],
            kind=row["kind"],
            status=row["status"],
            error=row["error"],
            size=row["size"],
            created_at=row["created_at"],
            finished_at=row["finished_at"],
        )

    async def backups(self, app: App | None = None, status: str | None = None) -> list[Backup]:
        """The app's backups (or every app's), oldest first; only those of `status` if given."""
        rows = await self._of_apps(
            "d.*, a.name AS app", "backups", "a.name, d.number", app
        )
        return [self._backup(r) for r in rows if status is None or r["status"] == status]

    async def add_backup(self, app: App, kind: str) -> Backup:
        """A new backup of the app (`running`), numbered after every one it ever had."""
        now = time.time()
        async with self._tx() as db:
            last = await self._scalar(
                db, "SELECT last FROM backup_numbers WHERE app_id = ?", (app.id,)
            )
            number = int(last or 0) + 1
            await db.execute(
                "INSERT INTO backup_numbers (app_id, last) VALUES (?, ?) "
                "ON CONFLICT (app_id) DO UPDATE SET last = excluded.last",
                (app.id, number),
            )
            await db.execute(
                "INSERT INTO backups (app_id, number, kind, status, created_at) "
                "VALUES (?, ?, ?, 'running', ?)",
                (app.id, number, kind, now),
            )
        return Backup(app.name, number, kind, "running", None, None, now, None)

    async def finish_backup(
        self, app: App, number: int, *, size: int | None = None, error: str | None = None
    ) -> None:
        """Mark the backup completed (with its size) or failed (with why)."""
        async with self._tx() as db:
            await db.execute(
                "UPDATE backups SET status = ?, size = ?, error = ?, finished_at = ? "
                "WHERE app_id = ? AND number = ?",
                ("failed" if error else "completed", size, error, time.time(), app.id, number),
            )

    async def fail_running_backups(self, error: str) -> list[Backup]:
        """Server start: the backups a stopped server left `running` failed; returns them."""
        running = await self.backups(status="running")
        if running:
            async with self._tx() as db:
                await db.execute(
                    "UPDATE backups SET status = 'failed', error = ?, finished_at = ? "
                    "WHERE status = 'running'",
                    (error, time.time()),
                )
        return running

    async def remove_backups(self, app: App, numbers: Iterable[int] | None = None) -> None:
        """Forget the app's backups of these numbers (all of them if None)."""
        async with self._tx() as db:
            if numbers is None:
                await db.execute("DELETE FROM backups WHERE app_id = ?", (app.id,))
                return
            await db.executemany(
                "DELETE FROM backups WHERE app_id = ? AND number = ?",
                [(app.id, n) for n in numbers],
            )

    async def backup_schedules(self) -> dict[str, str]:
        """Every app's daily backup time (HH:MM, UTC), by app name."""
        rows = await self._of_apps("a.name AS app, d.at", "backup_schedules", "a.name", None)
        return {r["app"]: r["at"] for r in rows}

    async def set_backup_schedule(self, app: App, at: str | None) -> bool:
        """Set (or with None remove) the app's daily backup time; False if there was none to
        remove."""
        async with self._tx() as db:
            if at is None:
                cur = await db.execute("DELETE FROM backup_schedules WHERE app_id = ?", (app.id,))
                return cur.rowcount > 0
            await db.execute(
                "INSERT INTO backup_schedules (app_id, at, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (app_id) DO UPDATE SET at = excluded.at",
                (app.id, at, time.time()),
            )
        return True

    # -- SSH keys --------------------------------------------------------------------------

    @staticmethod
    def _key(row: aiosqlite.Row) -> SSHKey:
        return SSHKey(
            id=row["id"],
            name=row["name"],
            fingerprint=row["fingerprint"],
            public_key=row["public_key"],
            created_at=row["created_at"],
        )

    async def keys(self) -> list[SSHKey]:
        return [self._key(r) for r in await self._all("SELECT * FROM ssh_keys ORDER BY name")]

    async def add_key(self, name: str, fingerprint: str, public_key: str) -> SSHKey:
        async with self._tx() as db:
            if await self._scalar(db, "SELECT 1 FROM ssh_keys WHERE name = ?", (name,)):
                raise Conflict(f"An SSH key named {name!r} already exists.")
            owner = await self._scalar(
                db, "SELECT name FROM ssh_keys WHERE fingerprint = ?", (fingerprint,)
            )
            if owner is not None:
                raise Conflict(f"This public key is already added as {owner!r}.")
            await db.execute(
                "INSERT INTO ssh_keys (name, fingerprint, public_key, created_at) "
                "VALUES (?, ?, ?, ?)",
                (name, fingerprint, public_key, time.time()),
            )
        row = await self._one("SELECT * FROM ssh_keys WHERE name = ?", (name,))
        assert row is not None
        return self._key(row)

    async def key_by_fingerprint(self, fingerprint: str) -> SSHKey | None:
        row = await self._one("SELECT * FROM ssh_keys WHERE fingerprint = ?", (fingerprint,))
        return None if row is None else self._key(row)

    async def remove_key(self, name: str) -> None:
        async with self._tx() as db:
            cur = await db.execute("DELETE FROM ssh_keys WHERE name = ?", (name,))
            if cur.rowcount == 0:
                raise NotFound(f"No SSH key named {name!r}.")

    # -- API tokens ------------------------------------------------------------------------

    async def add_token(self, name: str, token: str) -> None:
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO api_tokens (name, token_hash, created_at) VALUES (?, ?, ?)",
                (name, hash_token(token), time.time()),
            )

    async def has_token(self, name: str) -> bool:
        return await self._one("SELECT 1 FROM api_tokens WHERE name = ?", (name,)) is not None

    async def token_hashes(self) -> list[str]:
        return [r["token_hash"] for r in await self._all("SELECT token_hash FROM api_tokens")]

    async def token_valid(self, token: str) -> bool:
        row = await self._one("SELECT 1 FROM api_tokens WHERE token_hash = ?", (hash_token(token),))
        return row is not None
