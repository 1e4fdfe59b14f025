"""A dyno's raw output file: resume at the saved offset, lines never twice nor lost, holes punched.

Pure file tests (no root needed) of `minipaas.supervisor._output.RawOutput`, plus the pump's
throughput on 100k lines into a real LogStore.
"""

from __future__ import annotations

import asyncio
import os
import struct
import threading
import time
from pathlib import Path

import pytest

from minipaas.logs import LogStore
from minipaas.supervisor._inotify import IN_MODIFY, Inotify, parse_events
from minipaas.supervisor._output import MAX_LINE, PUNCH_MIN, RawOutput


def collect(out: RawOutput, *, final: bool = False) -> list[str]:
    got: list[str] = []
    while out.read_batch(got.extend, final=final):
        pass
    if final:
        out.read_batch(got.extend, final=True)
    return got


def test_lines_resume_at_the_saved_offset(tmp_path: Path) -> None:
    out = RawOutput(tmp_path)
    fd = out.open_for_writer()
    os.write(fd, b"one\ntwo\nthr")
    assert collect(out) == ["one", "two"]
    assert int((tmp_path / "offset").read_text()) == 8  # a line boundary: "thr" is pending
    out.close()  # the server dies; the dyno keeps writing
    os.write(fd, b"ee\nfour\n")
    again = RawOutput(tmp_path)
    assert collect(again) == ["three", "four"]
    os.write(fd, b"no newline")
    assert collect(again) == []
    assert collect(again, final=True) == ["no newline"]
    os.close(fd)
    again.close()
    assert collect(RawOutput(tmp_path), final=True) == []


def test_odd_bytes_and_overlong_lines(tmp_path: Path) -> None:
    out = RawOutput(tmp_path)
    fd = out.open_for_writer()
    os.write(fd, b"caf\xe9 \xff\r\n" + b"x" * (MAX_LINE * 2 + 5) + b"\n")
    got = collect(out)
    assert got[0] == "caf\ufffd \ufffd"
    assert got[1:] == ["x" * MAX_LINE, "x" * MAX_LINE, "x" * 5]
    os.close(fd)
    out.close()


def test_consumed_blocks_are_freed_while_a_writer_appends(tmp_path: Path) -> None:
    """A writer thread appends 200k numbered lines while the reader consumes and punches holes."""
    out = RawOutput(tmp_path)
    fd = out.open_for_writer()
    total = 200_000

    def write() -> None:
        for start in range(0, total, 1000):
            os.write(fd, "".join(f"line {i:07d}\n" for i in range(start, start + 1000)).encode())

    writer = threading.Thread(target=write)
    writer.start()
    got: list[str] = []
    deadline = time.monotonic() + 30
    while len(got) < total and time.monotonic() < deadline:
        if not out.read_batch(got.extend):
            time.sleep(0.001)
    writer.join()
    assert got == [f"line {i:07d}" for i in range(total)]  # in order, none twice, none lost
    size = os.fstat(fd).st_size
    assert size == total * 13
    assert out.punch_error is None
    assert out.disk_usage() <= PUNCH_MIN + 2 * 4096, "consumed blocks were not freed"
    os.close(fd)
    out.close()


def test_pump_throughput_into_the_log_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    count = 100_000
    home = tmp_path / "home"
    home.mkdir()
    out = RawOutput(home)
    fd = out.open_for_writer()
    os.write(fd, "".join(f"flood line {i} some more text\n" for i in range(count)).encode())
    logs = LogStore(tmp_path / "logs", max_bytes=64 * 2**20)
    started = time.perf_counter()
    while out.read_batch(lambda texts: logs.append_many("shop", "app", "web.1", texts)):
        pass
    took = time.perf_counter() - started
    logged = logs.tail("shop", n=count + 1)
    assert len(logged) == count and logged[-1].text == f"flood line {count - 1} some more text"
    assert took < 1.0, f"the pump reads {count / took:,.0f} lines/s"
    with capsys.disabled():
        print(f"\npump: {count} lines file → LogStore in {took:.3f} s: {count / took:,.0f} lines/s")
    os.close(fd)
    out.close()
    logs.close()


def test_inotify_events_are_parsed() -> None:
    buf = (
        struct.pack("iIII", 3, IN_MODIFY, 0, 0)
        + struct.pack("iIII", 4, 0x100, 7, 8)
        + b"name\0\0\0\0"
    )
    assert parse_events(buf) == [(3, IN_MODIFY, 0, b""), (4, 0x100, 7, b"name")]
    assert parse_events(buf[:10]) == []


async def test_inotify_wakes_on_writes_and_closes_when_unused(tmp_path: Path) -> None:
    watcher = Inotify()
    woken = asyncio.Event()
    out = RawOutput(tmp_path)
    watch = watcher.watch(out.path, woken.set)
    assert watch is not None and watcher.active
    writer = out.open_for_writer()
    try:
        os.write(writer, b"hello\n")
        async with asyncio.timeout(5):
            await woken.wait()
        assert collect(out) == ["hello"]
        woken.clear()
        os.write(writer, b"again\n")
        async with asyncio.timeout(5):
            await woken.wait()
    finally:
        os.close(writer)
    watch.close()
    watch.close()  # idempotent
    assert not watcher.active
    out.close()
    gone = watcher.watch(tmp_path / "missing", woken.set)
    assert gone is None and not watcher.active


async def test_inotify_safety_sweep_and_the_end_of_a_watch_wake_the_waiter(
    tmp_path: Path,
) -> None:
    watcher = Inotify(safety=0.05)
    calls = 0

    def on_write() -> None:
        nonlocal calls
        calls += 1

    path = tmp_path / "out"
    path.write_bytes(b"")
    watch = watcher.watch(path, on_write)
    assert watch is not None
    async with asyncio.timeout(5):
        while calls < 2:  # nothing is written: only the sweep calls it
            await asyncio.sleep(0.01)
    path.unlink()  # the kernel drops the watch (IN_IGNORED): the waiter hears of it
    before = calls
    async with asyncio.timeout(5):
        while not watch.closed:
            await asyncio.sleep(0.01)
    assert calls > before and not watcher.active
