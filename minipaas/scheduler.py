"""The cron scheduler: runs app.json `cron` jobs of current releases as one-off dynos.

Once a minute (UTC, on the minute) it asks for the jobs, and starts each one whose schedule
matches that minute, unless the same job is still running from an earlier minute (a slow job is
never stacked). Time and the job runner are passed in, so the loop is tested with a fake clock
while the real one-off path is the one `minipaas run` uses. The real clock may be offset by the
hidden test hook MINIPAAS_TEST_CLOCK_OFFSET (`CLOCK_OFFSET_ENV`), inert unless set.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from minipaas import cron
from minipaas.errors import UserError

log = logging.getLogger("minipaas.cron")

#: Hidden test hook, inert unless set: seconds (a number, may be fractional or negative) added
#: to the wall clock the schedulers read, so that a test can put the next minute boundary
#: a few seconds ahead instead of waiting for the real one. Read when a scheduler is made
#: (the server's start). Not a setting: no user should ever set it.
CLOCK_OFFSET_ENV = "MINIPAAS_TEST_CLOCK_OFFSET"


def clock_offset() -> timedelta:
    """The test hook's offset (`CLOCK_OFFSET_ENV`): zero when it is unset or empty, and when
    it is not a number of seconds (said in the log; the server still starts, on true time)."""
    text = os.environ.get(CLOCK_OFFSET_ENV, "").strip()
    if not text:
        return timedelta()
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or abs(seconds) > 86400:
        log.warning(
            "%s=%r is not a number of seconds (a day at most): ignored",
            CLOCK_OFFSET_ENV, text,
        )
        return timedelta()
    return timedelta(seconds=seconds)


def wall_clock() -> Callable[[], datetime]:
    """The schedulers' "now": UTC wall time, plus the test hook's offset when it is set."""
    offset = clock_offset()
    if not offset:
        return lambda: datetime.now(UTC)
    return lambda: datetime.now(UTC) + offset


@dataclass(frozen=True)
class CronJob:
    app: str
    index: int  # position in app.json `cron`, names the job in logs
    command: str
    schedule: str
    release: int


class CronScheduler:
    """Starts due jobs every minute; keeps track of the ones still running."""

    def __init__(
        self,
        *,
        jobs: Callable[[], Awaitable[list[CronJob]]],
        run: Callable[[CronJob], Awaitable[int | None]],
        now: Callable[[], datetime] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        skipped: Callable[[CronJob], None] = lambda _job: None,
    ) -> None:
        self._jobs = jobs
        self._run = run
        self._skipped = skipped  # told of a due job not started: its last run still goes on
        self._now = now or wall_clock()  # None: the wall clock (see CLOCK_OFFSET_ENV)
        self._sleep = sleep
        #: Runs still going, by (app, command, schedule): the job itself, not its position in
        #: app.json `cron`, which a new release may give to another job.
        self.running: dict[tuple[str, str, str], asyncio.Task[None]] = {}

    async def run_forever(self, since: datetime | None = None) -> None:
        """Tick every minute from the one after `since` (default: the one after now) on; with
        `since`, that first minute is ticked even if this loop only begins after it (the ones
        up to `since` are someone else's: the backups' catch-up at the server's start)."""
        last: datetime | None = None
        if since is not None:
            last = since.replace(second=0, microsecond=0)
        while True:
            now = self._now()
            minute = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
            if since is not None and last is not None and last + timedelta(minutes=1) < minute:
                minute = last + timedelta(minutes=1)  # begun after its first minute: tick it
            since = None
            if last is not None and minute <= last:
                # Woke a hair before the minute (the loop's clock is not the wall clock): that
                # minute has had its tick; never run its jobs twice.
                minute = last + timedelta(minutes=1)
            await self._sleep(max(0.0, (minute - now).total_seconds()))
            try:
                await self.tick(minute)
            except Exception:  # the job list (the database) failing once must not end cron
                log.exception("cron: the jobs due at %s could not be listed", minute)
            last = minute

    async def tick(self, minute: datetime) -> list[CronJob]:
        """Start the jobs due at `minute`; returns the ones started."""
        started = []
        self.running = {k: t for k, t in self.running.items() if not t.done()}
        for job in await self._jobs():
            key = (job.app, job.command, job.schedule)
            try:
                due = cron.parse(job.schedule).matches(minute)
            except (UserError, ValueError):  # stored by an older, more lenient parser
                due = False
            if not due:
                continue
            if key in self.running:
                self._skipped(job)
                continue
            task = asyncio.get_running_loop().create_task(self._one(job))
            self.running[key] = task
            started.append(job)
        return started

    async def _one(self, job: CronJob) -> None:
        try:
            await self._run(job)
        except Exception:  # a failing job must never stop the scheduler
            log.exception("cron job %d of %s failed to run", job.index, job.app)

    async def stop(self) -> None:
        for task in self.running.values():
            task.cancel()
        await asyncio.gather(*self.running.values(), return_exceptions=True)
        self.running.clear()
