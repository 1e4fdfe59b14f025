"""`LogView`: a fast log tail with pause, search and a bounded memory.

Lines arrive through `feed()` (cheap: a list append, called by the stream worker for every
line) and reach the screen in batches on a 10 Hz timer, so 2,000 lines/s cost ~10 redraws a
second, not 2,000. Everything received is kept in a ring of `MAX_LINES`; search and resume
redraw from it. Must not touch: I/O (the screen owns the stream).
"""

from __future__ import annotations

import time
from collections import deque
from itertools import islice

from textual.widgets import Log

from tui.format import clean_line, compact_line
from tui.messages import LogStats

MAX_LINES = 10_000
FLUSH_EVERY = 0.1


def matches(line: str, search: str) -> bool:
    """Case-insensitive substring match; an empty search matches every line."""
    return not search or search.casefold() in line.casefold()


class LogView(Log):
    DEFAULT_CSS = """
    LogView { height: 1fr; border: none; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(max_lines=MAX_LINES, highlight=False, auto_scroll=True, id=id)
        self.ring: deque[str] = deque(maxlen=MAX_LINES)
        self._pending: list[str] = []
        self.search = ""
        self.paused = False
        self.received = 0
        self.shown = 0
        self.unseen = 0  # received while paused
        self._window: deque[tuple[float, int]] = deque()

    def on_mount(self) -> None:
        self.set_interval(FLUSH_EVERY, self.flush)

    def feed(self, line: str) -> None:
        self._pending.append(line)

    def flush(self) -> None:
        """Move pending lines into the ring and onto the screen (unless paused)."""
        now = time.monotonic()
        batch, self._pending = self._pending, []
        if batch:
            batch = [compact_line(clean_line(line)) for line in batch]
            self.ring.extend(batch)
            self.received += len(batch)
            self._window.append((now, len(batch)))
            if self.paused:
                self.unseen += len(batch)
            else:
                self._show(batch)
        while self._window and now - self._window[0][0] > 2.0:
            self._window.popleft()
        if batch or self._window:
            per_second = sum(n for _, n in self._window) / 2.0
            self.post_message(
                LogStats(self.received, self.shown, self.unseen, per_second, self.paused)
            )

    def _show(self, lines: list[str]) -> None:
        visible = [line for line in lines if matches(line, self.search)]
        if visible:
            full = self.line_count + len(visible) > MAX_LINES
            self.write_lines(visible)
            self.shown += len(visible)
            if full:
                # Textual's Log prunes the oldest lines but only repaints the rows it appended
                # (now past the end) and, already at the bottom, does not scroll: without this
                # the screen froze once MAX_LINES lines had been shown.
                self.refresh()

    def redraw(self) -> None:
        self.clear()
        self.shown = 0
        self.unseen = 0  # everything in the ring is drawn now
        self._show(list(self.ring))

    def set_search(self, search: str) -> None:
        self.search = search
        self.redraw()
        self.scroll_end(animate=False)

    def set_paused(self, paused: bool) -> None:
        if paused == self.paused:
            return
        self.paused = paused
        if not paused:
            # Append only what arrived during the pause: redrawing the whole ring (10,000
            # lines) made resuming take ~0.2 s under a 2,000 lines/s flood.
            missed, self.unseen = min(self.unseen, len(self.ring)), 0
            if missed:
                self._show(list(islice(self.ring, len(self.ring) - missed, None)))
            self.scroll_end(animate=False)
        self.post_message(LogStats(self.received, self.shown, self.unseen, 0.0, self.paused))

    def wipe(self) -> None:
        """Empty the view and forget what it held (`c`): a search or a resume afterwards
        redraws from the ring, so clearing only the screen brought the old lines back."""
        self.ring.clear()
        self.shown = self.unseen = 0
        self.clear()
        self.post_message(LogStats(self.received, self.shown, self.unseen, 0.0, self.paused))

    def reset(self) -> None:
        """Forget everything (the stream is about to restart with other filters)."""
        self._pending = []
        self.ring.clear()
        self.received = self.shown = self.unseen = 0
        self.clear()
