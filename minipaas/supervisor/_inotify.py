"""Wake-ups when files are written: one Linux inotify descriptor, read from the event loop.

Owns one inotify fd (ctypes: inotify_init1, inotify_add_watch, inotify_rm_watch), the watches on
it, and the parsing of `struct inotify_event` records. It must not read the watched files or
know what they are: a write (IN_MODIFY) calls the callback given for that file, nothing more.
In case an event is missed anyway, one timer calls every callback each `safety` seconds: one
wake-up for all the files, not one per file. A callback is also called when its watch ends
(the file is gone, `close()`), so a waiter never waits on a dead watch. The fd and the timer
go with the last watch: an idle owner holds nothing.

Where inotify is missing (not Linux, no libc symbol, out of instances or watches) `watch()`
returns None and the caller keeps polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import struct
from collections.abc import Callable
from pathlib import Path

IN_MODIFY = 0x00000002
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then `len` bytes of name)
#: Bytes read from the inotify fd at a time (a few thousand events).
READ_SIZE = 64 * 1024

Event = tuple[int, int, int, bytes]


def parse_events(buf: bytes) -> list[Event]:
    """`(wd, mask, cookie, name)` of each `struct inotify_event` in `buf` (a whole read)."""
    events: list[Event] = []
    at = 0
    while at + EVENT.size <= len(buf):
        wd, mask, cookie, size = EVENT.unpack_from(buf, at)
        at += EVENT.size
        name = buf[at : at + size].rstrip(b"\0")
        at += size
        events.append((wd, mask, cookie, name))
    return events


class _Libc:
    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.init1 = libc.inotify_init1
        self.init1.argtypes = [ctypes.c_int]
        self.init1.restype = ctypes.c_int
        self.add_watch = libc.inotify_add_watch
        self.add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.add_watch.restype = ctypes.c_int
        self.rm_watch = libc.inotify_rm_watch
        self.rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        self.rm_watch.restype = ctypes.c_int


class Watch:
    """One file being watched; `close()` (idempotent) removes the watch."""

    def __init__(self, owner: Inotify, wd: int) -> None:
        self._owner = owner
        self.wd = wd
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._owner._remove(self)


class Inotify:
    """Watches for writes to files; callbacks run on the event loop that created the fd."""

    def __init__(self, safety: float = 5.0) -> None:
        self.safety = safety
        self._timer: asyncio.TimerHandle | None = None
        self._libc: _Libc | None = None
        self._broken = False  # inotify is not available here: never try again
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watches: dict[int, tuple[Watch, Callable[[], None]]] = {}

    @property
    def active(self) -> bool:
        """Whether the inotify fd is open (it is only while something is watched)."""
        return self._fd >= 0

    def watch(self, path: Path, on_write: Callable[[], None]) -> Watch | None:
        """Call `on_write()` (soon, on the loop) after each write to `path`; None if impossible."""
        if self._broken:
            return None
        if not self._open():
            return None
        assert self._libc is not None
        wd = self._libc.add_watch(self._fd, os.fsencode(path), IN_MODIFY)
        if wd < 0:  # ENOSPC (out of watches), ENOENT...: this file is polled instead
            self._close_if_unused()
            return None
        watch = Watch(self, wd)
        previous = self._watches.get(wd)
        if previous is not None:  # the same inode watched twice: the kernel shares the wd
            previous[0].closed = True
        self._watches[wd] = (watch, on_write)
        return watch

    def close(self) -> None:
        """Drop every watch and the fd (their callbacks are called a last time)."""
        entries = list(self._watches.values())
        self._watches.clear()
        self._close_fd()
        for watch, on_write in entries:
            watch.closed = True
            on_write()

    # -- internals ---------------------------------------------------------------------------

    def _open(self) -> bool:
        loop = asyncio.get_running_loop()
        if self._fd >= 0 and self._loop is not loop:
            # A new event loop (tests): the old watches and their waiters are meaningless.
            for watch, _ in self._watches.values():
                watch.closed = True
            self._watches.clear()
            self._close_fd()
        if self._fd >= 0:
            return True
        try:
            if self._libc is None:
                self._libc = _Libc()
        except (OSError, AttributeError):
            self._broken = True
            return False
        fd = self._libc.init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            if ctypes.get_errno() not in (errno.EMFILE, errno.ENFILE, errno.ENOMEM):
                self._broken = True  # ENOSYS and friends: not coming back
            return False
        self._fd = fd
        self._loop = loop
        loop.add_reader(fd, self._readable)
        self._timer = loop.call_later(self.safety, self._sweep)
        return True

    def _sweep(self) -> None:
        assert self._loop is not None
        self._timer = self._loop.call_later(self.safety, self._sweep)
        for _, on_write in list(self._watches.values()):
            on_write()

    def _readable(self) -> None:
        # One read per call: the fd is level-triggered, so what is left calls again.
        try:
            buf = os.read(self._fd, READ_SIZE)
        except OSError:  # EAGAIN: nothing (left) to read
            return
        woken: set[int] = set()
        for wd, mask, _, _ in parse_events(buf):
            if mask & IN_Q_OVERFLOW:
                woken.update(self._watches)  # events were lost: wake everyone
            elif mask & IN_IGNORED:  # the file is gone: the kernel dropped the watch
                entry = self._watches.pop(wd, None)
                if entry is not None:
                    entry[0].closed = True
                    entry[1]()
            else:
                woken.add(wd)
        for wd in woken:
            entry = self._watches.get(wd)
            if entry is not None:
                entry[1]()
        self._close_if_unused()

    def _remove(self, watch: Watch) -> None:
        entry = self._watches.get(watch.wd)
        if entry is None or entry[0] is not watch:
            return
        del self._watches[watch.wd]
        if self._libc is not None and self._fd >= 0:
            self._libc.rm_watch(self._fd, watch.wd)  # EINVAL if the kernel dropped it already
        self._close_if_unused()

    def _close_if_unused(self) -> None:
        if not self._watches:
            self._close_fd()

    def _close_fd(self) -> None:
        if self._fd < 0:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = -1
        self._loop = None
