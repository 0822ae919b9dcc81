"""The durable alarms of the clocks: a row ``(case, clock, ref) -> due time``, stored
(UTC) when it is armed, so a restart loses none.  :mod:`mailflow.clocks.scheduler`
fires them.  Alarms are armed in the transaction of the change that starts them,
three ways:

- by an event (``start = "report" | "urgent" | "delegate"`` in the rules), from the
  pipeline (:mod:`mailflow.pipeline.handlers.clocks`);
- from other modules' records (:data:`DERIVED`: a deadlocked proposal, a sign-off
  item, a settled mediation, a ban), by :func:`reconcile` right after the commands
  of each message, so no step has to remember to;
- directly, by anyone: ``arm(db, svc.rules, case_id, "mediation", ref="3",
  due_at=date(2026, 12, 15))``; ``disarm(db, case_id, "mediation", ref="3")``.

Whether an alarm still has work to do (``ends_when``) is checked when it falls due,
and after the commands of each message and at each pass of the scheduler
(:func:`close_met`): a clock that has been met (the reporter was written to, the form
arrived) is closed then, and neither ``mailflow deadlines`` nor a digest lists it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from mailflow import store, timestamps
from mailflow.clocks.policy import ACTIONS, DIGEST, ENDINGS, Clock, Policy
from mailflow.store import audit
from mailflow.store.sqlite import Database


def _pending_id(db: Database, case_id: str | None, name: str, ref: str
                ) -> int | None:
    row = db.execute("SELECT id FROM alarms WHERE coalesce(case_id, '') = ? AND clock = ? "
                     "AND ref = ? AND state = 'pending'", [case_id or "", name, ref]).fetchone()
    return row[0] if row else None


def arm(db: Database, rules: Mapping[str, Any], case_id: str | None, name: str,
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
        due = policy.due(start or timestamps.now(), spec.after)
    else:
        raise ValueError(f"clock {name!r} has no 'after' in the rules: give due_at")
    return _store(db, case_id, name, ref, due, detail or {})


def _store(db: Database, case_id: str | None, name: str, ref: str, due: datetime,
           detail: dict[str, Any]) -> int:
    due_at = timestamps.stamp(due)
    existing = _pending_id(db, case_id, name, ref)
    if existing:
        db.execute("UPDATE alarms SET due_at = ?, detail = ? WHERE id = ?",
                   [due_at, json.dumps(detail, default=str), existing])
        audit.append(db, "mailflow", f"clock moved: {name}", case_id, ref=ref, due=due_at)
        return existing
    cur = db.execute(
        "INSERT INTO alarms (case_id, clock, ref, armed_at, due_at, detail) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [case_id, name, ref, timestamps.stamp(), due_at, json.dumps(detail, default=str)])
    audit.append(db, "mailflow", f"clock armed: {name}", case_id, ref=ref, due=due_at)
    return store.inserted(cur)


def disarm(db: Database, case_id: str | None, name: str, *, ref: str = "",
           reason: str = "", actor: str = "mailflow") -> bool:
    """Stop a pending alarm (its condition was met); False if none was pending."""
    alarm_id = _pending_id(db, case_id, name, ref)
    if alarm_id is None:
        return False
    db.execute("UPDATE alarms SET state = 'disarmed', outcome = ? WHERE id = ?",
               [reason, alarm_id])
    audit.append(db, actor, f"clock disarmed: {name}", case_id, ref=ref,
                 reason=audit.fingerprint(db, reason))
    return True


def pending(db: Database, case_id: str | None = None) -> list[dict[str, Any]]:
    """Pending alarms, soonest first (of one case, or all)."""
    if case_id:  # "+state": by the case's index; the state's would walk every pending alarm
        return list(db.query("SELECT * FROM alarms WHERE +state = 'pending' AND case_id = ? "
                             "ORDER BY due_at, id", [case_id]))
    return list(db.query("SELECT * FROM alarms WHERE state = 'pending' ORDER BY due_at, id"))


def keep_digest_armed(db: Database, policy: Policy, now: datetime) -> None:
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


def start(db: Database, rules: Mapping[str, Any], case_id: str, event: str,
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


def _ever_armed(db: Database, case_id: str, name: str, ref: str) -> bool:
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


def reconcile(db: Database, rules: Mapping[str, Any], case_id: str | None = None
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
                start=timestamps.parse(started) if started else None,
                due_at=_when(due) if due else None)
    closed = json.dumps(Policy.from_rules(rules).closed_states)
    urgent = db.execute("SELECT id AS case_id FROM cases r WHERE urgent = 1 AND status NOT IN "
                        f"(SELECT value FROM json_each(?)) {only.replace('r.case_id', 'id')}",
                        [closed, *args]).fetchall()
    for (urgent_case,) in urgent:
        start(db, rules, urgent_case, "urgent")


def _when(text: str) -> datetime | date:
    """A stored date ("2026-12-15": by the end of that day) or timestamp."""
    return date.fromisoformat(text) if len(text) == 10 else timestamps.parse(text)


def ended(db: Database, policy: Policy, alarm: Mapping[str, Any], spec: Clock,
          now: datetime) -> str | None:
    """Why the alarm has nothing left to do (one of its clock's ``ends_when``), or None."""
    params = {"case": alarm["case_id"], "ref": alarm["ref"], "since": alarm["armed_at"],
              "now": timestamps.stamp(now), "closed": json.dumps(policy.closed_states)}
    for name in spec.ends_when:
        sql, why = ENDINGS[name]
        if db.execute(sql, params).fetchone():
            return why
    return None


def met(db: Database, policy: Policy, alarm: Mapping[str, Any], now: datetime
        ) -> str | None:
    """Why a pending alarm's clock has been met (or no longer exists), or None."""
    spec = policy.clocks.get(alarm["clock"])
    if alarm["clock"] == DIGEST or spec is None:
        return None
    return ended(db, policy, alarm, spec, now)


def close_met(db: Database, rules: Mapping[str, Any], case_id: str | None = None,
              now: datetime | None = None, *, by_time_only: bool = False) -> list[int]:
    """Disarm the pending alarms (of one case, or all) whose clock has been met; call
    inside your transaction.  ``by_time_only``: only the clocks that time alone can
    end (a ban reaching its end), as the scheduler's pass does: mail that meets a
    clock closes it when it is processed.  Returns their ids."""
    policy, now = Policy.from_rules(rules), now or timestamps.now()
    timed = {c.name for c in policy.clocks.values()
             if any(":now" in ENDINGS[e][0] for e in c.ends_when)}
    closed = []
    for alarm in pending(db, case_id):
        if by_time_only and alarm["clock"] not in timed:
            continue
        why = met(db, policy, alarm, now)
        if why:
            disarm(db, alarm["case_id"], alarm["clock"], ref=alarm["ref"], reason=why)
            closed.append(alarm["id"])
    return closed


def deadlines(db: Database, rules: Mapping[str, Any], now: datetime | None = None
              ) -> list[dict[str, Any]]:
    """Every open clock, soonest first: its due time, its case and what it will do.  A
    clock met since the scheduler last looked is left out: it has nothing left to do."""
    policy = Policy.from_rules(rules)
    now = now or timestamps.now()
    out = []
    for alarm in db.query("SELECT a.id, a.case_id, c.codename, a.clock, a.ref, a.due_at, "
                          "a.armed_at FROM alarms a LEFT JOIN cases c ON c.id = a.case_id "
                          "WHERE a.state = 'pending' ORDER BY a.due_at, a.id"):
        spec = policy.clocks.get(alarm["clock"])
        if met(db, policy, alarm, now):
            continue
        if alarm["clock"] == DIGEST:
            will, unless, about = ["send each member their digest"], [], "the daily digest"
        else:
            will = [ACTIONS[a] for a in spec.do] if spec else []
            unless = [ENDINGS[c][1] for c in spec.ends_when] if spec else []
            about = spec.about if spec else "(no longer in rules/clocks.toml)"
        due = timestamps.parse(alarm["due_at"])
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
