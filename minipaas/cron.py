"""Cron schedules for app.json `cron` jobs: parsing and "when next" (pure).

Five fields (minute hour day-of-month month day-of-week) with `*`, numbers, lists, ranges and
`/step`, plus month and weekday names, or a shorthand (`@hourly`, `@daily`, `@weekly`, ...);
like Vixie cron, when both day fields are restricted a day matches if either does. Times are UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from minipaas.errors import UserError
from minipaas.names import shown

FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
#: The most days each month can have (February: leap years).
MONTH_DAYS = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}
NAMES = {
    3: {
        m: i
        for i, m in enumerate(
            ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
        )
    },
    4: {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
}


@dataclass(frozen=True)
class Schedule:
    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool

    def matches(self, when: datetime) -> bool:
        return (
            when.minute in self.minutes
            and when.hour in self.hours
            and when.month in self.months
            and self._day_ok(when)
        )

    def next_after(self, when: datetime) -> datetime:
        """The first matching minute strictly after `when` (within 5 years)."""
        t = when.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = t + timedelta(days=366 * 5)
        while t < limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
                continue
            if not self._day_ok(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            if t.minute not in self.minutes:
                t += timedelta(minutes=1)
                continue
            return t
        raise UserError(f"The cron schedule {self.text!r} never runs.")

    def _day_ok(self, t: datetime) -> bool:
        day_ok = t.day in self.days
        weekday_ok = (t.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return day_ok or weekday_ok
        return day_ok and weekday_ok


def _is_number(token: str) -> bool:
    # ASCII digits only: `str.isdigit` is also true for "²", which `int` refuses. Any valid
    # field value has at most two digits, and `int` refuses numbers past 4,300 digits.
    return token.isascii() and token.isdigit() and len(token) <= 9


def _field(text: str, index: int, schedule: str) -> tuple[frozenset[int], bool]:
    name, low, high = FIELDS[index]
    values: set[int] = set()
    bad = UserError(
        f"Invalid cron schedule {shown(schedule)}: the {name} field {shown(text, 30)} is not valid "
        f"(use *, numbers {low}-{high}, lists, ranges and /steps)."
    )

    def number(token: str) -> int:
        token = token.lower()
        if index in NAMES and token in NAMES[index]:
            return NAMES[index][token]
        if not _is_number(token):
            raise bad
        value = int(token)
        if not low <= value <= high:
            raise bad
        return value

    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not _is_number(step_text) or int(step_text) == 0:
                raise bad
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            start, end = number(a), number(b)
            if start > end:
                raise bad
        else:
            start = number(base)
            end = high if step_text else start
        values.update(range(start, end + 1, step))
    if index == 4 and 7 in values:  # both 0 and 7 mean Sunday
        values.discard(7)
        values.add(0)
    return frozenset(values), text != "*"


#: Vixie cron's shorthands (Dokku's cron docs use `@daily` in their first example).
SHORTHANDS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def parse(schedule: str) -> Schedule:
    """Parse a five-field cron schedule (or a shorthand such as `@daily`), or raise
    `UserError` naming the bad field."""
    parts = SHORTHANDS.get(schedule.strip().lower(), schedule).split()
    if len(parts) != 5:
        raise UserError(
            f"Invalid cron schedule {shown(schedule)}: use five fields "
            "(minute hour day month weekday), e.g. '*/5 * * * *', or one of "
            f"{', '.join(SHORTHANDS)}."
        )
    fields = [_field(p, i, schedule) for i, p in enumerate(parts)]
    days, days_restricted = fields[2]
    months = fields[3][0]
    # With a weekday restriction too, a day runs when either matches, so only days alone can
    # name dates no month has (Vixie cron takes '0 0 30 2 *' and never runs it).
    if days_restricted and not fields[4][1] and min(days) > max(MONTH_DAYS[m] for m in months):
        raise UserError(
            f"The cron schedule {shown(schedule)} never runs: none of its months has "
            f"day {min(days)}."
        )
    return Schedule(
        text=schedule,
        minutes=fields[0][0],
        hours=fields[1][0],
        days=fields[2][0],
        months=fields[3][0],
        weekdays=fields[4][0],
        days_restricted=fields[2][1],
        weekdays_restricted=fields[4][1],
    )
