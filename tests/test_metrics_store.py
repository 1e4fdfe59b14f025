"""MetricsStore against a real SQLite file: insert, query, roll-up into minutes, prune."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from minipaas.store import Store
from minipaas.store.metrics import MetricsStore

T0 = 1_700_000_040.0  # a minute boundary (divisible by 60)


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[Store, MetricsStore]]:
    store = Store(tmp_path / "minipaas.db")
    await store.open()
    metrics = MetricsStore(store)
    try:
        await store.create_app("web")
        await store.create_app("api")
        yield store, metrics
    finally:
        await metrics.close()
        await store.close()


async def fill(metrics: MetricsStore, start: float, seconds: int, step: int = 5) -> None:
    """Raw rounds (res 5) every `step` s: web.1 CPU = seconds since start / 5, rps 10 or 20."""
    for i in range(0, seconds, step):
        t = start + i
        await metrics.record(
            t,
            5,
            [("web", "web.1", float(i // step), 1000 + i), ("api", "web.1", None, 5)],
            [
                ("web", 10 * step, 10.0, 1.0, 5.0, 9.0, 0.2, 0.0),
                ("api", 0, 0.0, None, None, None, 0.0, 0.0),
            ]
            if i % 10 == 0
            else [("web", 20 * step, 20.0, 2.0, 8.0, 12.0, 0.0, 0.4)],
            (50.0, 100, 1000, 10, 100),
        )


async def test_record_and_query_raw_series(stores: tuple[Store, MetricsStore]) -> None:
    _, metrics = stores
    await fill(metrics, T0, 30)
    dynos = await metrics.dyno_series("web", T0 + 10, 5)
    assert dynos == [(T0 + i, "web.1", float(i // 5), 1000 + i) for i in range(10, 30, 5)]
    assert await metrics.dyno_series("api", T0, 5) == [
        (T0 + i, "web.1", None, 5) for i in range(0, 30, 5)
    ]
    router = await metrics.router_series("web", T0, 5)
    assert len(router) == 6
    assert router[0] == (T0, 10.0, 1.0, 5.0, 9.0, 0.2, 0.0)
    assert router[1] == (T0 + 5, 20.0, 2.0, 8.0, 12.0, 0.0, 0.4)
    assert [r[2] for r in await metrics.router_series("api", T0, 5)] == [None, None, None]
    host = await metrics.host_series(T0 + 25, 5)
    assert host == [(T0 + 25, 50.0, 100, 1000, 10, 100)]
    # Nothing at minute resolution before a roll-up; unknown apps have no series.
    assert await metrics.router_series("web", T0, 60) == []
    assert await metrics.router_series("nope", T0, 5) == []


async def test_samples_of_unknown_apps_are_dropped(stores: tuple[Store, MetricsStore]) -> None:
    _, metrics = stores
    await metrics.record(
        T0, 5, [("ghost", "web.1", 1.0, 1)], [("ghost", 1, 1, 1, 1, 1, 0, 0)], None
    )
    assert await metrics.counts() == {}


async def test_rollup_averages_finished_minutes_once(stores: tuple[Store, MetricsStore]) -> None:
    _, metrics = stores
    await fill(metrics, T0, 150)  # two full minutes and half of a third
    written = await metrics.rollup(T0 + 150)
    assert written == 2 * 2 + 2 * 2 + 2  # 2 minutes x (2 dynos + 2 router rows + 1 host)
    assert await metrics.rollup(T0 + 150) == 0  # idempotent

    dynos = await metrics.dyno_series("web", T0, 60)
    # Minute 1: CPU 0..11 -> 5.5, RSS 1000..1055 -> 1027 (integer average).
    assert dynos == [(T0, "web.1", 5.5, 1027), (T0 + 60, "web.1", 17.5, 1087)]
    router = await metrics.router_series("web", T0, 60)
    assert len(router) == 2
    t, rps, p50, p95, p99, r4xx, r5xx = router[0]
    assert (t, rps) == (T0, 15.0)
    # Percentiles weighted by request counts: 6 rounds of 50 at p95 5, 6 of 100 at p95 8.
    assert p95 == pytest.approx((6 * 50 * 5 + 6 * 100 * 8) / (6 * 50 + 6 * 100))
    assert p50 is not None and p99 is not None and p50 < p95 < p99
    assert (r4xx, r5xx) == (pytest.approx(0.1), pytest.approx(0.2))
    api = await metrics.router_series("api", T0, 60)
    assert [(r[1], r[2]) for r in api] == [(0.0, None), (0.0, None)]
    assert [r[1] for r in await metrics.host_series(T0, 60)] == [50.0, 50.0]

    # The rest of the third minute arrives; the next roll-up takes only that minute.
    await fill(metrics, T0 + 150, 30)
    assert await metrics.rollup(T0 + 185) == 5
    assert [d[0] for d in await metrics.dyno_series("web", T0, 60)] == [T0, T0 + 60, T0 + 120]


async def test_prune_keeps_an_hour_raw_and_a_day_of_minutes(
    stores: tuple[Store, MetricsStore],
) -> None:
    _, metrics = stores
    await fill(metrics, T0, 600, step=60)  # ten raw rows, one a minute
    await metrics.rollup(T0 + 600)
    before = await metrics.counts()
    assert before["dyno_samples/raw"] == 20 and before["dyno_samples/minute"] == 20

    now = T0 + 3600 + 300  # raw rows older than now - 3600 go, minute rows stay
    removed = await metrics.prune(now)
    after = await metrics.counts()
    assert after["dyno_samples/raw"] == 2 * 5  # T0+300 .. T0+540
    assert after["dyno_samples/minute"] == 20
    assert removed == sum(before.values()) - sum(after.values())
    assert [d[0] for d in await metrics.dyno_series("web", 0, 5)] == [
        T0 + 300 + 60 * i for i in range(5)
    ]

    await metrics.prune(T0 + 86400 + 300)
    assert await metrics.counts() == {
        "dyno_samples/minute": 2 * 5,  # the minutes from T0 + 300 on
        "router_samples/minute": 2 * 5,
        "host_samples/minute": 5,
    }


async def test_an_apps_samples_go_with_it(stores: tuple[Store, MetricsStore]) -> None:
    store, metrics = stores
    await fill(metrics, T0, 60)
    await store.delete_app("web")
    await store.create_app("web")  # a new app of the same name starts empty
    assert await metrics.dyno_series("web", 0, 5) == []
    assert await metrics.router_series("web", 0, 5) == []
    assert len(await metrics.dyno_series("api", 0, 5)) == 12


async def test_writes_do_not_disturb_the_stores_transactions(
    stores: tuple[Store, MetricsStore],
) -> None:
    import asyncio

    store, metrics = stores

    async def writes() -> None:
        for i in range(50):
            await metrics.record(T0 + i, 5, [("web", "web.1", 1.0, 1)], [], None)

    async def app_changes() -> None:
        for i in range(50):
            await store.create_app(f"app{i}")

    await asyncio.gather(writes(), app_changes())
    assert len(await store.apps()) == 52
    assert len(await metrics.dyno_series("web", 0, 5)) == 50


async def test_a_write_cancelled_while_it_waits_for_the_lock_leaves_no_transaction(
    stores: tuple[Store, MetricsStore],
) -> None:
    """The sampler is cancelled (a shutdown) while its BEGIN waits for another writer: the
    BEGIN still runs in aiosqlite's thread once the lock is free, and the transaction it opens
    must end there, or the store's writes wait for a lock nobody will release."""
    import asyncio
    import sqlite3

    store, metrics = stores
    db = await metrics._conn()
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        task = asyncio.ensure_future(metrics.record(T0, 5, [("web", "web.1", 1.0, 1)], [], None))
        for _ in range(20):  # let it reach its BEGIN, now blocked in aiosqlite's thread
            await asyncio.sleep(0)
        assert not task.done()
        task.cancel()
        other.execute("ROLLBACK")  # the lock is free: the queued BEGIN runs now
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await db.execute("SELECT 1")  # after whatever the cancelled write queued
        assert not db.in_transaction
        await asyncio.wait_for(store.create_app("after"), 5)  # the store writes at once
    finally:
        other.close()
    assert await metrics.dyno_series("web", 0, 5) == []
