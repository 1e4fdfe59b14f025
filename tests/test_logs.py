"""LogStore: files per (source, dyno), rotation, merged tail, follow, name checks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from minipaas.errors import UserError
from minipaas.logs import LogLine, LogStore

T0 = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)


def test_format_is_heroku_style() -> None:
    line = LogLine(T0.replace(microsecond=123456), "shop", "app", "web.1", "hello")
    assert line.format() == "2026-11-22T10:00:00.123456+00:00 app[web.1]: hello"
    assert (
        LogLine(T0, "shop", "router", "router", "x")
        .format()
        .startswith("2026-11-22T10:00:00.000000+00:00 router[router]: ")
    )


def test_files_per_source_and_dyno(tmp_path: Path) -> None:
    logs = LogStore(tmp_path)
    logs.append("shop", "app", "web.1", "a", ts=T0)
    logs.append("shop", "minipaas", "web.1", "b", ts=T0)
    logs.close()
    files = sorted(p.name for p in (tmp_path / "shop").iterdir())
    assert files == ["app-web.1.log", "minipaas-web.1.log"]
    assert (tmp_path / "shop" / "app-web.1.log").read_text() == "2026-11-22T10:00:00.000000Z\ta\n"


def test_tail_merges_sources_in_time_order(tmp_path: Path) -> None:
    logs = LogStore(tmp_path)
    plan = [
        ("app", "web.1", 0),
        ("router", "router", 1),
        ("app", "worker.1", 2),
        ("app", "web.1", 3),
        ("minipaas", "web.1", 4),
        ("router", "router", 5),
    ]
    for source, dyno, sec in plan:
        logs.append("shop", source, dyno, f"line {sec}", ts=T0 + timedelta(seconds=sec))
    logs.append("other", "app", "web.1", "not mine", ts=T0)
    assert [line.text for line in logs.tail("shop")] == [f"line {i}" for i in range(6)]
    assert [line.text for line in logs.tail("shop", n=2)] == ["line 4", "line 5"]
    assert [line.text for line in logs.tail("shop", source="app")] == ["line 0", "line 2", "line 3"]
    assert [line.text for line in logs.tail("shop", dyno="web.1")] == ["line 0", "line 3", "line 4"]
    last = logs.tail("shop", n=1)[0]
    assert (last.app, last.source, last.dyno, last.ts) == (
        "shop",
        "router",
        "router",
        T0 + timedelta(seconds=5),
    )
    assert logs.tail("nothing-here") == []


def test_rotation_loses_nothing_within_kept_files(tmp_path: Path) -> None:
    logs = LogStore(tmp_path, max_bytes=4096, keep=3)
    for i in range(400):  # 39 bytes a line: 106 lines a file, 3 rotated files + the current one
        logs.append("shop", "app", "web.1", f"line {i:05d}")
    names = sorted(p.name for p in (tmp_path / "shop").iterdir())
    assert names == ["app-web.1.log", "app-web.1.log.1", "app-web.1.log.2", "app-web.1.log.3"]
    got = [line.text for line in logs.tail("shop", n=1000)]
    assert got == [f"line {i:05d}" for i in range(400)]
    assert [line.text for line in logs.tail("shop", n=150)] == [
        f"line {i:05d}" for i in range(250, 400)
    ]
    # Past `keep` rotations the oldest lines go, whole files at a time, and never more.
    for i in range(400, 1000):
        logs.append("shop", "app", "web.1", f"line {i:05d}")
    got = [line.text for line in logs.tail("shop", n=10_000)]
    assert got == [f"line {i:05d}" for i in range(1000 - len(got), 1000)]
    assert len(got) >= 3 * 106
    assert len(list((tmp_path / "shop").iterdir())) == 4


def test_text_with_newlines_tabs_and_odd_bytes(tmp_path: Path) -> None:
    logs = LogStore(tmp_path)
    logs.append("shop", "app", "web.1", "a\tb\nc")
    logs.append("shop", "app", "web.1", b"caf\xe9 \xff".decode("utf-8", "replace"))
    assert [line.text for line in logs.tail("shop")] == ["a\tb", "c", "caf\ufffd \ufffd"]
    # Bytes that are not UTF-8 in the file (someone else wrote them) do not break tail.
    with (tmp_path / "shop" / "app-web.1.log").open("ab") as f:
        f.write(b"2026-11-22T10:00:00.000000Z\t\xc3\x28 bad\n")
    assert logs.tail("shop", n=1)[0].text == "\ufffd( bad"


@pytest.mark.parametrize(
    ("app", "source", "dyno"),
    [
        ("shop", "app", "../x"),
        ("shop", "app", "a/b"),
        ("shop", "app", ".."),
        ("shop", "app", ".hidden"),
        ("shop", "../app", "web.1"),
        ("shop", "stdout", "web.1"),
        ("../shop", "app", "web.1"),
        ("Shop", "app", "web.1"),
        ("shop", "app", ""),
    ],
)
def test_names_that_could_escape_are_rejected(
    tmp_path: Path, app: str, source: str, dyno: str
) -> None:
    logs = LogStore(tmp_path / "logs")
    with pytest.raises(UserError):
        logs.append(app, source, dyno, "x")
    with pytest.raises(UserError):
        logs.tail(app, source=source, dyno=dyno)
    assert not (tmp_path / "x").exists()


async def test_follow_gets_new_lines_only(tmp_path: Path) -> None:
    logs = LogStore(tmp_path)
    logs.append("shop", "app", "web.1", "old")
    got: list[LogLine] = []

    async def reader() -> None:
        async for line in logs.follow("shop", source="app"):
            got.append(line)
            if len(got) == 2:
                return

    task = asyncio.create_task(reader())
    await asyncio.sleep(0)  # let the follower subscribe
    logs.append("shop", "minipaas", "web.1", "filtered out")
    logs.append("other", "app", "web.1", "other app")
    logs.append("shop", "app", "web.1", "new 1")
    logs.append("shop", "app", "worker.1", "new 2")
    await asyncio.wait_for(task, 5)
    assert [(line.dyno, line.text) for line in got] == [("web.1", "new 1"), ("worker.1", "new 2")]
    assert logs._followers == {}  # the follower unsubscribed when the loop ended


async def test_follow_ends_when_app_is_removed(tmp_path: Path) -> None:
    logs = LogStore(tmp_path)
    logs.append("shop", "app", "web.1", "x")

    async def drain() -> list[str]:
        return [line.text async for line in logs.follow("shop")]

    task = asyncio.create_task(drain())
    await asyncio.sleep(0)
    logs.append("shop", "app", "web.1", "y")
    logs.remove_app("shop")
    assert await asyncio.wait_for(task, 5) == ["y"]
    assert not (tmp_path / "shop").exists()
    assert logs.tail("shop") == []


async def test_follow_with_idle_beats_while_quiet_and_ends_when_the_server_stops(
    tmp_path: Path,
) -> None:
    logs = LogStore(tmp_path)
    got: list[str | None] = []

    async def reader() -> None:
        async for line in logs.follow("shop", idle=0.05):
            got.append(None if line is None else line.text)
            if got.count(None) == 2 and "after" not in got:
                logs.append("shop", "app", "web.1", "after")
            if "after" in got and got[-1] is None:
                logs.end_follows()  # the server stops

    await asyncio.wait_for(reader(), 5)  # ends by itself
    assert got[:3] == [None, None, "after"] and set(got[3:]) <= {None}
    assert [line async for line in logs.follow("shop")] == []  # later follows end at once


async def test_slow_follower_is_told_about_skipped_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("minipaas.logs.logstore.FOLLOW_QUEUE", 3)
    logs = LogStore(tmp_path)
    stream = logs.follow("shop")
    first = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    for i in range(5):
        logs.append("shop", "app", "web.1", f"l{i}")
    assert (await first).text == "l0"
    texts = [(await anext(stream)).text for _ in range(3)]
    assert texts == ["l1", "l2", "2 log lines skipped: the reader fell behind"]
    logs.append("shop", "app", "web.1", "l5")
    assert (await anext(stream)).text == "l5"
    await stream.aclose()


async def test_timed_lines_keep_their_own_times_in_one_write(tmp_path: Path) -> None:
    """Router lines: each has the time Caddy logged it, and a batch is one write."""
    logs = LogStore(tmp_path)
    follower = logs.follow("shop", source="router")
    task = asyncio.ensure_future(anext(follower))
    await asyncio.sleep(0)  # let the follower subscribe
    entries = [(T0 + timedelta(seconds=n), f"status=200 n={n}") for n in range(3)]
    logs.append_timed("shop", "router", "router", entries)
    text = (tmp_path / "shop" / "router-router.log").read_text()
    assert text.splitlines() == [
        f"2026-11-22T10:00:0{n}.000000Z\tstatus=200 n={n}" for n in range(3)
    ]
    assert [(line.ts, line.text) for line in logs.tail("shop")] == entries
    first = await asyncio.wait_for(task, 5)
    assert (first.ts, first.text, first.dyno) == (T0, "status=200 n=0", "router")
    await follower.aclose()
    logs.append_timed("shop", "router", "router", [])  # nothing to write: no file touched
    logs.close()
