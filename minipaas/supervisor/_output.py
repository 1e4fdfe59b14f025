"""A dyno's raw output file, read from a persisted offset, freed as it is consumed.

Owns three files in a dyno's home directory: `out` (the dyno's stdout+stderr, opened O_APPEND by
the dyno itself, so it keeps writing whether or not the server runs), `offset` (how many bytes
of `out` already reached the logs, as 20 decimal digits rewritten in place with one pwrite) and
nothing else. It must not know about apps, log formats or processes: `read_batch` hands decoded
lines to a callback.

Why not a pipe: a pipe dies with its reader, and the dyno's next write would then fail. Why the
file does not fill the disk: consumed whole blocks are deallocated with
fallocate(PUNCH_HOLE | KEEP_SIZE), which never moves the end of the file, so the dyno's
concurrent appends are never lost; the apparent size keeps growing (a sparse file), the disk use
does not. Only complete lines are consumed (overlong ones are cut at MAX_LINE), so the offset is
always at a line boundary and a restarted reader resumes exactly there.

Crash window: the callback (a log append) happens before the offset is saved; a server killed
between those two syscalls shows that one batch twice after its restart, never loses it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Callable, Sequence
from pathlib import Path

#: Longest log line; longer output is cut into several lines (nothing is dropped).
MAX_LINE = 16 * 1024
#: Bytes read at a time.
READ_CHUNK = 1024 * 1024
#: Holes are punched in whole blocks once this much consumed data can be freed.
PUNCH_MIN = 256 * 1024
BLOCK = 4096
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
OFFSET_WIDTH = 20


def split_output(buf: bytes) -> tuple[list[bytes], bytes]:
    """Complete lines of `buf` (overlong ones cut at MAX_LINE) and the unfinished rest."""
    *lines, rest = buf.split(b"\n")
    out: list[bytes] = []
    for line in lines:
        while len(line) > MAX_LINE:
            out.append(line[:MAX_LINE])
            line = line[MAX_LINE:]
        out.append(line)
    while len(rest) >= MAX_LINE:
        out.append(rest[:MAX_LINE])
        rest = rest[MAX_LINE:]
    return out, rest


def decode(lines: Sequence[bytes]) -> list[str]:
    return [line.decode("utf-8", "replace").removesuffix("\r") for line in lines]


class RawOutput:
    """The reading end of one dyno's `out` file (the dyno gets `open_for_writer()`)."""

    def __init__(self, home: Path) -> None:
        self.path = home / "out"
        self.offset_path = home / "offset"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._offset_fd = os.open(self.offset_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.offset = self._load_offset()
        self._rest = b""  # bytes after `offset` already read: an unfinished line
        self._punched = self.offset - self.offset % BLOCK  # punched before a restart, if at all
        self._fallocate: Callable[..., int] | None = None
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            fallocate = libc.fallocate
            fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
            fallocate.restype = ctypes.c_int
            self._fallocate = fallocate
        self.punch_error: str | None = None

    def open_for_writer(self) -> int:
        """A new O_APPEND descriptor for the dyno's stdout/stderr (the caller closes it)."""
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)

    def _load_offset(self) -> int:
        try:
            offset = int(os.pread(self._offset_fd, OFFSET_WIDTH + 1, 0).strip() or b"0")
        except ValueError:
            offset = 0
        size = os.fstat(self._fd).st_size
        return max(0, min(offset, size))

    def _save_offset(self) -> None:
        os.pwrite(self._offset_fd, b"%0*d\n" % (OFFSET_WIDTH, self.offset), 0)

    def pending(self) -> int:
        """Bytes written but not read yet."""
        return os.fstat(self._fd).st_size - self.offset - len(self._rest)

    def read_batch(self, emit: Callable[[list[str]], None], *, final: bool = False) -> int:
        """Hand the complete lines written since the last call to `emit`; bytes read.

        `final` (the writers are gone): an unfinished last line is emitted too.
        """
        start = self.offset + len(self._rest)
        # fstat first: a wake-up with nothing new costs no read (and no 1 MiB buffer).
        size = os.fstat(self._fd).st_size
        data = os.pread(self._fd, min(READ_CHUNK, size - start), start) if size > start else b""
        at_end = start + len(data) >= size
        if not data and not (final and self._rest):
            return 0
        buf = self._rest + data
        lines, rest = split_output(buf)
        if final and at_end and rest:
            lines.append(rest)
            rest = b""
        consumed = len(buf) - len(rest)
        self._rest = rest
        if lines:
            emit(decode(lines))
        if consumed:
            self.offset += consumed
            self._save_offset()
            self._punch(final)
        return len(data)

    def _punch(self, final: bool) -> None:
        end = self.offset - self.offset % BLOCK
        if self._fallocate is None or end <= self._punched:
            return
        if end - self._punched < PUNCH_MIN and not final:
            return
        mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
        if self._fallocate(self._fd, mode, self._punched, end - self._punched) != 0:
            errno = ctypes.get_errno()
            self.punch_error = os.strerror(errno)
            self._fallocate = None  # this file system cannot: the file grows, nothing is lost
            return
        self._punched = end

    def disk_usage(self) -> int:
        """Bytes the `out` file really occupies on disk."""
        return os.fstat(self._fd).st_blocks * 512

    def close(self) -> None:
        for fd in (self._fd, self._offset_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fd = self._offset_fd = -1
