"""The clocks of the guidelines as policy: ``rules/clocks.toml`` read and checked
(durations, business days and hours, holidays, the time zone, what each clock does
and what ends it), and business-time arithmetic.  The alarms that run on it are
:mod:`mailflow.clocks.alarms`; the scheduler fires them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mailflow.config import ConfigError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# What an alarm can do (implemented in scheduler.py), as `mailflow deadlines` says it.
ACTIONS = {
    "remind-chair": "remind the chair",
    "remind-committee": "remind the committee",
    "draft-status-update": "draft the reporter's status update for the chair to #confirm",
    "officers": "send the deadlock with the proposal and votes to the officers",
    "flag": "flag the case",
}
# Conditions under which an alarm has nothing left to do, checked when it falls due
# (so a step that forgets to disarm costs nothing): name -> (query, why).  Parameters:
# :case, :ref (the alarm's), :since (when it was armed), :now, :closed (JSON list).
ENDINGS: dict[str, tuple[str, str]] = {
    "closed": ("SELECT 1 FROM cases WHERE id = :case AND status IN "
               "(SELECT value FROM json_each(:closed))", "the case is closed"),
    "resolved": ("SELECT 1 FROM case_record WHERE case_id = :case AND response IS NOT NULL",
                 "a response was agreed"),
    "decided": ("SELECT 1 FROM proposals WHERE id = :ref AND status != 'open'",
                "the proposal was decided"),
    # Personal contact since the alarm was armed: mail other than the automatic
    # acknowledgement, or a call summary (#call) with the reporter.
    "reporter-contacted": (
        "SELECT 1 FROM outbound o JOIN outbound_rcpt r ON r.outbound_id = o.id "
        "JOIN people p ON p.case_id = o.case_id AND p.role = 'reporter' AND p.address = r.rcpt "
        "WHERE o.case_id = :case AND o.kind != 'ack' AND o.created_at >= :since "
        "UNION ALL SELECT 1 FROM notes n, json_each(n.participants) j WHERE n.case_id = :case "
        "AND n.kind = 'call' AND n.at >= :since AND lower(trim(j.value)) IN "
        "(SELECT 'reporter' UNION SELECT 'the reporter' UNION SELECT address FROM people "
        "WHERE case_id = :case AND role = 'reporter' AND address != '' UNION SELECT lower(name) "
        "FROM people WHERE case_id = :case AND role = 'reporter' AND name != '')",
        "the reporter was written to or called"),
    "followed-up": ("SELECT 1 FROM messages WHERE case_id = :case AND received_at > :since "
                    "AND (from_addr = :ref OR (:ref = '' AND kind = 'member'))",
                    "the committee heard back"),
    "reported-back": ("SELECT 1 FROM notes WHERE case_id = :case AND kind IN ('acted', 'call') "
                      "AND at >= :since", "a member reported back (#acted or #call)"),
    "form-received": ("SELECT 1 FROM notes WHERE case_id = :case AND kind = 'event-report' "
                      "AND at >= :since", "the event incident report form arrived"),
    "mediation-dropped": ("SELECT 1 FROM mediations WHERE id = :ref AND status != 'settled'",
                          "the mediation was replaced or dropped"),
    "ban-lifted": ("SELECT 1 FROM bans WHERE id = :ref AND lifted_at IS NOT NULL",
                   "the ban was lifted"),
    "ban-ended": ("SELECT 1 FROM bans WHERE id = :ref AND ends_at IS NOT NULL "
                  "AND ends_at <= :now", "the ban has ended"),
}
# Events that arm a clock by themselves (``start = ...``, see :func:`start`).
STARTS = ("report", "urgent", "delegate", "review")
DIGEST = "digest"  # the alarm that sends the daily digests; it has no case

DURATION = re.compile(r"^\s*(\d+)\s+(business\s+)?(minute|hour|day|week)s?\s*$", re.IGNORECASE)
CLOCK_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


# NamedTuples, not dataclasses: `mailflow deadlines` would load inspect for them, a
# tenth of its start (bench/README.md).
class Duration(NamedTuple):
    """``"24 hours"``, ``"1 week"`` (calendar time), ``"1 business day"`` (the end of
    business hours on the n-th business day after), ``"8 business hours"``."""

    amount: int
    unit: str          # minute, hour, day, week
    business: bool

    @classmethod
    def parse(cls, text: str) -> Duration:
        match = DURATION.match(text) if isinstance(text, str) else None
        if not match:
            raise ValueError(f"{text!r} is not a duration like '24 hours', '1 week', "
                             "'1 business day' or '8 business hours'")
        amount, business, unit = int(match.group(1)), bool(match.group(2)), match.group(3).lower()
        if business and unit not in ("day", "hour"):
            raise ValueError(f"{text!r}: only days and hours can be business time")
        return cls(amount, unit, business)

    def __str__(self) -> str:
        unit = self.unit + ("" if self.amount == 1 else "s")
        return f"{self.amount} {'business ' if self.business else ''}{unit}"


class Clock(NamedTuple):
    name: str
    about: str
    after: tuple[Duration, ...]      # due when the last of these has passed
    do: tuple[str, ...]
    start: str | None
    ends_when: tuple[str, ...]
    repeat: Duration | None          # re-armed this long after firing


class Digest(NamedTuple):
    enabled: bool
    at: time
    days: frozenset[int]
    due_within: Duration
    send_empty: bool


# The rules table read last, and what it said.
_LAST: list[Any] = []


class Policy(NamedTuple):
    tz: ZoneInfo
    workdays: frozenset[int]
    opens: time
    closes: time
    holidays: frozenset[date]
    late_after: timedelta
    closed_states: tuple[str, ...]
    clocks: dict[str, Clock]
    digest: Digest

    @classmethod
    def from_rules(cls, rules: Mapping[str, Any]) -> Policy:
        table = rules.get("clocks", {})
        # Rules are loaded once per process: read them once, not on every message.
        if _LAST and _LAST[0] is table:
            return _LAST[1]
        policy, problems = _read_policy(table)
        if problems or policy is None:
            raise ConfigError("\n".join(problems))
        _LAST[:] = [table, policy]
        return policy

    def clock(self, name: str) -> Clock:
        try:
            return self.clocks[name]
        except KeyError:
            raise ValueError(f"no clock {name!r} in rules/clocks.toml") from None

    # -- business time ---------------------------------------------------------------

    def local(self, when: datetime) -> datetime:
        return when.astimezone(self.tz)

    def is_business_day(self, day: date) -> bool:
        return day.weekday() in self.workdays and day not in self.holidays

    def business_day(self, day: date, n: int) -> date:
        """The n-th business day after ``day`` (n = 0: ``day`` itself if it is one)."""
        if n == 0 and self.is_business_day(day):
            return day
        for _ in range(max(n, 1)):
            day += timedelta(days=1)
            while not self.is_business_day(day):
                day += timedelta(days=1)
        return day

    def at(self, day: date, when: time) -> datetime:
        return datetime.combine(day, when, tzinfo=self.tz).astimezone(UTC)

    def add(self, start: datetime, duration: Duration) -> datetime:
        if duration.business and duration.unit == "day":
            return self.at(self.business_day(self.local(start).date(), duration.amount),
                           self.closes)
        if duration.business:
            return self._add_business_hours(start, timedelta(hours=duration.amount))
        if duration.unit in ("day", "week"):
            # Days are local days: a week later is the same local time, across DST too.
            days = duration.amount * (7 if duration.unit == "week" else 1)
            return (self.local(start) + timedelta(days=days)).astimezone(UTC)
        return start.astimezone(UTC) + timedelta(**{duration.unit + "s": duration.amount})

    def _add_business_hours(self, start: datetime, remaining: timedelta) -> datetime:
        t = self.local(start)
        # Bounded: validation guarantees business days exist; holidays are finite.
        for _ in range(3660):
            day = t.date()
            if self.is_business_day(day):
                opens = datetime.combine(day, self.opens, tzinfo=self.tz)
                closes = datetime.combine(day, self.closes, tzinfo=self.tz)
                t = max(t, opens)
                if t < closes:
                    if remaining <= closes - t:
                        return (t + remaining).astimezone(UTC)
                    remaining -= closes - t
            t = datetime.combine(day + timedelta(days=1), time(0), tzinfo=self.tz)
        raise ValueError("no business hours within ten years")

    def due(self, start: datetime, after: tuple[Duration, ...]) -> datetime:
        """The guideline's "within X, or Y": whichever of the durations ends later."""
        return max(self.add(start, d) for d in after)

    def next_digest(self, after: datetime) -> datetime | None:
        if not self.digest.enabled:
            return None
        day = self.local(after).date()
        for i in range(8):
            candidate = day + timedelta(days=i)
            if candidate.weekday() in self.digest.days:
                when = self.at(candidate, self.digest.at)
                if when > after:
                    return when
        return None

    def show(self, when: datetime) -> str:
        """A due time as the committee reads it: local time with the zone's abbreviation."""
        return self.local(when).strftime("%a %Y-%m-%d %H:%M %Z")


def problems(rules: Mapping[str, Any]) -> list[str]:
    """Every problem with ``rules/clocks.toml``, for ``mailflow check``."""
    return _read_policy(rules.get("clocks", {}))[1]


def _read_policy(table: Mapping[str, Any]) -> tuple[Policy | None, list[str]]:
    r = _Reader()
    tz = r.zone(table.get("timezone", "UTC"))
    workdays = r.weekdays("business_days", table.get("business_days", list(WEEKDAYS[:5])))
    opens, closes = r.hours(table.get("business_hours", ["09:00", "17:00"]))
    holidays = r.holidays(table.get("holidays", []))
    late_after = r.duration("late_after", table.get("late_after", "15 minutes"))
    closed_states = table.get("closed_states", ["closed"])
    if not isinstance(closed_states, list) or not all(isinstance(s, str) for s in closed_states):
        r.bad("closed_states", "expected a list of case statuses")
        closed_states = []
    clocks = r.clocks(table.get("clocks", {}))
    digest = r.digest(table.get("digest", {}))
    if r.problems or not (tz and opens and closes and late_after and digest):
        return None, r.problems or ["rules/clocks.toml: invalid"]
    return Policy(tz, workdays, opens, closes, holidays, _span(late_after),
                  tuple(closed_states), clocks, digest), r.problems


class _Reader:
    """Reads the values of ``rules/clocks.toml``, collecting every problem."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def bad(self, key: str, why: str) -> None:
        self.problems.append(f"rules/clocks.toml: {key}: {why}")

    def duration(self, key: str, value: Any) -> Duration | None:
        try:
            return Duration.parse(value)
        except ValueError as e:
            self.bad(key, str(e))
            return None

    def clock_time(self, key: str, value: Any) -> time | None:
        match = CLOCK_TIME.match(value) if isinstance(value, str) else None
        if not match:
            self.bad(key, f"{value!r} is not a time like '09:00'")
            return None
        return time(int(match.group(1)), int(match.group(2)))

    def weekdays(self, key: str, value: Any) -> frozenset[int]:
        days = set()
        for name in value if isinstance(value, list) else [value]:
            if not isinstance(name, str) or name.lower()[:3] not in WEEKDAYS:
                self.bad(key, f"{name!r} is not a weekday (mon ... sun)")
                continue
            days.add(WEEKDAYS.index(name.lower()[:3]))
        if not days:
            self.bad(key, "needs at least one day")
        return frozenset(days)

    def zone(self, value: Any) -> ZoneInfo | None:
        try:
            return ZoneInfo(str(value))
        except (ZoneInfoNotFoundError, ValueError):
            self.bad("timezone", f"{value!r} is not a time zone name (e.g. 'Europe/Berlin')")
            return None

    def hours(self, value: Any) -> tuple[time | None, time | None]:
        if not (isinstance(value, list) and len(value) == 2):
            self.bad("business_hours", "expected [opens, closes], e.g. ['09:00', '17:00']")
            return None, None
        opens = self.clock_time("business_hours", value[0])
        closes = self.clock_time("business_hours", value[1])
        if opens and closes and opens >= closes:
            self.bad("business_hours", "the day must open before it closes")
        return opens, closes

    def holidays(self, value: Any) -> frozenset[date]:
        days = set()
        for item in value if isinstance(value, list) else [value]:
            # TOML dates arrive as dates; a quoted "2026-12-25" is accepted too.
            try:
                days.add(item if type(item) is date else date.fromisoformat(item))
            except (TypeError, ValueError):
                self.bad("holidays", f"{item!r} is not a date (write 2026-12-25)")
        return frozenset(days)

    def clocks(self, value: Any) -> dict[str, Clock]:
        if not isinstance(value, dict):
            self.bad("clocks", "expected tables [clocks.NAME]")
            return {}
        found = {}
        for name, spec in value.items():
            if not isinstance(spec, dict):
                self.bad(f"clocks.{name}", "expected a table")
                continue
            found[name] = self.clock(name, spec)
        return found

    def clock(self, name: str, spec: dict[str, Any]) -> Clock:
        key = f"clocks.{name}"
        after_raw = spec.get("after", [])
        after = tuple(d for d in (self.duration(f"{key}.after", v) for v in
                                  (after_raw if isinstance(after_raw, list) else [after_raw]))
                      if d)
        do = spec.get("do", [])
        if not isinstance(do, list) or any(a not in ACTIONS for a in do):
            self.bad(f"{key}.do", f"expected a list of: {', '.join(ACTIONS)}")
            do = []
        ends = spec.get("ends_when", ["closed"])
        if not isinstance(ends, list) or any(c not in ENDINGS for c in ends):
            self.bad(f"{key}.ends_when", f"expected a list of: {', '.join(ENDINGS)}")
            ends = []
        start = spec.get("start")
        if start is not None and start not in STARTS:
            self.bad(f"{key}.start", f"expected one of: {', '.join(STARTS)}")
        if start is not None and not after:
            self.bad(f"{key}.after", "a clock that starts by itself needs a duration")
        repeat = self.duration(f"{key}.repeat", spec["repeat"]) if "repeat" in spec else None
        return Clock(name, str(spec.get("about", name)), after, tuple(do), start, tuple(ends),
                     repeat)

    def digest(self, dg: dict[str, Any]) -> Digest | None:
        at = self.clock_time("digest.at", dg.get("at", "08:00"))
        days = self.weekdays("digest.days", dg.get("days", list(WEEKDAYS)))
        due_within = self.duration("digest.due_within", dg.get("due_within", "2 days"))
        for key in ("enabled", "send_empty"):
            if not isinstance(dg.get(key, False), bool):
                self.bad(f"digest.{key}", "expected true or false")
        if not (at and due_within):
            return None
        return Digest(dg.get("enabled", True), at, days, due_within, dg.get("send_empty", False))


def _span(d: Duration) -> timedelta:
    """A calendar duration as a plain span (for tolerances, not for due times)."""
    per = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}[d.unit]
    return timedelta(seconds=d.amount * per)


# -- the alarms table ----------------------------------------------------------------
