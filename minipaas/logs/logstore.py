"""Per-dyno log files under `<data-dir>/logs/<app>/`: append, rotate, merged tail and live follow.

Owns the files and the in-process subscribers that follow them. It never interprets what a line
says: a line is a timestamp, an app, a source (`app`, `router`, `build`, `release`, `minipaas`),
a dyno name and some text. It must not know how dynos run or where lines come from.

On disk there is one file per (source, dyno), e.g. `logs/myapp/app-web.1.log`, one record a
line: `2026-11-22T10:00:00.123456Z<TAB>text`. When a file passes `max_bytes` it becomes `.1`
(`.1` becomes `.2`, ...) and only `keep` rotated files are kept. Appends keep the file open and
write each call's lines with one `write`, so an app printing fast costs one syscall per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from minipaas.errors import UserError

#: App names as `minipaas.names` spells them (reserved names allowed: `minipaas` logs too).
APP = re.compile(r"[a-z][a-z0-9-]{0,29}")
SOURCES = frozenset({"app", "router", "build", "release", "minipaas"})
#: Dyno names: `web.1`, `release.1`, `router`... never `/`, never a leading dot.
DYNO = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")
#: A log file name: `<source>-<dyno>.log`, rotated ones with `.N` after it.
LOG_FILE = re.compile(r"(?P<source>[a-z]+)-(?P<dyno>.+?)\.log(?:\.\d+)?")
#: Open log files kept at most; the least recently used one is closed beyond this.
MAX_OPEN_FILES = 256
UTC_OFFSET = timedelta(0)
#: Lines buffered per follower before new ones are dropped (and counted).
FOLLOW_QUEUE = 10_000


@dataclass(frozen=True)
class LogLine:
    """One log line as shown to users."""

    ts: datetime
    app: str
    source: str
    dyno: str
    text: str

    def format(self) -> str:
        """Heroku style: `2026-11-22T10:00:00.123456+00:00 app[web.1]: text`."""
        stamp = self.ts.isoformat(timespec="microseconds")
        return f"{stamp} {self.source}[{self.dyno}]: {self.text}"


def check_names(app: str, source: str | None = None, dyno: str | None = None) -> None:
    """Raise `UserError` unless every given name is safe to use as part of a file name."""
    if not APP.fullmatch(app):
        raise UserError(f"Invalid app name {app!r} for logs.")
    if source is not None and source not in SOURCES:
        raise UserError(
            f"Invalid log source {source!r}: use one of {', '.join(sorted(SOURCES))}."
        )
    if dyno is not None and (not DYNO.fullmatch(dyno) or ".." in dyno):
        raise UserError(f"Invalid dyno name {dyno!r}: use letters, digits, dots and dashes.")


def _stamp(ts: datetime) -> str:
    if ts.utcoffset() != UTC_OFFSET:
        ts = ts.astimezone(UTC)
    return ts.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def dyno_matches(wanted: str | None, dyno: str) -> bool:
    """Does `--dyno wanted` take the lines of `dyno`? None takes all; `web.1` that dyno; `web`
    (no dot: a process type, as on Heroku) every `web.N` and a dyno named just `web`."""
    if wanted is None or wanted == dyno:
        return True
    return "." not in wanted and dyno.startswith(wanted + ".")


def _parse(app: str, source: str, dyno: str, raw: bytes) -> LogLine | None:
    stamp, sep, text = raw.decode("utf-8", "replace").partition("\t")
    if not sep:
        return None
    try:
        ts = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return LogLine(ts=ts, app=app, source=source, dyno=dyno, text=text)


def _last_lines(path: Path, n: int, block: int = 65536) -> list[bytes]:
    """The last `n` complete lines of `path` (without newlines), reading from the end."""
    if n <= 0:
        return []
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return []
    with f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        data = b""
        while pos > 0 and data.count(b"\n") <= n:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        lines.pop()  # a partial last line (a writer mid-way) is not a line yet
    if pos > 0:
        lines = lines[1:]  # the first piece may be the tail of an earlier line
    return lines[-n:]


@dataclass(eq=False)
class _Follower:
    app: str
    source: str | None
    dyno: str | None
    queue: asyncio.Queue[LogLine | None] = field(
        default_factory=lambda: asyncio.Queue(FOLLOW_QUEUE)
    )
    dropped: int = 0

    def wants(self, source: str, dyno: str) -> bool:
        return (self.source is None or self.source == source) and dyno_matches(self.dyno, dyno)


class LogStore:
    """The log files of every app under `root` (normally `Paths.logs`)."""

    def __init__(self, root: Path, max_bytes: int = 10 * 2**20, keep: int = 3) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.keep = keep
        self._files: OrderedDict[tuple[str, str, str], BinaryIO] = OrderedDict()
        self._followers: dict[str, set[_Follower]] = {}
        #: Set by `end_follows`: the server is stopping, new follows end at once.
        self.follows_ended = False

    def _path(self, app: str, source: str, dyno: str) -> Path:
        return self.root / app / f"{source}-{dyno}.log"

    # -- writing -------------------------------------------------------------------------------

    def append(
        self, app: str, source: str, dyno: str, text: str, ts: datetime | None = None
    ) -> None:
        """Append one line (a `text` with newlines becomes several lines with the same time)."""
        self.append_many(app, source, dyno, text.split("\n"), ts)

    def append_many(
        self,
        app: str,
        source: str,
        dyno: str,
        texts: Iterable[str],
        ts: datetime | None = None,
    ) -> None:
        """Append several lines with one write (used by pipe readers for each chunk read)."""
        self._check(app, source, dyno)
        when = ts if ts is not None else datetime.now(UTC)
        stamp = _stamp(when)
        flat = [piece for text in texts for piece in text.split("\n")]
        if flat:
            data = "".join(f"{stamp}\t{text}\n" for text in flat)
            self._write(app, source, dyno, data, lambda: ((when, text) for text in flat))

    def append_timed(
        self, app: str, source: str, dyno: str, entries: Iterable[tuple[datetime, str]]
    ) -> None:
        """Append lines that each have their own time (router lines) with one write."""
        self._check(app, source, dyno)
        timed = [(when, piece) for when, text in entries for piece in text.split("\n")]
        if timed:
            data = "".join(f"{_stamp(when)}\t{text}\n" for when, text in timed)
            self._write(app, source, dyno, data, lambda: timed)

    def _check(self, app: str, source: str, dyno: str) -> None:
        if (app, source, dyno) not in self._files:  # names already checked when it was opened
            check_names(app, source, dyno)

    def _write(
        self,
        app: str,
        source: str,
        dyno: str,
        data: str,
        timed: Callable[[], Iterable[tuple[datetime, str]]],
    ) -> None:
        """One write of `data`; `timed()` gives its lines to followers, if there are any."""
        f = self._open(app, source, dyno)
        f.write(data.encode("utf-8", "replace"))
        f.flush()
        if f.tell() >= self.max_bytes:
            self._rotate(app, source, dyno)
        followers = self._followers.get(app)
        if followers:
            lines = [LogLine(when, app, source, dyno, text) for when, text in timed()]
            for follower in followers:
                if follower.wants(source, dyno):
                    for line in lines:
                        try:
                            follower.queue.put_nowait(line)
                        except asyncio.QueueFull:
                            follower.dropped += 1

    def _open(self, app: str, source: str, dyno: str) -> BinaryIO:
        key = (app, source, dyno)
        f = self._files.get(key)
        if f is not None:
            self._files.move_to_end(key)
            return f
        path = self._path(app, source, dyno)
        path.parent.mkdir(parents=True, exist_ok=True)
        f = path.open("ab")
        self._files[key] = f
        while len(self._files) > MAX_OPEN_FILES:
            _, oldest = self._files.popitem(last=False)
            oldest.close()
        return f

    def _rotate(self, app: str, source: str, dyno: str) -> None:
        f = self._files.pop((app, source, dyno))
        f.close()
        path = self._path(app, source, dyno)
        if self.keep <= 0:
            path.unlink()
            return
        _rolled(path, self.keep).unlink(missing_ok=True)
        for i in range(self.keep - 1, 0, -1):
            older = _rolled(path, i)
            if older.exists():
                older.rename(_rolled(path, i + 1))
        path.rename(_rolled(path, 1))

    def close(self) -> None:
        """Close every open file (on shutdown); later appends reopen them."""
        for f in self._files.values():
            f.close()
        self._files.clear()

    def remove_app(self, app: str) -> None:
        """Delete the app's logs and end its followers."""
        check_names(app)
        for key in [k for k in self._files if k[0] == app]:
            self._files.pop(key).close()
        _end(self._followers.pop(app, set()))
        shutil.rmtree(self.root / app, ignore_errors=True)

    def rename_app(self, old: str, new: str) -> None:
        """`apps:rename`: the app's files and followers (`logs --tail`, drains) carry on under
        `new`; its lines so far are kept (see `move_app_logs`)."""
        check_names(old)
        check_names(new)
        for key in [k for k in self._files if k[0] in (old, new)]:
            self._files.pop(key).close()  # (`new`'s: its files may be replaced by the move)
        moved = self._followers.pop(old, set())
        if moved:
            self._followers.setdefault(new, set()).update(moved)
        move_app_logs(self.root / old, self.root / new)

    def end_follows(self) -> None:
        """End every `follow`, and those started later at once (the server is stopping: its
        streams must not hold it up)."""
        self.follows_ended = True
        for followers in self._followers.values():
            _end(followers)

    # -- reading -------------------------------------------------------------------------------

    def _streams(self, app: str, source: str | None, dyno: str | None) -> list[tuple[str, str]]:
        directory = self.root / app
        if not directory.is_dir():
            return []
        found = set()
        for entry in directory.iterdir():
            match = LOG_FILE.fullmatch(entry.name)
            if match is None or match["source"] not in SOURCES:
                continue
            src, dyn = match["source"], match["dyno"]
            if (source is None or source == src) and dyno_matches(dyno, dyn):
                found.add((src, dyn))
        return sorted(found)

    def tail(
        self, app: str, n: int = 100, source: str | None = None, dyno: str | None = None
    ) -> list[LogLine]:
        """The last `n` lines of the app, merged in time order across sources and dynos."""
        check_names(app, source, dyno)
        merged: list[LogLine] = []
        for src, dyn in self._streams(app, source, dyno):
            path = self._path(app, src, dyn)
            chunks: list[list[bytes]] = []
            wanted = n
            for i in range(self.keep + 1):
                got = _last_lines(_rolled(path, i), wanted)
                chunks.append(got)
                wanted -= len(got)
                if wanted <= 0:
                    break
            for chunk in reversed(chunks):
                for raw in chunk:
                    line = _parse(app, src, dyn, raw)
                    if line is not None:
                        merged.append(line)
        merged.sort(key=lambda line: line.ts)  # stable: order within a file is kept
        return merged[-n:] if n > 0 else []

    def matching_since(
        self, app: str, since: datetime, markers: tuple[bytes, ...], source: str | None = None
    ) -> list[LogLine]:
        """Every line of the app written from `since` on, rolled files too, that holds one of
        `markers` (a cheap byte test before a line is parsed). Reads whole files: blocking,
        call it from a worker thread."""
        check_names(app, source)
        found: list[LogLine] = []
        for src, dyn in self._streams(app, source, None):
            path = self._path(app, src, dyn)
            for i in range(self.keep, -1, -1):  # oldest first
                try:
                    data = _rolled(path, i).read_bytes()
                except OSError:
                    continue
                for raw in data.split(b"\n"):
                    if any(m in raw for m in markers):
                        line = _parse(app, src, dyn, raw)
                        if line is not None and line.ts >= since:
                            found.append(line)
        found.sort(key=lambda line: line.ts)
        return found

    async def follow(
        self,
        app: str,
        source: str | None = None,
        dyno: str | None = None,
        *,
        idle: float | None = None,
        subscribed: Callable[[], None] | None = None,
    ) -> AsyncGenerator[LogLine | None, None]:
        """`follow_batches`, one line at a time."""
        batches = self.follow_batches(app, source, dyno, idle=idle, subscribed=subscribed)
        async with contextlib.aclosing(batches):  # closing this closes it: unsubscribed at once
            async for batch in batches:
                if batch is None:
                    yield None
                else:
                    for line in batch:
                        yield line

    async def follow_batches(
        self,
        app: str,
        source: str | None = None,
        dyno: str | None = None,
        *,
        idle: float | None = None,
        subscribed: Callable[[], None] | None = None,
    ) -> AsyncGenerator[list[LogLine] | None, None]:
        """Lines appended after the first `__anext__`, as they come, in the batches they
        arrived in by the time the caller asks (a flood costs one step per batch, not per
        line), until the caller stops iterating; `subscribed` is called as soon as lines are
        being caught.

        A follower that falls more than `FOLLOW_QUEUE` lines behind loses lines; it is told
        how many with a `minipaas` line instead of slowing the writers down. With `idle`, a
        None comes after each `idle` seconds without a line (a stream's heartbeat).
        """
        check_names(app, source, dyno)
        if self.follows_ended:
            return
        follower = _Follower(app, source, dyno)
        self._followers.setdefault(app, set()).add(follower)
        if subscribed is not None:
            subscribed()
        queue = follower.queue
        try:
            while True:
                if follower.dropped and queue.empty():
                    # The gap is after everything queued: say so where it happened.
                    skipped, follower.dropped = follower.dropped, 0
                    yield [
                        LogLine(
                            datetime.now(UTC), app, "minipaas", "minipaas",
                            f"{skipped} log lines skipped: the reader fell behind",
                        )
                    ]
                if idle is None or not queue.empty():
                    line = await queue.get()  # no timer per line while lines flow
                else:
                    try:
                        # wait_for hands over a line that arrives as the time runs out
                        line = await asyncio.wait_for(queue.get(), idle)
                    except TimeoutError:
                        yield None
                        continue
                batch: list[LogLine] = []
                while line is not None:
                    batch.append(line)
                    if queue.empty():
                        break
                    line = queue.get_nowait()
                if batch:
                    yield batch
                if line is None:
                    return
        finally:
            subscribers = self._followers.get(app)
            if subscribers is not None:
                subscribers.discard(follower)
                if not subscribers:
                    del self._followers[app]


def _rolled(path: Path, i: int) -> Path:
    """A stream's file `i` rotations ago: `path` itself for 0, then `path.1`, `path.2`, …"""
    return path if i == 0 else path.with_name(f"{path.name}.{i}")


def move_app_logs(src: Path, dst: Path) -> None:
    """Move an app's log dir `src` to `dst` (blocking; nothing if `src` is gone). Should lines
    have been written under either name after the bulk of them moved (the router's and the
    dynos' while a rename was under way), both exist: a file found in both becomes one, the
    one whose first line is older first, so no line is lost and the order holds."""
    if not src.is_dir():
        return
    if not dst.exists():
        os.rename(src, dst)
        return
    for entry in sorted(src.iterdir()):
        target = dst / entry.name
        if target.is_file() and entry.is_file():
            older, newer = (entry, target) if _first_stamp(entry) <= _first_stamp(target) else (
                target, entry)
            with older.open("ab") as out, newer.open("rb") as lines:
                shutil.copyfileobj(lines, out)
            os.replace(older, target)
            entry.unlink(missing_ok=True)
        else:
            os.replace(entry, target)
    with contextlib.suppress(OSError):
        src.rmdir()


def _first_stamp(path: Path) -> bytes:
    """The timestamp of the file's first line (ISO 8601, so bytes order is time order)."""
    with path.open("rb") as lines:
        return lines.readline().partition(b"\t")[0]


def _end(followers: set[_Follower]) -> None:
    """Wake each follower with the end mark (made room for: it never waits for a slow one)."""
    for follower in followers:
        while follower.queue.full():
            follower.queue.get_nowait()
        follower.queue.put_nowait(None)
