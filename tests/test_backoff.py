"""The restart policy, as tables: (lives as (uptime, status)..., now offset) → decision."""

from __future__ import annotations

import pytest

from minipaas.supervisor.backoff import (
    BackoffPolicy,
    Run,
    decide,
    delay_for,
    describe_status,
    streak,
)

POLICY = BackoffPolicy(base=1.0, cap=60.0, reset_after=60.0, crash_after=5)


def lives(*uptimes: float, status: int = 3, gap: float = 0.0) -> list[Run]:
    """Consecutive runs with the given uptimes, each starting `gap` s after the previous exit."""
    runs, t = [], 1000.0
    for uptime in uptimes:
        runs.append(Run(started=t, exited=t + uptime, status=status))
        t += uptime + gap
    return runs


@pytest.mark.parametrize(
    ("uptimes", "restart_after", "crashed"),
    [
        ((0.5,), 0.0, False),  # first crash: restart at once
        ((3600.0,), 0.0, False),  # long life: restart at once
        ((0.5, 0.5), 1.0, False),  # second quick exit: base
        ((0.5, 0.5, 0.5), 2.0, False),  # doubling
        ((0.5, 0.5, 0.5, 0.5), 4.0, False),
        ((0.5,) * 5, 60.0, True),  # 5 quick exits in a row: crashed, wait the cap
        ((0.5,) * 12, 60.0, True),  # stays crashed, never faster than the cap
        ((0.5, 0.5, 0.5, 0.5, 61.0), 0.0, False),  # a life over reset_after forgets the streak
        ((0.5,) * 4 + (61.0, 0.5), 0.0, False),  # a new streak starts at once...
        ((0.5,) * 4 + (61.0, 0.5, 0.5), 1.0, False),  # ...and doubles again
        ((59.9,) * 5, 60.0, True),  # "quick" means under reset_after
    ],
)
def test_decide_table(uptimes: tuple[float, ...], restart_after: float, crashed: bool) -> None:
    history = lives(*uptimes)
    decision = decide(history, now=history[-1].exited, policy=POLICY)
    assert decision.restart_after == restart_after
    assert decision.crashed is crashed
    assert "status 3" in decision.reason


@pytest.mark.parametrize(
    ("n", "delay"), [(0, 0.0), (1, 0.0), (2, 1.0), (3, 2.0), (8, 60.0), (30, 60.0)]
)
def test_delay_doubles_up_to_the_cap(n: int, delay: float) -> None:
    assert delay_for(n, POLICY) == delay


def test_restart_after_counts_from_now() -> None:
    history = lives(0.5, 0.5, 0.5)  # 2 s wait after the last exit
    assert decide(history, now=history[-1].exited + 0.5, policy=POLICY).restart_after == 1.5
    assert decide(history, now=history[-1].exited + 10, policy=POLICY).restart_after == 0.0


def test_crashed_reason_names_status_and_count() -> None:
    decision = decide(lives(*(0.1,) * 5, status=-9), now=2000.0, policy=POLICY)
    assert decision.crashed
    assert "signal 9" in decision.reason and "5 times" in decision.reason


def test_nothing_exited() -> None:
    assert decide([], now=0.0).restart_after is None


def test_helpers() -> None:
    assert streak(lives(100.0, 1.0, 1.0), 60.0) == 2
    assert describe_status(0) == "status 0"
    assert describe_status(None) == "an unknown status"
