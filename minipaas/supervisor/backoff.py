"""The restart policy for dynos that exit on their own: a pure function of (exit history, now).

Owns only the arithmetic: how long to wait before the next start and when a dyno counts as
crashed. It must not sleep, spawn or read clocks; the supervisor passes the history and `now`.

The rules, Heroku style: the first unexpected exit restarts at once; each further exit that
follows a short life (under `reset_after` seconds of uptime) doubles the wait, from `base` up to
`cap`; after `crash_after` short lives in a row the dyno is `crashed` and only tries again every
`cap` seconds, so a crash loop burns no CPU. A life of `reset_after` seconds or more forgets the
streak.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Run:
    """One life of a dyno: when it started, when it exited, and its exit status."""

    started: float
    exited: float
    status: int | None = None


@dataclass(frozen=True)
class BackoffPolicy:
    """The knobs of `decide` (seconds and counts)."""

    base: float = 1.0
    cap: float = 60.0
    reset_after: float = 60.0
    crash_after: int = 5


@dataclass(frozen=True)
class Decision:
    """Restart after `restart_after` seconds from now (None: nothing to restart)."""

    restart_after: float | None
    crashed: bool
    reason: str


def describe_status(status: int | None) -> str:
    """`status 3`, `signal 9` (negative statuses are signals), or `an unknown status`."""
    if status is None:
        return "an unknown status"
    if status < 0:
        return f"signal {-status}"
    return f"status {status}"


def streak(history: Sequence[Run], reset_after: float) -> int:
    """How many of the latest runs in a row were short lives (uptime under `reset_after`)."""
    count = 0
    for run in reversed(history):
        if run.exited - run.started >= reset_after:
            break
        count += 1
    return count


def delay_for(short_lives: int, policy: BackoffPolicy) -> float:
    """The wait after `short_lives` short lives in a row: 0, base, 2·base, 4·base … cap."""
    if short_lives <= 1:
        return 0.0
    return min(policy.cap, policy.base * 2.0 ** (short_lives - 2))


def decide(history: Sequence[Run], now: float, policy: BackoffPolicy | None = None) -> Decision:
    """What to do about a dyno whose latest run (the last item of `history`) has just ended."""
    policy = policy or BackoffPolicy()
    if not history:
        return Decision(None, False, "the dyno has not exited")
    last = history[-1]
    exited = f"exited with {describe_status(last.status)}"
    short = streak(history, policy.reset_after)
    if short >= policy.crash_after:
        wait = policy.cap
        crashed = True
        reason = (
            f"{exited}, {short} times in a row within {policy.reset_after:g} s of starting"
        )
    else:
        wait = delay_for(short, policy)
        crashed = False
        reason = exited
    return Decision(max(0.0, last.exited + wait - now), crashed, reason)
