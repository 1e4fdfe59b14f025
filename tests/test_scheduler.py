"""The cron scheduler's loop with a fake clock (the one-off run itself is `minipaas run`'s path)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from minipaas.scheduler import CLOCK_OFFSET_ENV, CronJob, CronScheduler, clock_offset, wall_clock

MINUTE = datetime(2026, 11, 22, 10, 5, tzinfo=UTC)


def gated_runner() -> tuple[Callable[[CronJob], Awaitable[int]], list[str], asyncio.Event]:
    """A job runner that records each job's command and finishes only once the gate is set."""
    gate = asyncio.Event()
    ran: list[str] = []

    async def run(job: CronJob) -> int:
        ran.append(job.command)
        await gate.wait()
        return 0

    return run, ran, gate


def record_ticks(scheduler: CronScheduler, ticked: list[datetime]) -> None:
    """Have `scheduler` add each minute it ticks to `ticked`, then tick as it would."""
    tick = scheduler.tick

    async def recorded(minute: datetime) -> list[CronJob]:
        ticked.append(minute)
        return await tick(minute)

    scheduler.tick = recorded  # type: ignore[method-assign]


async def test_due_jobs_start_and_slow_ones_do_not_stack() -> None:
    jobs = [
        CronJob("a", 0, "echo every", "* * * * *", 1),
        CronJob("a", 1, "echo five", "*/5 * * * *", 1),
        CronJob("b", 0, "echo never now", "0 3 * * *", 2),
    ]
    run, ran, gate = gated_runner()

    async def get_jobs() -> list[CronJob]:
        return jobs

    scheduler = CronScheduler(jobs=get_jobs, run=run)
    started = await scheduler.tick(MINUTE)
    assert [j.command for j in started] == ["echo every", "echo five"]
    await asyncio.sleep(0)
    assert ran == ["echo every", "echo five"]
    # a minute later the first is still running: not started twice
    later = await scheduler.tick(MINUTE.replace(minute=6))
    assert later == []
    gate.set()
    await asyncio.gather(*scheduler.running.values())
    assert [j.command for j in await scheduler.tick(MINUTE.replace(minute=7))] == ["echo every"]
    await scheduler.stop()


async def test_run_forever_sleeps_to_the_minute_and_survives_failures() -> None:
    now = datetime(2026, 11, 22, 10, 4, 30, tzinfo=UTC)
    slept: list[float] = []
    ticks: list[str] = []

    async def sleep(seconds: float) -> None:
        nonlocal now
        slept.append(seconds)
        now = now + timedelta(seconds=seconds)
        if len(slept) >= 2:
            raise asyncio.CancelledError

    async def run(job: CronJob) -> int:
        ticks.append(job.command)
        raise RuntimeError("boom")

    async def get_jobs() -> list[CronJob]:
        return [CronJob("a", 0, "fails", "* * * * *", 1)]

    scheduler = CronScheduler(jobs=get_jobs, run=run, now=lambda: now, sleep=sleep)
    with contextlib.suppress(asyncio.CancelledError):
        await scheduler.run_forever()
    assert slept == [30.0, 60.0]
    await asyncio.gather(*scheduler.running.values())
    assert ticks == ["fails"]
    await scheduler.stop()


async def test_run_forever_ticks_each_minute_once_and_outlives_a_failing_job_list() -> None:
    """The loop's sleep may end a hair before the wall clock's minute: the same minute was then
    ticked twice (a quick job ran twice). A job list that failed (a database error) ended the
    loop, and with it every app's cron, until the server restarted."""
    now = datetime(2026, 11, 22, 10, 4, 30, tzinfo=UTC)
    ticked: list[datetime] = []
    calls = 0

    async def sleep(seconds: float) -> None:
        nonlocal now
        now = now + timedelta(seconds=seconds) - timedelta(milliseconds=3)  # wakes early
        if len(ticked) >= 3:
            raise asyncio.CancelledError

    async def run(job: CronJob) -> int:
        return 0

    async def get_jobs() -> list[CronJob]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError("database is locked")
        return [CronJob("a", 0, "quick", "* * * * *", 1)]

    scheduler = CronScheduler(jobs=get_jobs, run=run, now=lambda: now, sleep=sleep)
    record_ticks(scheduler, ticked)
    with contextlib.suppress(asyncio.CancelledError):
        await scheduler.run_forever()
    assert [t.strftime("%H:%M") for t in ticked] == ["10:05", "10:06", "10:07"]
    await scheduler.stop()


async def test_a_slow_job_is_not_stacked_when_a_release_moves_it_in_the_list() -> None:
    """Runs were tracked by position in app.json `cron`: a new release that put another job
    first started the slow one again beside itself (now second), and skipped the new first one
    while the slow one ran."""
    run, ran, gate = gated_runner()

    jobs = [CronJob("a", 0, "slow", "* * * * *", 1)]

    async def get_jobs() -> list[CronJob]:
        return jobs

    skipped: list[CronJob] = []
    scheduler = CronScheduler(jobs=get_jobs, run=run, skipped=skipped.append)
    await scheduler.tick(MINUTE)
    jobs = [CronJob("a", 0, "new", "* * * * *", 2), CronJob("a", 1, "slow", "* * * * *", 2)]
    assert [j.command for j in await scheduler.tick(MINUTE.replace(minute=6))] == ["new"]
    assert skipped == [jobs[1]]  # said, for the app's logs: not silently left out
    await asyncio.sleep(0)
    assert ran == ["slow", "new"]
    gate.set()
    await asyncio.gather(*scheduler.running.values())
    assert len(await scheduler.tick(MINUTE.replace(minute=7))) == 2
    assert len(scheduler.running) == 2  # finished runs are not kept for ever
    await scheduler.stop()


async def test_run_forever_since_ticks_its_first_minute_even_when_begun_after_it() -> None:
    """The backup scheduler starts with the server; the daily runs due up to `since` are the
    catch-up's (backups.missed_runs), the ones after it the loop's. A loop whose first look at
    the clock came after the next minute had begun skipped that minute: neither ran it."""
    since = datetime(2026, 11, 22, 10, 4, 59, 900000, tzinfo=UTC)
    now = datetime(2026, 11, 22, 10, 5, 0, 200000, tzinfo=UTC)  # the loop begins late
    ticked: list[datetime] = []

    async def sleep(seconds: float) -> None:
        nonlocal now
        now = now + timedelta(seconds=seconds)
        if len(ticked) >= 3:
            raise asyncio.CancelledError

    async def run(job: CronJob) -> int:
        return 0

    async def get_jobs() -> list[CronJob]:
        return []

    scheduler = CronScheduler(jobs=get_jobs, run=run, now=lambda: now, sleep=sleep)
    record_ticks(scheduler, ticked)
    with contextlib.suppress(asyncio.CancelledError):
        await scheduler.run_forever(since=since)
    assert [t.strftime("%H:%M") for t in ticked] == ["10:05", "10:06", "10:07"]
    await scheduler.stop()


def test_the_clock_offset_test_hook_is_inert_unless_set(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(CLOCK_OFFSET_ENV, raising=False)
    assert abs(wall_clock()() - datetime.now(UTC)) < timedelta(seconds=1)
    monkeypatch.setenv(CLOCK_OFFSET_ENV, "-90.5")
    assert abs(wall_clock()() - datetime.now(UTC) + timedelta(seconds=90.5)) < timedelta(
        seconds=1
    )
    for bad in ("soon", "nan", "1e9"):
        monkeypatch.setenv(CLOCK_OFFSET_ENV, bad)
        with caplog.at_level(logging.WARNING, logger="minipaas.cron"):
            assert clock_offset() == timedelta()
        assert f"MINIPAAS_TEST_CLOCK_OFFSET={bad!r} is not a number of seconds" in caplog.text


async def test_the_clock_offset_test_hook_brings_the_next_minute_near(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the real clock and sleep: an offset that puts the scheduler 0.5 s before a
    minute makes it tick, for that (offset) minute, half a second later, not up to 60 s."""
    now = time.time()
    lead = 60 - now % 60 - 0.5  # now + lead is half a second before a whole minute
    monkeypatch.setenv(CLOCK_OFFSET_ENV, str(lead))
    ticked: list[datetime] = []

    async def jobs() -> list[CronJob]:
        return [CronJob("a", 0, "echo every", "* * * * *", 1)]

    async def run(job: CronJob) -> int:
        return 0

    scheduler = CronScheduler(jobs=jobs, run=run)
    record_ticks(scheduler, ticked)
    started = time.monotonic()
    loop = asyncio.create_task(scheduler.run_forever())
    try:
        while not ticked and time.monotonic() - started < 5:
            await asyncio.sleep(0.02)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        await scheduler.stop()
    assert ticked == [datetime.fromtimestamp(round(now + lead + 0.5), UTC)], ticked
    assert time.monotonic() - started < 5
