"""Cron schedules: parsing tables and next-run computation."""

from __future__ import annotations

from datetime import datetime

import pytest

from minipaas import cron
from minipaas.errors import UserError

NOW = datetime(2026, 11, 22, 10, 3)  # a Sunday


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("* * * * *", datetime(2026, 11, 22, 10, 4)),
        ("*/5 * * * *", datetime(2026, 11, 22, 10, 5)),
        ("0 * * * *", datetime(2026, 11, 22, 11, 0)),
        ("30 2 * * *", datetime(2026, 11, 23, 2, 30)),
        ("30 2 * * mon", datetime(2026, 11, 23, 2, 30)),
        ("0 9 * * 1-5", datetime(2026, 11, 23, 9, 0)),
        ("0 0 1 jan *", datetime(2027, 1, 1, 0, 0)),
        ("0 0 29 2 *", datetime(2028, 2, 29, 0, 0)),
        ("15,45 10 * * *", datetime(2026, 11, 22, 10, 15)),
        ("0 12 * * 7", datetime(2026, 11, 22, 12, 0)),  # 7 is Sunday too
        ("0 0 1 * 3", datetime(2026, 11, 25, 0, 0)),  # day 1 OR Wednesday (both restricted)
        # Vixie shorthands: Dokku's cron docs open with `"schedule": "@daily"`, refused before
        ("@hourly", datetime(2026, 11, 22, 11, 0)),
        ("@daily", datetime(2026, 11, 23, 0, 0)),
        ("@Midnight", datetime(2026, 11, 23, 0, 0)),
        ("@weekly", datetime(2026, 11, 29, 0, 0)),
        ("@monthly", datetime(2026, 12, 1, 0, 0)),
        ("@yearly", datetime(2027, 1, 1, 0, 0)),
        ("@annually", datetime(2027, 1, 1, 0, 0)),
    ],
)
def test_next_after(schedule: str, expected: datetime) -> None:
    assert cron.parse(schedule).next_after(NOW) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "* * * *",
        "* * * * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "* * * * 8",
        "*/0 * * * *",
        "5-1 * * * *",
        "a * * * *",
        "* * * foo *",
        "-1 * * * *",
        "@reboot",
        "@every 5m",
    ],
)
def test_invalid_schedules_name_the_value(bad: str) -> None:
    with pytest.raises(UserError, match="Invalid cron schedule"):
        cron.parse(bad)


def test_impossible_schedules_are_refused_when_parsed() -> None:
    for schedule in ("0 0 31 2 *", "0 0 30,31 feb *", "0 0 31 apr,jun,sep,nov *"):
        with pytest.raises(UserError, match="never runs: none of its months has day"):
            cron.parse(schedule)
    # 31 exists in some month, Feb 29 in leap years, and with a weekday either may match
    for schedule in ("0 0 31 2,3 *", "0 0 29 2 *", "0 0 31 2 fri"):
        cron.parse(schedule).next_after(NOW)
