"""The store against a real SQLite file: migrations, apps, releases, config, keys, tokens."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from minipaas.errors import Conflict, NotFound
from minipaas.store import Store


@pytest.fixture
async def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = Store(tmp_path / "minipaas.db")
    await s.open()
    yield s
    await s.close()


async def test_migrations_are_idempotent(tmp_path: Path) -> None:
    for _ in range(2):
        s = Store(tmp_path / "m.db")
        await s.open()
        assert await s.apps() == []
        await s.close()
    assert (tmp_path / "m.db").stat().st_mode & 0o777 == 0o600


async def test_apps_lifecycle(store: Store) -> None:
    app = await store.create_app("web")
    assert app.uid > 20000
    with pytest.raises(Conflict, match="'web' already exists"):
        await store.create_app("web")
    with pytest.raises(NotFound, match="apps:create nope"):
        await store.app("nope")
    await store.delete_app("web")
    again = await store.create_app("web")
    assert again.id != app.id  # ids (and so uids) are never reused


async def test_releases_and_config(store: Store) -> None:
    app = await store.create_app("web")
    assert await store.update_config(app, {"A": "1", "B": "2"}) == {"A": "1", "B": "2"}
    assert await store.update_config(app, {"A": None}) == {"B": "2"}
    r1 = await store.create_release(
        app,
        build_id=None,
        sha="a" * 40,
        slug="/s",
        static_root=None,
        config={"B": "2"},
        process_types={"web": "x"},
        description="Deploy aaaaaaa",
        created_by="me",
    )
    r2 = await store.create_release(
        app,
        build_id=None,
        sha="a" * 40,
        slug="/s",
        static_root=None,
        config={},
        process_types={},
        description="Set X",
        created_by="me",
    )
    assert (r1.version, r2.version) == (1, 2)
    await store.set_current_release(app, 1)
    current = await store.current_release(app)
    assert current is not None and current.config == {"B": "2"}
    assert r1.to_json()["config"] == ["B"]  # values are secrets
    assert [r.version for r in await store.releases(app)] == [2, 1]
    with pytest.raises(NotFound, match="v9"):
        await store.release(app, 9)


async def test_formation_domains_keys_tokens(store: Store) -> None:
    app = await store.create_app("web")
    assert await store.set_formation(app, {"web": 2, "worker": 0}) == {"web": 2, "worker": 0}
    await store.add_domain(app, "www.example.com")
    with pytest.raises(Conflict):
        await store.add_domain(app, "www.example.com")
    assert [d.hostname for d in await store.domains(app)] == ["www.example.com"]
    await store.remove_domain(app, "www.example.com")
    with pytest.raises(NotFound):
        await store.remove_domain(app, "www.example.com")
    key = await store.add_key("me", "SHA256:abc", "ssh-ed25519 AAAA")
    assert (await store.key_by_fingerprint("SHA256:abc")) == key
    with pytest.raises(Conflict):
        await store.add_key("other", "SHA256:abc", "ssh-ed25519 AAAA")
    await store.add_token("admin", "s3cret")
    assert await store.token_valid("s3cret") and not await store.token_valid("nope")
    assert "s3cret" not in (await store.token_hashes())[0]


async def test_writes_interleaved_with_a_second_connection(tmp_path: Path) -> None:
    """A statement left open on the store's connection would pin an old WAL snapshot, and its
    next write would fail with "database is locked" once the metrics connection committed."""
    from minipaas.store.metrics import MetricsStore

    store = Store(tmp_path / "m.db")
    await store.open()
    metrics = MetricsStore(store)
    try:
        app = await store.create_app("web")
        for n in range(5):
            await store.create_release(
                app,
                build_id=None,
                sha=None,
                slug=None,
                static_root=None,
                config={},
                process_types={},
                description=f"r{n}",
                created_by="t",
            )
            await metrics.record(float(n), 5, [("web", "web.1", 1.0, 100)], [], None)
            await store.update_config(app, {"N": str(n)})
        assert [r.version for r in await store.releases(app)] == [5, 4, 3, 2, 1]
    finally:
        await metrics.close()
        await store.close()


async def test_a_busy_database_is_waited_out_not_reported(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """BEGIN IMMEDIATE that SQLite refuses at once (a stale snapshot) is tried again."""
    import sqlite3

    db = store.db
    real = db.execute
    refusals = 2

    def execute(sql: str, *args: object):  # type: ignore[no-untyped-def]
        nonlocal refusals
        if sql == "BEGIN IMMEDIATE" and refusals:
            refusals -= 1

            async def refused() -> None:
                raise sqlite3.OperationalError("database is locked")

            return refused()
        return real(sql, *args)

    db.execute = execute  # type: ignore[method-assign]
    try:
        app = await store.create_app("busy")
    finally:
        db.execute = real  # type: ignore[method-assign]
    assert refusals == 0
    assert (await store.app("busy")).id == app.id
    assert "database is busy" in caplog.text


async def test_a_write_cancelled_while_it_waits_for_the_lock_leaves_no_transaction(
    store: Store,
) -> None:
    """A write cancelled while its BEGIN waits for another writer (the metrics connection):
    the BEGIN still runs in aiosqlite's thread once the lock is free; the transaction it
    opens must end there, or every later write fails."""
    import asyncio
    import sqlite3

    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        task = asyncio.ensure_future(store.create_app("cancelled"))
        for _ in range(20):  # let it reach its BEGIN, now blocked in aiosqlite's thread
            await asyncio.sleep(0)
        assert not task.done()
        task.cancel()
        other.execute("ROLLBACK")  # the lock is free: the queued BEGIN runs now
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        other.close()
    await store.create_app("after")  # failed: "cannot start a transaction within a transaction"
    assert not store.db.in_transaction
    assert [a.name for a in await store.apps()] == ["after"]


async def test_a_rolling_dyno_is_recorded_next_to_the_one_it_replaces(store: Store) -> None:
    """Mid-deploy the new web.1 runs beside the old web.1: both are recorded, by pid."""
    app = await store.create_app("web")

    def record(pid: int, release: int, started_at: float) -> dict[str, object]:
        return {"name": "web.1", "process_type": "web", "release": release, "pid": pid,
                "start_ticks": pid * 10, "port": 5000 + pid, "started_at": started_at,
                "restarts": 0}

    old, new = record(101, 1, 1000.0), record(102, 2, 1010.0)
    await store.replace_dynos("web", [new, old])
    assert await store.dyno_records(app) == [old, new]  # by name, then oldest first
    await store.replace_dynos("web", [new])  # the old one retired
    assert await store.dyno_records(app) == [new]


async def test_dynos_recorded_before_the_pid_key_survive_the_migration(tmp_path: Path) -> None:
    import sqlite3

    s = Store(tmp_path / "old.db")
    await s.open()
    app = await s.create_app("web")
    await s.close()
    db = sqlite3.connect(tmp_path / "old.db")
    with db:  # the table as migrations 0001-0004 left it, with one record and one without pid
        db.execute("DELETE FROM schema_migrations WHERE version = 5")
        db.execute("DROP TABLE dynos")
        db.execute(
            "CREATE TABLE dynos (app_id INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,"
            " name TEXT NOT NULL, process_type TEXT NOT NULL, release INTEGER NOT NULL,"
            " pid INTEGER, port INTEGER, started_at REAL, state TEXT NOT NULL,"
            " start_ticks INTEGER, restarts INTEGER NOT NULL DEFAULT 0,"
            " PRIMARY KEY (app_id, name))"
        )
        db.execute(
            "INSERT INTO dynos VALUES (?, 'web.1', 'web', 3, 77, 5001, 1.5, 'running', 770, 2)",
            (app.id,),
        )
        db.execute("INSERT INTO dynos VALUES (?, 'worker.1', 'worker', 3, NULL, NULL, NULL,"
                   " 'running', NULL, 0)", (app.id,))
    db.close()
    s = Store(tmp_path / "old.db")
    await s.open()
    try:
        assert await s.dyno_records(app) == [
            {"name": "web.1", "process_type": "web", "release": 3, "pid": 77, "start_ticks": 770,
             "port": 5001, "started_at": 1.5, "restarts": 2}
        ]
    finally:
        await s.close()


async def test_sizes_are_set_cleared_and_leave_quantities_alone(store: Store) -> None:
    app = await store.create_app("web")
    await store.set_formation(app, {"web": 2, "worker": 1})
    assert await store.sizes(app) == {}  # no size: no memory quota
    assert await store.set_sizes(app, {"web": "standard-2x", "worker": "512M"}) == {
        "web": "standard-2x",
        "worker": "512M",
    }
    assert await store.set_sizes(app, {"worker": None}) == {"web": "standard-2x"}
    assert await store.formation(app) == {"web": 2, "worker": 1}


async def test_formation_before_sizes_survives_the_migration(tmp_path: Path) -> None:
    import sqlite3

    s = Store(tmp_path / "old.db")
    await s.open()
    app = await s.create_app("web")
    await s.set_formation(app, {"web": 3})
    await s.close()
    db = sqlite3.connect(tmp_path / "old.db")
    with db:  # the table as migrations 0001-0005 left it
        db.execute("DELETE FROM schema_migrations WHERE version = 6")
        db.execute("ALTER TABLE formation DROP COLUMN size")
    db.close()
    s = Store(tmp_path / "old.db")
    await s.open()
    try:
        assert await s.formation(app) == {"web": 3}
        assert await s.sizes(app) == {}  # existing apps keep running without a quota
        assert await s.set_sizes(app, {"web": "1G"}) == {"web": "1G"}
    finally:
        await s.close()


async def test_end_interrupted_fails_what_never_went_live(store: Store) -> None:
    """What a killed server left 'pending': builds fail with the reason; a release that had been
    switched to (it is current) succeeded; any other failed. Finished ones stay as they were."""
    app = await store.create_app("halfway")
    other = await store.create_app("other")
    done = await store.create_build(app, "a" * 40)
    await store.finish_build(done, status="succeeded", log="ok", buildpacks=[], slug="/s")
    cut = await store.create_build(app, "b" * 40)
    kwargs = {
        "build_id": None,
        "sha": "a" * 40,
        "slug": "/s",
        "static_root": None,
        "config": {},
        "process_types": {"web": "x"},
        "created_by": "t",
    }
    live = await store.create_release(app, description="Deploy a", **kwargs)  # type: ignore[arg-type]
    await store.set_current_release(app, live.version)  # switched to, status not yet written
    never = await store.create_release(other, description="Deploy b", **kwargs)  # type: ignore[arg-type]

    ended = await store.end_interrupted(" !     stopped")
    assert ended == [("halfway", "build", cut.id), ("other", "release", never.version)]
    statuses = {b.id: b.status for b in await store.builds(app)}
    assert statuses == {done.id: "succeeded", cut.id: "failed"}
    assert (await store.build(app, cut.id)).log == " !     stopped"
    assert (await store.build(app, done.id)).log == "ok"
    assert (await store.release(app, live.version)).status == "succeeded"
    assert (await store.release(other, never.version)).status == "failed"
    assert await store.end_interrupted("again") == []


async def test_dynos_recorded_as_the_app_is_deleted(store: Store) -> None:
    """The supervisor reports an app's dynos (a background write) while `apps:destroy` deletes
    the app: the write read the app's id before its transaction and then inserted rows for the
    deleted app (FOREIGN KEY constraint failed, in a task nobody awaited)."""
    import asyncio

    await store.create_app("gone")
    row = {"name": "web.1", "process_type": "web", "release": 1, "pid": 7, "start_ticks": 70,
           "port": 5007, "started_at": 1.0, "restarts": 0}
    write = asyncio.create_task(store.replace_dynos("gone", [row]))
    await asyncio.sleep(0)  # the write has started
    await store.delete_app("gone")
    await write  # raised IntegrityError
    assert [a.name for a in await store.apps()] == []


async def test_two_adds_of_one_name_at_once(store: Store) -> None:
    """Two `apps:create` (or `domains:add`, `keys:add`) of one name at once: both passed the
    check made before the transaction and the second failed on the UNIQUE constraint, an
    IntegrityError the API answered 500. One wins, the other is told it exists (409)."""
    import asyncio

    async def both(make: Callable[[], Awaitable[object]]) -> list[object]:
        first = asyncio.create_task(make())
        await asyncio.sleep(0)  # the first has started
        return list(await asyncio.gather(first, make(), return_exceptions=True))

    apps = await both(lambda: store.create_app("twin"))
    assert sum(isinstance(r, Conflict) for r in apps) == 1, apps
    assert [a.name for a in await store.apps()] == ["twin"]
    app = await store.app("twin")
    domains = await both(lambda: store.add_domain(app, "twin.example.com"))
    assert sum(isinstance(r, Conflict) for r in domains) == 1, domains
    keys = await both(lambda: store.add_key("laptop", "SHA256:x", "ssh-ed25519 AAAA"))
    assert sum(isinstance(r, Conflict) for r in keys) == 1, keys
