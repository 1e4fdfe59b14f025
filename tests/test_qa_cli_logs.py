"""`logs --dyno TYPE`: every dyno of a process type, as Heroku's `heroku logs --dyno web` does
(it printed nothing: only an exact dyno name such as web.1 matched)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from minipaas.logs import LogLine, LogStore
from minipaas.logs.logstore import dyno_matches

T0 = datetime(2026, 12, 5, 10, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("wanted", "dyno", "taken"),
    [
        (None, "web.1", True),
        ("web.1", "web.1", True),
        ("web.1", "web.12", False),
        ("web", "web.1", True),
        ("web", "web.12", True),
        ("web", "worker.1", False),
        ("web", "webhook.1", False),
        ("web", "web", True),
        ("router", "router", True),
        ("run", "run.3", True),
        ("web.1", "web", False),
    ],
)
def test_dyno_matches(wanted: str | None, dyno: str, taken: bool) -> None:
    assert dyno_matches(wanted, dyno) is taken


def test_tail_of_a_process_type_takes_its_dynos(tmp_path: Path) -> None:
    logs = LogStore(tmp_path)
    for sec, (source, dyno) in enumerate(
        [
            ("app", "web.1"),
            ("app", "worker.1"),
            ("minipaas", "web.2"),
            ("app", "webhook.1"),
            ("router", "router"),
            ("app", "web.2"),
        ]
    ):
        logs.append("shop", source, dyno, f"{dyno} {sec}", ts=T0 + timedelta(seconds=sec))
    got = [line.text for line in logs.tail("shop", dyno="web")]
    assert got == ["web.1 0", "web.2 2", "web.2 5"]
    assert [line.text for line in logs.tail("shop", source="app", dyno="web")] == [
        "web.1 0",
        "web.2 5",
    ]
    assert [line.text for line in logs.tail("shop", dyno="web.2")] == ["web.2 2", "web.2 5"]


async def test_follow_of_a_process_type_takes_its_dynos(tmp_path: Path) -> None:
    logs = LogStore(tmp_path)
    got: list[LogLine] = []

    async def reader() -> None:
        async for line in logs.follow("shop", dyno="web"):
            got.append(line)
            if len(got) == 2:
                return

    task = asyncio.create_task(reader())
    await asyncio.sleep(0)  # let the follower subscribe
    logs.append("shop", "app", "worker.1", "filtered out")
    logs.append("shop", "app", "webhook.1", "filtered out too")
    logs.append("shop", "app", "web.3", "new 1")
    logs.append("shop", "minipaas", "web.1", "new 2")
    await asyncio.wait_for(task, 5)
    assert [(line.dyno, line.text) for line in got] == [("web.3", "new 1"), ("web.1", "new 2")]
