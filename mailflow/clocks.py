"""The clocks of the guidelines: policy from ``rules/clocks.toml``, business-time
arithmetic, and the durable alarms that :mod:`mailflow.scheduler` fires.

An alarm is a row ``(case, clock, ref) -> due time``, stored (UTC) when it is armed,
so a restart loses none.  Alarms are armed in the transaction of the change that
starts them, three ways:

- by an event (``start = "report" | "urgent" | "delegate"`` in the rules), from the
  pipeline (:func:`on_message`);
- from other modules' records (:data:`DERIVED`: a deadlocked proposal, a sign-off
  item, a settled mediation, a ban), by :func:`reconcile` right after the commands
  of each message, so no step has to remember to;
- directly, by anyone: ``arm(db, svc.rules, case_id, "mediation", ref="3",
  due_at=date(2026, 12, 15))``; ``disarm(db, case_id, "mediation", ref="3")``.

Whether an alarm still has work to do is checked when it falls due (``ends_when``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlite_utils

from . import audit, clock
from .config import ConfigError

if TYPE_CHECKING:
    from .pipeline import Context

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
    "reporter-contacted": (
        "SELECT 1 FROM outbound o JOIN outbound_rcpt r ON r.outbound_id = o.id "
        "JOIN people p ON p.case_id = o.case_id AND p.role = 'reporter' AND p.address = r.rcpt "
        "WHERE o.case_id = :case AND o.kind != 'ack'", "the reporter was written to"),
    "followed-up": ("SELECT 1 FROM messages WHERE case_id = :case AND received_at > :since "
                    "AND (from_addr = :ref OR (:ref = '' AND kind = 'member'))",
                    "the committee heard back"),
    "mediation-dropped": ("SELECT 1 FROM mediations WHERE id = :ref AND status != 'settled'",
                          "the mediation was replaced or dropped"),
    "ban-lifted": ("SELECT 1 FROM bans WHERE id = :ref AND lifted_at IS NOT NULL",
                   "the ban was lifted"),
    "ban-ended": ("SELECT 1 FROM bans WHERE id = :ref AND ends_at IS NOT NULL "
                  "AND ends_at <= :now", "the ban has ended"),
}
# Events that arm a clock by themselves (``start = ...``, see :func:`start`).
STARTS = ("report", "urgent", "delegate")
DIGEST = "digest"  # the alarm that sends the daily digests; it has no case

DURATION = re.compile(r"^\s*(\d+)\s+(business\s+)?(minute|hour|day|week)s?\s*$", re.IGNORECASE)
CLOCK_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class Duration:
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


@dataclass(frozen=True)
class Clock:
    name: str
    about: str
    after: tuple[Duration, ...]      # due when the last of these has passed
    do: tuple[str, ...]
    start: str | None
    ends_when: tuple[str, ...]
    repeat: Duration | None          # re-armed this long after firing


@dataclass(frozen=True)
class Digest:
    enabled: bool
    at: time
    days: frozenset[int]
    due_within: Duration
    send_empty: bool


# The rules table read last, and what it said.
_LAST: list[Any] = []


@dataclass(frozen=True)
class Policy:
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
    out: list[str] = []

    def bad(key: str, why: str) -> None:
        out.append(f"rules/clocks.toml: {key}: {why}")

    def duration(key: str, value: Any) -> Duration | None:
        try:
            return Duration.parse(value)
        except ValueError as e:
            bad(key, str(e))
            return None

    def clock_time(key: str, value: Any) -> time | None:
        match = CLOCK_TIME.match(value) if isinstance(value, str) else None
        if not match:
            bad(key, f"{value!r} is not a time like '09:00'")
            return None
        return time(int(match.group(1)), int(match.group(2)))

    def weekdays(key: str, value: Any) -> frozenset[int]:
        names = value if isinstance(value, list) else [value]
        days = set()
        for name in names:
            if not isinstance(name, str) or name.lower()[:3] not in WEEKDAYS:
                bad(key, f"{name!r} is not a weekday (mon ... sun)")
                continue
            days.add(WEEKDAYS.index(name.lower()[:3]))
        if not days:
            bad(key, "needs at least one day")
        return frozenset(days)

    tz = None
    try:
        tz = ZoneInfo(str(table.get("timezone", "UTC")))
    except (ZoneInfoNotFoundError, ValueError):
        bad("timezone", f"{table.get('timezone')!r} is not a time zone name (e.g. 'Europe/Berlin')")
    workdays = weekdays("business_days", table.get("business_days", list(WEEKDAYS[:5])))
    hours = table.get("business_hours", ["09:00", "17:00"])
    opens = closes = None
    if isinstance(hours, list) and len(hours) == 2:
        opens = clock_time("business_hours", hours[0])
        closes = clock_time("business_hours", hours[1])
        if opens and closes and opens >= closes:
            bad("business_hours", "the day must open before it closes")
    else:
        bad("business_hours", "expected [opens, closes], e.g. ['09:00', '17:00']")
    holidays = set()
    raw_holidays = table.get("holidays", [])
    for value in raw_holidays if isinstance(raw_holidays, list) else [raw_holidays]:
        # TOML dates arrive as dates; a quoted "2026-12-25" is accepted too.
        try:
            holidays.add(value if type(value) is date else date.fromisoformat(value))
        except (TypeError, ValueError):
            bad("holidays", f"{value!r} is not a date (write 2026-12-25)")
    late_after = duration("late_after", table.get("late_after", "15 minutes"))
    closed_states = table.get("closed_states", ["closed"])
    if not isinstance(closed_states, list) or not all(isinstance(s, str) for s in closed_states):
        bad("closed_states", "expected a list of case statuses")
        closed_states = []

    clocks: dict[str, Clock] = {}
    raw_clocks = table.get("clocks", {})
    if not isinstance(raw_clocks, dict):
        bad("clocks", "expected tables [clocks.NAME]")
        raw_clocks = {}
    for name, spec in raw_clocks.items():
        if not isinstance(spec, dict):
            bad(f"clocks.{name}", "expected a table")
            continue
        key = f"clocks.{name}"
        after_raw = spec.get("after", [])
        after_list = after_raw if isinstance(after_raw, list) else [after_raw]
        after = tuple(d for d in (duration(f"{key}.after", v) for v in after_list) if d)
        do = spec.get("do", [])
        if not isinstance(do, list) or any(a not in ACTIONS for a in do):
            bad(f"{key}.do", f"expected a list of: {', '.join(ACTIONS)}")
            do = []
        ends = spec.get("ends_when", ["closed"])
        if not isinstance(ends, list) or any(c not in ENDINGS for c in ends):
            bad(f"{key}.ends_when", f"expected a list of: {', '.join(ENDINGS)}")
            ends = []
        start = spec.get("start")
        if start is not None and start not in STARTS:
            bad(f"{key}.start", f"expected one of: {', '.join(STARTS)}")
        if start is not None and not after:
            bad(f"{key}.after", "a clock that starts by itself needs a duration")
        repeat = duration(f"{key}.repeat", spec["repeat"]) if "repeat" in spec else None
        clocks[name] = Clock(name, str(spec.get("about", name)), after, tuple(do), start,
                             tuple(ends), repeat)

    dg = table.get("digest", {})
    at = clock_time("digest.at", dg.get("at", "08:00"))
    digest_days = weekdays("digest.days", dg.get("days", list(WEEKDAYS)))
    due_within = duration("digest.due_within", dg.get("due_within", "2 days"))
    for key in ("enabled", "send_empty"):
        if not isinstance(dg.get(key, False), bool):
            bad(f"digest.{key}", "expected true or false")
    if out or not (tz and opens and closes and late_after and at and due_within):
        return None, out or ["rules/clocks.toml: invalid"]
    digest = Digest(dg.get("enabled", True), at, digest_days, due_within,
                    dg.get("send_empty", False))
    return Policy(tz, workdays, opens, closes, frozenset(holidays),
                  _span(late_after),
                  tuple(closed_states), clocks, digest), out


def _span(d: Duration) -> timedelta:
    """A calendar duration as a plain span (for tolerances, not for due times)."""
    per = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}[d.unit]
    return timedelta(seconds=d.amount * per)


# -- the alarms table ----------------------------------------------------------------

def alarm_tables(db: sqlite_utils.Database) -> None:
    db.execute("""
        CREATE TABLE alarms (
            id INTEGER PRIMARY KEY,
            case_id TEXT REFERENCES cases(id),    -- NULL: not about one case (the digest)
            clock TEXT NOT NULL,                  -- a [clocks.NAME] of rules/clocks.toml
            ref TEXT NOT NULL DEFAULT '',         -- which one within the case: a proposal
                                                  -- id, a ban id, a member ...
            armed_at TEXT NOT NULL,
            due_at TEXT NOT NULL,                 -- UTC, sortable
            state TEXT NOT NULL DEFAULT 'pending',  -- pending, fired, ended, disarmed, failed
            fired_at TEXT,
            late INTEGER NOT NULL DEFAULT 0,      -- fired well after its due time
            outcome TEXT NOT NULL DEFAULT '',     -- what it did, or why it ended
            detail TEXT NOT NULL DEFAULT '{}',    -- JSON from whoever armed it
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT
        )""")
    # One pending alarm per (case, clock, ref): arming again moves its due time.
    db.execute("CREATE UNIQUE INDEX alarms_pending ON alarms(coalesce(case_id, ''), clock, ref)"
               " WHERE state = 'pending'")
    db.execute("CREATE INDEX alarms_due ON alarms(state, due_at)")
    db.execute("CREATE INDEX alarms_case ON alarms(case_id, id)")


MIGRATIONS = [("clocks_0001_alarms", alarm_tables)]


def _pending_id(db: sqlite_utils.Database, case_id: str | None, name: str, ref: str
                ) -> int | None:
    row = db.execute("SELECT id FROM alarms WHERE coalesce(case_id, '') = ? AND clock = ? "
                     "AND ref = ? AND state = 'pending'", [case_id or "", name, ref]).fetchone()
    return row[0] if row else None


def arm(db: sqlite_utils.Database, rules: Mapping[str, Any], case_id: str | None, name: str,
        *, ref: str = "", start: datetime | None = None, due_at: datetime | date | None = None,
        detail: dict[str, Any] | None = None) -> int | None:
    """Arm (or move) the alarm of clock ``name`` for a case; call inside your transaction.

    The due time is ``due_at`` if given (a date means "by that day": the close of
    business hours), else ``start`` (default: now) plus the clock's ``after`` from the rules.
    Returns the alarm's id, or None when the rules switch the clock off (``do = []``).
    """
    policy = Policy.from_rules(rules)
    spec = policy.clock(name) if name != DIGEST else None
    if spec is not None and not spec.do:
        return None
    if isinstance(due_at, datetime):
        due = due_at
    elif isinstance(due_at, date):
        due = policy.at(due_at, policy.closes)
    elif spec is not None and spec.after:
        due = policy.due(start or clock.now(), spec.after)
    else:
        raise ValueError(f"clock {name!r} has no 'after' in the rules: give due_at")
    return _store(db, case_id, name, ref, due, detail or {})


def _store(db: sqlite_utils.Database, case_id: str | None, name: str, ref: str, due: datetime,
           detail: dict[str, Any]) -> int:
    due_at = clock.stamp(due)
    existing = _pending_id(db, case_id, name, ref)
    if existing:
        db.execute("UPDATE alarms SET due_at = ?, detail = ? WHERE id = ?",
                   [due_at, json.dumps(detail, default=str), existing])
        audit.append(db, "mailflow", f"clock moved: {name}", case_id, ref=ref, due=due_at)
        return existing
    cur = db.execute(
        "INSERT INTO alarms (case_id, clock, ref, armed_at, due_at, detail) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [case_id, name, ref, clock.stamp(), due_at, json.dumps(detail, default=str)])
    audit.append(db, "mailflow", f"clock armed: {name}", case_id, ref=ref, due=due_at)
    return cur.lastrowid


def disarm(db: sqlite_utils.Database, case_id: str | None, name: str, *, ref: str = "",
           reason: str = "", actor: str = "mailflow") -> bool:
    """Stop a pending alarm (its condition was met); False if none was pending."""
    alarm_id = _pending_id(db, case_id, name, ref)
    if alarm_id is None:
        return False
    db.execute("UPDATE alarms SET state = 'disarmed', outcome = ? WHERE id = ?",
               [reason, alarm_id])
    audit.append(db, actor, f"clock disarmed: {name}", case_id, ref=ref, reason=reason)
    return True


def pending(db: sqlite_utils.Database, case_id: str | None = None) -> list[dict[str, Any]]:
    """Pending alarms, soonest first (of one case, or all)."""
    where, args = ("AND case_id = ?", [case_id]) if case_id else ("", [])
    return list(db.query(f"SELECT * FROM alarms WHERE state = 'pending' {where} "
                         "ORDER BY due_at, id", args))


def history(db: sqlite_utils.Database, case_id: str) -> list[dict[str, Any]]:
    """Every alarm of a case, in the order they were armed: for the case view."""
    return list(db.query("SELECT id, clock, ref, armed_at, due_at, state, fired_at, late, "
                         "outcome FROM alarms WHERE case_id = ? ORDER BY id", [case_id]))


def keep_digest_armed(db: sqlite_utils.Database, policy: Policy, now: datetime) -> None:
    """Exactly one pending digest alarm while digests are on; none while they are off."""
    existing = _pending_id(db, None, DIGEST, "")
    if not policy.digest.enabled:
        if existing:
            disarm(db, None, DIGEST, reason="digests switched off in the rules")
        return
    if existing is None:
        due = policy.next_digest(now)
        if due is not None:
            _store(db, None, DIGEST, "", due, {})


def start(db: sqlite_utils.Database, rules: Mapping[str, Any], case_id: str, event: str,
          ref: str = "") -> list[int]:
    """Arm every clock that starts with ``event`` ("report", "urgent", "delegate") and
    never ran for this case (and ref); returns the alarm ids."""
    armed = []
    for spec in Policy.from_rules(rules).clocks.values():
        if spec.start == event and not _ever_armed(db, case_id, spec.name, ref):
            alarm_id = arm(db, rules, case_id, spec.name, ref=ref)
            if alarm_id:
                armed.append(alarm_id)
    return armed


def _ever_armed(db: sqlite_utils.Database, case_id: str, name: str, ref: str) -> bool:
    return db.execute("SELECT 1 FROM alarms WHERE case_id = ? AND clock = ? AND ref = ?",
                      [case_id, name, ref]).fetchone() is not None


# Clocks that other modules' records start, armed by reconcile() from those records, so
# that no step has to remember to: clock -> query of (case_id, ref, start, due) rows.
DERIVED: dict[str, str] = {
    # consensus: an objection blocked the proposal; a replacing one inherits the time.
    "deadlock": "SELECT case_id, id, deadlocked_at, NULL FROM proposals "
                "WHERE status = 'open' AND deadlocked_at IS NOT NULL",
    # severe: the sign-off item of the clear-and-severe fast path.
    "signoff": "SELECT case_id, id, proposed_at, NULL FROM proposals "
               "WHERE kind = 'signoff' AND status = 'open'",
    # mediation: everyone agreed; it should complete by the target date.
    "mediation": "SELECT case_id, id, settled_at, target_date FROM mediations "
                 "WHERE status = 'settled'",
    # sanctions: a ban with an end, and every ban for its review.
    "ban-end": "SELECT case_id, id, starts_at, ends_at FROM bans "
               "WHERE lifted_at IS NULL AND ends_at IS NOT NULL",
    "ban-review": "SELECT case_id, id, starts_at, NULL FROM bans WHERE lifted_at IS NULL",
}


def reconcile(db: sqlite_utils.Database, rules: Mapping[str, Any], case_id: str | None = None
              ) -> None:
    """Arm the clocks the records call for and that never ran: those of :data:`DERIVED`,
    and the urgent clocks of a case marked urgent (by triage, #ongoing or #safety)."""
    only, args = ("AND r.case_id = ?", [case_id]) if case_id else ("", [])
    for name, query in DERIVED.items():
        rows = db.execute(
            f"SELECT r.* FROM ({query}) AS r WHERE NOT EXISTS (SELECT 1 FROM alarms a "
            "WHERE a.clock = ? AND a.case_id = r.case_id AND a.ref = CAST(r.id AS TEXT)) "
            f"{only}", [name, *args]).fetchall()
        for row_case, ref, started, due in rows:
            arm(db, rules, row_case, name, ref=str(ref),
                start=clock.parse(started) if started else None,
                due_at=_when(due) if due else None)
    closed = json.dumps(Policy.from_rules(rules).closed_states)
    urgent = db.execute("SELECT id AS case_id FROM cases r WHERE urgent = 1 AND status NOT IN "
                        f"(SELECT value FROM json_each(?)) {only.replace('r.case_id', 'id')}",
                        [closed, *args]).fetchall()
    for (urgent_case,) in urgent:
        start(db, rules, urgent_case, "urgent")


def _when(text: str) -> datetime | date:
    """A stored date ("2026-12-15": by the end of that day) or timestamp."""
    return date.fromisoformat(text) if len(text) == 10 else clock.parse(text)


def on_message(ctx: Context) -> None:
    """Pipeline handler, after the commands: a new case starts the clocks that start
    with a report (and, if an event delegate opened it without the event incident
    report form, the delegate's); then the clocks the case's records call for."""
    if not ctx.case_id:
        return
    db, rules, case_id = ctx.db, ctx.svc.rules, ctx.case_id
    if ctx.new_case:
        start(db, rules, case_id, "report")
        sender = (ctx.sender or "").lower()
        delegates = {d.lower() for d in ctx.cfg.committee.delegates}
        if sender in delegates and not db.execute(
                "SELECT 1 FROM notes WHERE case_id = ? AND kind = 'event-report'",
                [case_id]).fetchone():
            start(db, rules, case_id, "delegate", ref=sender)
    reconcile(db, rules, case_id)


def ended(db: sqlite_utils.Database, policy: Policy, alarm: Mapping[str, Any], spec: Clock,
          now: datetime) -> str | None:
    """Why the alarm has nothing left to do (one of its clock's ``ends_when``), or None."""
    params = {"case": alarm["case_id"], "ref": alarm["ref"], "since": alarm["armed_at"],
              "now": clock.stamp(now), "closed": json.dumps(policy.closed_states)}
    for name in spec.ends_when:
        sql, why = ENDINGS[name]
        if db.execute(sql, params).fetchone():
            return why
    return None


def deadlines(db: sqlite_utils.Database, rules: Mapping[str, Any], now: datetime | None = None
              ) -> list[dict[str, Any]]:
    """Every open clock, soonest first: its due time, its case and what it will do."""
    policy = Policy.from_rules(rules)
    now = now or clock.now()
    out = []
    for alarm in db.query("SELECT a.id, a.case_id, c.codename, a.clock, a.ref, a.due_at, "
                          "a.armed_at FROM alarms a LEFT JOIN cases c ON c.id = a.case_id "
                          "WHERE a.state = 'pending' ORDER BY a.due_at, a.id"):
        spec = policy.clocks.get(alarm["clock"])
        if alarm["clock"] == DIGEST:
            will, unless, about = ["send each member their digest"], [], "the daily digest"
        else:
            will = [ACTIONS[a] for a in spec.do] if spec else []
            unless = [ENDINGS[c][1] for c in spec.ends_when] if spec else []
            about = spec.about if spec else "(no longer in rules/clocks.toml)"
        due = clock.parse(alarm["due_at"])
        out.append({**alarm, "due_local": policy.show(due), "overdue": due <= now,
                    "about": about, "will": will, "unless": unless})
    return out


def format_deadlines(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "No clock is running."
    lines = []
    for r in rows:
        what = r["clock"] + (f" ({r['ref']})" if r["ref"] else "")
        case = f"{r['case_id']} ({r['codename']})" if r["case_id"] else "-"
        lines.append(f"{r['due_local']}{'  OVERDUE' if r['overdue'] else ''}  {case}  {what}")
        lines.append(f"    will {'; '.join(r['will']) or 'do nothing'}"
                     + (f", unless {' or '.join(r['unless'])}" if r["unless"] else ""))
    return "\n".join(lines)
