"""Messages that cross screens. High-rate ones coalesce (`can_replace`) so a flood never queues.

Owns: message types only. Must not touch: I/O or widgets.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message


@dataclass
class ConnectionChanged(Message):
    """The server became unreachable (`ok=False`, with the client's sentence) or came back."""

    ok: bool
    detail: str


@dataclass
class AppGone(Message):
    """The app a screen shows was deleted on the server."""

    app: str


@dataclass
class LogStats(Message):
    """Counters of the log view, posted on every flush; only the newest one matters."""

    received: int
    shown: int
    pending: int
    per_second: float
    paused: bool

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LogStats)
