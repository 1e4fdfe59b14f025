"""`pg:backups` and `pg:reset`: dumps of the apps' add-on databases, Heroku style.

Owns `<data-dir>/backups` (owner-only): `<app>/b001.dump` is the `pg_dump` custom-format dump
of backup b001 of the app, 0600, written under a hidden `.partial` name and renamed once
complete, so a half-written dump is never taken for a backup. The store keeps what each backup
is (number, manual or scheduled, completed or failed and why); numbers are per app and never
given twice. The dump and the restore are the cluster's (`pg_dump`/`pg_restore` as its
superuser over its unix socket: no password anywhere); this module decides where the bytes
go and keeps one capture, restore or reset of an app at a time (another one is refused with
409, except a scheduled capture, which waits its turn). A dump a user uploads to restore is
held in a nameless file in the app's dir only while it is loaded. This module starts no
process and speaks no SQL itself: the cluster and the store do.

Daily backups (`pg:backups:schedule --at HH:MM`, UTC) are cron jobs run by a `CronScheduler`
of their own (the class that runs app.json's jobs); the newest `KEEP_SCHEDULED` completed
scheduled backups are kept, manual ones until deleted. A daily capture the server was down
for is caught up when it starts (`missed_runs`, `catch_up`): once, not once per missed day.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from minipaas.errors import Conflict, NotFound, UserError
from minipaas.logs import LogStore
from minipaas.models import Addon, App, Backup
from minipaas.names import shown
from minipaas.paths import Paths
from minipaas.postgres import SERVICE, Cluster
from minipaas.scheduler import CronJob
from minipaas.store import Store

log = logging.getLogger("minipaas.backups")

#: Scheduled backups kept per app (Heroku keeps 7 daily ones); manual ones stay until deleted.
KEEP_SCHEDULED = 7
#: Bytes read at a time when a dump is streamed to a client.
CHUNK = 256 * 1024
INTERRUPTED = "the server stopped while it ran"
#: How every dump in pg_dump's custom format begins.
MAGIC = b"PGDMP"
SCHEDULED_COMMAND = "pg:backups:capture"
_ID = re.compile(r"^[bB]0*([0-9]{1,9})$")
_AT = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")


def backup_number(text: str) -> int:
    """The number of backup id `text` (`b001` → 1); `UserError` naming it if it is none."""
    match = _ID.match(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise UserError(
            f"Invalid backup id {shown(text)}: use an id as `minipaas pg:backups` lists it, "
            "e.g. b001."
        )
    return int(match.group(1))


def daily_time(text: str) -> str:
    """`HH:MM` (UTC) normalised (`2:05` → `02:05`); `UserError` naming anything else. Heroku's
    `--at '02:00 America/Los_Angeles'` form is taken with UTC as its zone (`02:00 UTC`); any
    other zone is refused by name rather than read as UTC."""
    clock, _, zone = text.strip().partition(" ")
    zone = zone.strip()
    if zone and zone.upper() not in ("UTC", "ETC/UTC", "Z", "GMT"):
        raise UserError(
            f"Invalid time zone {shown(zone)} in {shown(text)}: daily backups run at a UTC "
            f"time; use HH:MM in UTC (or HH:MM UTC), e.g. 02:00."
        )
    match = _AT.match(clock)
    if match is None:
        raise UserError(
            f"Invalid time {shown(text)}: use HH:MM in UTC, from 00:00 to 23:59, e.g. 02:00."
        )
    return f"{int(match.group(1)):02d}:{match.group(2)}"


def expired(backups: list[Backup], keep: int = KEEP_SCHEDULED) -> list[Backup]:
    """The scheduled backups past the newest `keep` completed ones (and past the newest `keep`
    failed ones): what retention deletes. Manual and running backups are never expired."""
    out: list[Backup] = []
    for status in ("completed", "failed"):
        mine = sorted(
            (b for b in backups if b.kind == "scheduled" and b.status == status),
            key=lambda b: b.number,
        )
        out += mine[: max(0, len(mine) - keep)]
    return sorted(out, key=lambda b: b.number)


def last_due(at: str, now: datetime) -> datetime:
    """The newest daily run time `at` (HH:MM, UTC) at or before `now`: today's or
    yesterday's, so always within the last 24 hours."""
    hour, minute = (int(part) for part in at.split(":"))
    due = now.astimezone(UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)
    return due if due <= now else due - timedelta(days=1)


def missed_run(at: str, backups: list[Backup], now: datetime) -> datetime | None:
    """The run time of the daily schedule `at` that has no capture at or after it (the
    server was down then), else None. Any capture since counts, manual or scheduled, even a
    failed one (it would fail again), except one the server's stop cut short."""
    due = last_due(at, now)
    for backup in backups:
        cut_short = backup.status == "failed" and backup.error == INTERRUPTED
        if backup.created_at >= due.timestamp() and not cut_short:
            return None
    return due


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Backups:
    """The backups of every app's add-on database."""

    def __init__(
        self,
        *,
        store: Store,
        cluster: Cluster | None,
        paths: Paths,
        logs: LogStore,
        keep: int = KEEP_SCHEDULED,
    ) -> None:
        self.store = store
        self.cluster = cluster
        self.paths = paths
        self.logs = logs
        self.keep = keep
        #: Per app: held while a capture, restore or reset of its database runs.
        self._busy: dict[str, asyncio.Lock] = {}
        #: Per app: what holds `_busy` ("capture of b003"), for the 409's sentence.
        self._doing: dict[str, str] = {}

    # -- helpers ---------------------------------------------------------------------------

    def _cluster(self) -> Cluster:
        if self.cluster is None:
            raise UserError("This server runs without the PostgreSQL add-on.")
        return self.cluster

    async def _addon(self, app_name: str) -> tuple[App, Addon]:
        app = await self.store.app(app_name)
        for addon in await self.store.addons(app):
            if addon.service == SERVICE:
                return app, addon
        raise NotFound(
            f"The app {app_name!r} has no {SERVICE} add-on, so no backups; create one with "
            f"`minipaas addons:create {SERVICE} -a {app_name}`."
        )

    @contextlib.asynccontextmanager
    async def _exclusive(
        self, app: str, doing: str, *, wait: bool = False
    ) -> AsyncIterator[None]:
        """One capture, restore or reset of the app's database at a time: `Conflict` naming
        the one under way (or, with `wait`, wait for it)."""
        lock = self._busy.setdefault(app, asyncio.Lock())
        if lock.locked() and not wait:
            raise Conflict(
                f"The database of {app!r} is busy with a {self._doing.get(app, 'backup')}; "
                "nothing was done: try again once it is finished."
            )
        async with lock:
            self._doing[app] = doing
            try:
                yield
            finally:
                self._doing.pop(app, None)

    def exclusive(self, app: str, doing: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold the app's database for `doing` (`apps:rename`): no capture, restore or reset
        starts meanwhile; `Conflict` naming the one under way, if any."""
        return self._exclusive(app, doing)

    def forget(self, app: str) -> None:
        """The app has another name now (`apps:rename`): drop what was kept under this one."""
        self._busy.pop(app, None)

    def _file(self, backup: Backup) -> str:
        return str(self.paths.app_backups(backup.app) / f"{backup.id}.dump")

    def _open_dump(self, app: App, backup: Backup) -> int:
        """A read descriptor of the backup's dump; `NotFound` if the file is gone."""
        try:
            return os.open(self._file(backup), os.O_RDONLY)
        except FileNotFoundError:
            raise NotFound(
                f"The dump of backup {backup.id} of {app.name!r} is missing from the server's "
                "disk."
            ) from None

    def _directory(self, app: str) -> str:
        """The app's backup dir, created owner-only (and the top one) if missing."""
        top = self.paths.backups
        top.mkdir(mode=0o700, exist_ok=True)
        os.chmod(top, 0o700)
        mine = self.paths.app_backups(app)
        mine.mkdir(mode=0o700, exist_ok=True)
        os.chmod(mine, 0o700)
        return str(mine)

    async def _find(self, app: App, ref: str | None) -> Backup:
        """The app's backup `ref` (its newest completed one if None) that has a dump."""
        backups = await self.store.backups(app)
        if ref is None:
            done = [b for b in backups if b.status == "completed"]
            if not done:
                raise NotFound(
                    f"The app {app.name!r} has no completed backup; capture one with "
                    f"`minipaas pg:backups:capture -a {app.name}`."
                )
            return done[-1]
        number = backup_number(ref)
        for backup in backups:
            if backup.number == number:
                if backup.status == "running":
                    raise Conflict(f"The backup {backup.id} of {app.name!r} is not finished yet.")
                if backup.status == "failed":
                    raise Conflict(
                        f"The backup {backup.id} of {app.name!r} failed ({backup.error}): it "
                        "has no dump."
                    )
                return backup
        raise NotFound(
            f"The app {app.name!r} has no backup b{number:03d}; see `minipaas pg:backups -a "
            f"{app.name}`."
        )

    # -- what the API offers ---------------------------------------------------------------

    async def of_app(self, app_name: str) -> list[Backup]:
        app, _ = await self._addon(app_name)
        return await self.store.backups(app)

    async def capture(self, app_name: str, *, kind: str = "manual") -> Backup:
        """Dump the app's database to a new backup; `UserError` saying why if it failed (the
        backup is then listed as failed, with that reason). A scheduled capture waits for a
        capture or restore under way; a manual one is refused (409)."""
        app, addon = await self._addon(app_name)
        async with self._exclusive(app.name, "backup capture", wait=kind == "scheduled"):
            backup = await self.store.add_backup(app, kind)
            self._doing[app.name] = f"capture of backup {backup.id}"
            try:
                size = await self._dump(addon, backup)
            except UserError as exc:
                await self.store.finish_backup(app, backup.number, error=str(exc))
                self.logs.append(
                    app.name, "minipaas", "minipaas", f"Backup {backup.id} failed: {exc}"
                )
                raise UserError(f"The backup {backup.id} of {app.name!r} failed: {exc}") from None
            except BaseException:
                # Cancelled (the server stops): recorded as the restart would find it.
                with contextlib.suppress(Exception):
                    await asyncio.shield(
                        self.store.finish_backup(app, backup.number, error=INTERRUPTED)
                    )
                raise
            await self.store.finish_backup(app, backup.number, size=size)
        self.logs.append(
            app.name, "minipaas", "minipaas",
            f"Captured backup {backup.id} ({kind}, {size} bytes) of {addon.name}",
        )
        return replace(backup, status="completed", size=size)

    async def _dump(self, addon: Addon, backup: Backup) -> int:
        directory = await asyncio.to_thread(self._directory, backup.app)
        partial = os.path.join(directory, f".{backup.id}.dump.partial")
        final = self._file(backup)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            try:
                await self._cluster().dump(addon.name, fd)
                await asyncio.to_thread(os.fsync, fd)
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            # Complete: only now does the dump get its name (the rename is atomic).
            os.rename(partial, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise
        return size

    async def download(self, app_name: str, ref: str | None) -> tuple[Backup, AsyncIterator[bytes]]:
        """The backup `ref` (the newest completed one if None) and its dump's bytes as they are
        read: the file is open before this returns, so a delete meanwhile does not cut it."""
        app, _ = await self._addon(app_name)
        backup = await self._find(app, ref)
        fd = self._open_dump(app, backup)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while chunk := await asyncio.to_thread(os.read, fd, CHUNK):
                    yield chunk
            finally:
                os.close(fd)

        return replace(backup, size=os.fstat(fd).st_size), chunks()

    async def restore(self, app_name: str, ref: str | None) -> tuple[Backup, Addon]:
        """Load backup `ref` (the newest completed one if None) into the app's database."""
        app, addon = await self._addon(app_name)
        backup = await self._find(app, ref)
        async with self._exclusive(app.name, f"restore of backup {backup.id}"):
            fd = self._open_dump(app, backup)
            try:
                await self._cluster().restore(addon.name, fd)
            except UserError as exc:
                raise UserError(
                    f"Restoring {backup.id} into the database of {app.name!r} failed and "
                    f"changed nothing: {exc}"
                ) from None
            finally:
                os.close(fd)
        self.logs.append(
            app.name, "minipaas", "minipaas", f"Restored backup {backup.id} into {addon.name}"
        )
        return backup, addon

    async def restore_upload(self, app_name: str, chunks: AsyncIterator[bytes]) -> Addon:
        """Load a custom-format dump the client sends (`chunks`, read only once no other
        capture, restore or reset of the app runs) into the app's database, as `restore`
        does. It is held in an unnamed owner-only file in the app's backup dir meanwhile."""
        app, addon = await self._addon(app_name)
        async with self._exclusive(app.name, "restore of an uploaded dump"):
            directory = await asyncio.to_thread(self._directory, app.name)
            path = os.path.join(directory, f".upload-{secrets.token_hex(8)}.partial")
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            os.unlink(path)  # nameless: gone with the descriptor, even if the server dies
            try:
                size = 0
                async for chunk in chunks:
                    size += len(chunk)
                    await asyncio.to_thread(_write_all, fd, chunk)
                if os.pread(fd, len(MAGIC), 0) != MAGIC:
                    raise UserError(
                        f"The uploaded file ({size} bytes) is not a dump in pg_dump's custom "
                        "format (made with `pg_dump -Fc`, as `pg:backups:download` gives): "
                        f"it does not begin with {MAGIC.decode()}."
                    )
                os.lseek(fd, 0, os.SEEK_SET)
                try:
                    await self._cluster().restore(addon.name, fd)
                except UserError as exc:
                    raise UserError(
                        f"Restoring the uploaded dump into the database of {app.name!r} failed "
                        f"and changed nothing: {exc}"
                    ) from None
            finally:
                os.close(fd)
        self.logs.append(
            app.name, "minipaas", "minipaas",
            f"Restored an uploaded dump ({size} bytes) into {addon.name}",
        )
        return addon

    async def delete(self, app_name: str, ref: str) -> Backup:
        app, _ = await self._addon(app_name)
        number = backup_number(ref)
        found = [b for b in await self.store.backups(app) if b.number == number]
        if not found:
            raise NotFound(
                f"The app {app.name!r} has no backup b{number:03d}; see `minipaas pg:backups "
                f"-a {app.name}`."
            )
        backup = found[0]
        if backup.status == "running":
            raise Conflict(
                f"The backup {backup.id} of {app.name!r} is being captured; delete it once it "
                "is finished."
            )
        await self._remove(app, [backup])
        return backup

    async def _remove(self, app: App, backups: list[Backup]) -> None:
        await self.store.remove_backups(app, [b.number for b in backups])
        for backup in backups:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._file(backup))

    async def schedule(self, app_name: str, at: str) -> str:
        app, _ = await self._addon(app_name)
        at = daily_time(at)
        await self.store.set_backup_schedule(app, at)
        self.logs.append(app.name, "minipaas", "minipaas", f"Scheduled daily backups at {at} UTC")
        return at

    async def unschedule(self, app_name: str) -> None:
        app, _ = await self._addon(app_name)
        if not await self.store.set_backup_schedule(app, None):
            raise NotFound(f"The app {app.name!r} has no backup schedule.")
        self.logs.append(app.name, "minipaas", "minipaas", "Unscheduled daily backups")

    async def schedule_of(self, app_name: str) -> str | None:
        await self._addon(app_name)
        return (await self.store.backup_schedules()).get(app_name)

    async def reset(self, app_name: str) -> Addon:
        """Empty the app's database (dropped and created again: same role, same password)."""
        app, addon = await self._addon(app_name)
        async with self._exclusive(app.name, "reset"):
            await self._cluster().reset_database(addon.name)
        self.logs.append(app.name, "minipaas", "minipaas", f"Reset {addon.name}: it is empty")
        return addon

    async def discard_app(self, app_name: str) -> int:
        """Delete every backup of the app, its schedule and its dumps (the add-on or the app
        is destroyed); the number of backups deleted. Waits for a capture under way."""
        app = await self.store.app(app_name)
        async with self._exclusive(app.name, "removal of every backup", wait=True):
            backups = await self.store.backups(app)
            await self.store.remove_backups(app)
            await self.store.set_backup_schedule(app, None)
            await asyncio.to_thread(
                shutil.rmtree, self.paths.app_backups(app.name), ignore_errors=True
            )
        self._busy.pop(app.name, None)
        return len(backups)

    # -- the server's side -----------------------------------------------------------------

    async def recover(self) -> None:
        """Server start: backups a stopped server left running failed (their partial dumps
        are deleted)."""
        for backup in await self.store.fail_running_backups(INTERRUPTED):
            with contextlib.suppress(OSError):
                os.unlink(
                    self.paths.app_backups(backup.app) / f".{backup.id}.dump.partial"
                )

    async def cron_jobs(self) -> list[CronJob]:
        """One daily job per app with a backup schedule (for `CronScheduler`)."""
        jobs = []
        for app, at in sorted((await self.store.backup_schedules()).items()):
            hour, minute = at.split(":")
            jobs.append(CronJob(app, 0, SCHEDULED_COMMAND, f"{int(minute)} {int(hour)} * * *", 0))
        return jobs

    async def missed_runs(self, now: datetime | None = None) -> list[CronJob]:
        """Server start (before its scheduler ticks): the daily captures whose newest run time
        passed with no capture since, each said in its app's log; run them with `catch_up`."""
        now = now or datetime.now(UTC)
        schedules = await self.store.backup_schedules()
        missed = []
        for job in await self.cron_jobs():
            with contextlib.suppress(NotFound):  # destroyed meanwhile
                app = await self.store.app(job.app)
                due = missed_run(schedules[job.app], await self.store.backups(app), now)
                if due is not None:
                    self.logs.append(
                        app.name, "minipaas", "minipaas",
                        f"Capturing the daily backup missed at {due:%Y-%m-%d %H:%M} UTC (the "
                        "server was down)",
                    )
                    missed.append(job)
        return missed

    async def catch_up(self, jobs: list[CronJob]) -> None:
        """The `missed_runs`, one after the other, as the scheduler runs them (one that fails
        unexpectedly is logged, and the next apps' still run)."""
        for job in jobs:
            try:
                await self.run_scheduled(job)
            except Exception:
                log.exception("the missed daily backup of %s could not be captured", job.app)

    async def run_scheduled(self, job: CronJob) -> int | None:
        """A scheduled capture, then retention: the scheduled backups past the newest `keep`
        completed ones are deleted. A failure is in the app's log and its backups list."""
        with contextlib.suppress(UserError):
            await self.capture(job.app, kind="scheduled")
        with contextlib.suppress(NotFound):  # the app or its add-on is gone meanwhile
            app = await self.store.app(job.app)
            old = expired(await self.store.backups(app), self.keep)
            if old:
                await self._remove(app, old)
                self.logs.append(
                    app.name, "minipaas", "minipaas",
                    "Deleted expired scheduled backups " + ", ".join(b.id for b in old),
                )
        return None
