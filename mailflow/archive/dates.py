"""Dates in queries: absolute (YYYY, YYYY-MM, YYYY-MM-DD, with an optional THH:MM),
today, yesterday, now, ages (2w, 3d, 6M, 1y, 12h, 30m), and ranges ``A..B``.  A date
that cannot be read is a ``ValueError`` whose message is for the person who wrote it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from mailflow import timestamps

_AGE = re.compile(r"^(\d+)\s*(m|min|mins|minutes?|h|hours?|d|days?|w|weeks?|M|months?|"
                  r"y|years?)$")


DATE_HINT = ("use YYYY-MM-DD, YYYY-MM, YYYY, today, yesterday, now, or an age such as "
             "2w, 3d, 6M, 1y")


LATEST = datetime(9999, 12, 31, tzinfo=UTC)


EARLIEST = datetime(1, 1, 1, tzinfo=UTC)


def _months_before(when: datetime, months: int) -> datetime:
    total = when.year * 12 + (when.month - 1) - months
    year, month = divmod(total, 12)
    day = min(when.day, 28)  # the same day-of-month may not exist; close enough for an age
    return when.replace(year=year, month=month + 1, day=day)


def _point(text: str) -> tuple[datetime, datetime]:
    """The period a date expression names: [start, end)."""
    now = timestamps.now()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    lowered = text.lower()
    if lowered == "now":
        return now, now
    if lowered == "today":
        return today, today + timedelta(days=1)
    if lowered == "yesterday":
        return today - timedelta(days=1), today
    age = _AGE.match(text)
    if age:
        n, unit = int(age.group(1)), age.group(2)
        if unit == "M" or unit.startswith("month"):
            when = _months_before(now, n)
        elif unit.startswith("y"):
            when = _months_before(now, 12 * n)
        else:
            seconds = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}[unit[0]]
            when = now - timedelta(seconds=n * seconds)
        return when, when
    try:
        if re.fullmatch(r"\d{4}", text):
            start = datetime(int(text), 1, 1, tzinfo=UTC)
            return start, start.replace(year=start.year + 1)
        if re.fullmatch(r"\d{4}-\d{2}", text):
            start = datetime(int(text[:4]), int(text[5:7]), 1, tzinfo=UTC)
            return start, _months_before(start, -1)
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            start = timestamps.parse(text)
            return start, start + timedelta(days=1)
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?Z?", text):
            start = timestamps.parse(text)
            return start, start + timedelta(seconds=1 if text.count(":") == 2 else 60)
    except ValueError:
        pass
    raise ValueError(f"date: cannot read {text!r}; {DATE_HINT}")


def parse_date_range(value: str) -> tuple[datetime, datetime]:
    """``A..B`` (both included), ``A..``, ``..B`` or ``A``: [start, end) in UTC."""
    if ".." in value:
        first, _, last = value.partition("..")
        start = _point(first)[0] if first else EARLIEST
        end = _point(last)[1] if last else LATEST
        # An age as the end means up to that moment: "..2w" is "more than two weeks ago".
        if last and _AGE.match(last):
            end = _point(last)[0]
    else:
        start, end = _point(value)
        if _AGE.match(value) or value.lower() == "now":
            end = LATEST  # "date:2w" reads as "in the last two weeks"
    if end <= start:
        raise ValueError(f"date: {value!r} ends before it starts")
    return start, end
