"""Firing the clocks' alarms: each once, at or after its due time, durably.

:func:`run_due` fires every pending alarm whose time has come, each in a transaction
of its own that also marks it fired, so what it does (queued mail, a draft, a flag)
exists exactly when it is marked fired: a crash before the commit fires it again
later, never twice, and two processes (``serve`` and ``mailflow tick``) cannot both
fire it.  An alarm that fell due while mailflow was down fires at the next start,
once, saying that it is late.

Time is :func:`timestamps.now` at every pass, so ``MAILFLOW_FAKE_NOW`` moves a whole server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mailflow import store, timestamps
from mailflow.case import cases, consensus, reads
from mailflow.case.notices import mail_members
from mailflow.case.sanctions import flag_case
from mailflow.clocks import alarms, digest
from mailflow.clocks.policy import ACTIONS as POLICY_ACTIONS
from mailflow.clocks.policy import DIGEST, Clock, Policy
from mailflow.commands.spec import CommandError, Invocation, command
from mailflow.mail import render
from mailflow.mail.compose import compose
from mailflow.outbound.queue import enqueue
from mailflow.pipeline.context import Services
from mailflow.responses import drafts, redaction
from mailflow.store import audit
from mailflow.store.sqlite import Database

if TYPE_CHECKING:  # the stage's stop signal; the #timeline command needs none of it
    from multiprocessing.synchronize import Event

log = logging.getLogger("mailflow.scheduler")
HELP_TOPIC = "The clocks of the guidelines (`mailflow deadlines` lists them)"
MAX_ATTEMPTS = 5    # an alarm whose action keeps failing is set aside, not retried forever
POLL = 30.0         # seconds between passes at most


@dataclass
class Firing:
    db: Database
    svc: Services
    policy: Policy
    alarm: dict[str, Any]
    spec: Clock
    now: datetime
    late: bool
    next_due: datetime | None        # when the clock runs out again (repeat), if it does

    @property
    def case_id(self) -> str:
        return self.alarm["case_id"]


def run_due(db: Database, svc: Services, now: datetime | None = None) -> int:
    """Fire every alarm due by ``now`` (default: the clock); returns how many fired."""
    now = now or timestamps.now()
    policy = Policy.from_rules(svc.rules)
    with store.transaction(db):
        alarms.keep_digest_armed(db, policy, now)
        # A backstop: records written outside the pipeline still start their clocks;
        # and clocks that time alone meets (a ban that has ended) close.
        alarms.reconcile(db, svc.rules)
        alarms.close_met(db, svc.rules, now=now, by_time_only=True)
    # The digest goes last, so that it tells what this pass did.
    due = db.execute("SELECT id FROM alarms WHERE state = 'pending' AND due_at <= ? "
                     "ORDER BY clock = ?, due_at, id", [timestamps.stamp(now), DIGEST]
                     ).fetchall()
    fired = 0
    for (alarm_id,) in due:
        try:
            with store.transaction(db):
                fired += _fire(db, svc, policy, alarm_id, now)
        except Exception as e:
            log.exception("alarm %s failed", alarm_id)
            _failed(db, alarm_id, f"{type(e).__name__}: {e}")
    return fired


def _fire(db: Database, svc: Services, policy: Policy, alarm_id: int,
          now: datetime) -> int:
    # Read inside the transaction: another process may have fired it since we looked.
    rows = list(db.query("SELECT * FROM alarms WHERE id = ? AND state = 'pending'", [alarm_id]))
    if not rows:
        return 0
    alarm = rows[0]
    late = now - timestamps.parse(alarm["due_at"]) > policy.late_after
    if alarm["clock"] == DIGEST:
        _settle(db, alarm, "fired", digest.send_all(db, svc, policy, now, late), now, late)
        alarms.keep_digest_armed(db, policy, now)
        return 1
    spec = policy.clocks.get(alarm["clock"])
    if spec is None or not spec.do:
        _settle(db, alarm, "ended", "its clock was taken out of rules/clocks.toml or switched "
                "off", now, late)
        return 0
    why = alarms.ended(db, policy, alarm, spec, now)
    if why:
        _settle(db, alarm, "ended", why, now, late)
        return 0
    next_due = policy.add(now, spec.repeat) if spec.repeat else None
    firing = Firing(db, svc, policy, alarm, spec, now, late, next_due)
    did = [ACTIONS[name](firing) for name in spec.do]
    _settle(db, alarm, "fired", "; ".join(did), now, late)
    if next_due:
        alarms.arm(db, svc.rules, alarm["case_id"], spec.name, ref=alarm["ref"],
                   due_at=next_due)
    return 1


def _settle(db: Database, alarm: dict[str, Any], state: str, outcome: str,
            now: datetime, late: bool) -> None:
    db.execute("UPDATE alarms SET state = ?, fired_at = ?, late = ?, outcome = ? WHERE id = ?",
               [state, timestamps.stamp(now), int(late), outcome, alarm["id"]])
    audit.append(db, "mailflow", f"alarm {state}: {alarm['clock']}", alarm["case_id"],
                 alarm=alarm["id"], ref=alarm["ref"], due=alarm["due_at"], late=late,
                 outcome=audit.fingerprint(db, outcome))


def _failed(db: Database, alarm_id: int, error: str) -> None:
    with store.transaction(db):
        db.execute("UPDATE alarms SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                   [error, alarm_id])
        row = db.execute("SELECT attempts, case_id, clock FROM alarms WHERE id = ?",
                         [alarm_id]).fetchone()
        if row and row[0] >= MAX_ATTEMPTS:
            db.execute("UPDATE alarms SET state = 'failed' WHERE id = ?", [alarm_id])
            audit.append(db, "mailflow", f"alarm failed: {row[2]}", row[1], alarm=alarm_id,
                         error=audit.fingerprint(db, error))


# -- what an alarm does ----------------------------------------------------------------

def _reminder(f: Firing, members: list[str], audience: str) -> str:
    if not members:
        return "nobody to remind: every member is recused"
    case = cases.get(f.db, f.case_id)
    text = render.render(
        f.svc.templates, "alarm", committee=f.svc.cfg.committee, case=case,
        clock=f.spec.name, about=f.spec.about, ref=f.alarm["ref"],
        due=f.policy.show(timestamps.parse(f.alarm["due_at"])), late=f.late,
        fired=f.policy.show(f.now), flags=reads.case_flags(f.db, f.case_id),
        next_due=f.policy.show(f.next_due) if f.next_due else None)
    mail_members(f.db, f.svc, f.case_id, members, subject=text.subject, body=text.body,
                       kind="alarm")
    return f"reminded {audience}"


def remind_chair(f: Firing) -> str:
    chair = cases.acting_chair(f.db, f.svc.cfg, f.case_id)
    if chair is None:  # every chair is recused: the committee must name one
        return _reminder(f, cases.active_members(f.db, f.svc.cfg, f.case_id),
                         "the committee (no chair for this case)")
    return _reminder(f, [chair], "the chair")


def remind_committee(f: Firing) -> str:
    return _reminder(f, cases.active_members(f.db, f.svc.cfg, f.case_id), "the committee")


def status_update(db: Database, svc: Services, case_id: str, projected: date,
                  author: str, reason: str) -> int:
    """Draft the update to the reporter with a projected date; only the chair's
    ``#confirm`` sends it.  An unsent update with an older date is withdrawn, so the
    chair cannot confirm a stale one."""
    stale = [r[0] for r in db.execute("SELECT id FROM drafts WHERE case_id = ? AND template = "
                                      "'status-update' AND state = 'pending'", [case_id])]
    draft_id = drafts.create_draft(
        db, svc, case_id=case_id, template="status-update", to_role="reporter",
        context={"projected": projected.isoformat(), "reason": reason}, author=author)
    for old in stale:
        db.execute("UPDATE drafts SET state = 'discarded', decided_by = ?, decided_at = ? "
                   "WHERE id = ?", [author, timestamps.stamp(), old])
        audit.append(db, author, "draft discarded", case_id, draft=old, replaced_by=draft_id)
    return draft_id


def draft_status_update(f: Firing) -> str:
    projected = f.policy.local(f.next_due or f.now + timedelta(weeks=1)).date()
    try:
        draft_id = status_update(f.db, f.svc, f.case_id, projected, "mailflow",
                                 f"the {f.spec.name} clock ran out")
    except drafts.DraftError as e:  # no reporter address, every chair recused ...
        return f"{remind_committee(f)}: no status update could be drafted ({e})"
    return f"drafted status update #{draft_id} (projected {projected}) for the chair"


def officers(f: Firing) -> str:
    """The deadlock, with the proposal and every vote, to the officers (the guidelines
    hand it to them; no chair's confirmation can hold it back), and a copy to the
    committee.  The alarm's ref is the proposal."""
    cfg = f.svc.cfg
    rows = list(f.db.query("SELECT * FROM proposals WHERE id = ? AND case_id = ?",
                           [f.alarm["ref"], f.case_id]))
    if not rows:
        return remind_committee(f) + " (the deadlocked proposal is gone)"
    proposal = rows[0]
    votes = reads.votes(f.db, proposal["id"])
    members = cases.active_members(f.db, cfg, f.case_id)
    voted = {v["member"] for v in votes}
    since = proposal["deadlocked_at"] or f.alarm["armed_at"]
    text = render.render(
        f.svc.templates, "deadlock", committee=cfg.committee,
        case=cases.get(f.db, f.case_id), tag=cases.case_tag(cfg, f.case_id), proposal=proposal,
        response=consensus.describe(proposal["response"], proposal["detail"]), votes=votes,
        not_voted=[m for m in members if m not in voted],
        proposed=f.policy.show(timestamps.parse(proposal["proposed_at"])),
        since=f.policy.show(timestamps.parse(since)), late=f.late)
    # The members' words may name the reporter or a witness: the officers read labels.
    hidden = redaction.protected(f.db, f.case_id, cfg.committee.officers)
    subject, body = redaction.redact(text.subject, hidden), redaction.redact(text.body, hidden)
    # The officers' answer goes to the case, like any mail on it.
    reply_to = f"conduct+{f.svc.signer.case_token(f.case_id)}@{cfg.committee.domain}"
    msg = compose(
        cfg, from_=(cfg.committee.name, cfg.committee.committee_address),
        to=cfg.committee.officers, subject=subject, body=body, reply_to=reply_to,
        headers={"Auto-Submitted": "auto-generated", "X-Mailflow-Case": f.case_id})
    enqueue(f.db, msg, kind="escalation", rcpts=cfg.committee.officers,
                     envelope_from="", case_id=f.case_id)
    mail_members(f.db, f.svc, f.case_id, members, subject=f"Sent to the officers: {subject}",
                       body=body, kind="alarm")
    return f"sent the deadlock to the officers ({', '.join(cfg.committee.officers)})"


def flag(f: Firing) -> str:
    flag_case(f.db, f.case_id, f"clock ran out: {f.spec.name}")
    return "flagged the case"


ACTIONS: dict[str, Callable[[Firing], str]] = {
    "remind-chair": remind_chair,
    "remind-committee": remind_committee,
    "draft-status-update": draft_status_update,
    "officers": officers,
    "flag": flag,
}
assert set(ACTIONS) == set(POLICY_ACTIONS)


# -- #timeline -------------------------------------------------------------------------

@command("timeline", summary="set the projected date of resolution: the resolution clock "
         "runs to that day, and the update to the reporter is drafted for the chair's #confirm",
         usage="#timeline YYYY-MM-DD", example="#timeline 2026-12-15")
def _timeline(inv: Invocation) -> str:
    try:
        day = date.fromisoformat(inv.cmd.args.strip())
    except ValueError:
        raise CommandError("give the projected date as YYYY-MM-DD") from None
    rules = inv.ctx.svc.rules
    policy = Policy.from_rules(rules)
    if (cases.get(inv.db, inv.case_id) or {}).get("status") in policy.closed_states:
        raise CommandError("the case is closed")
    if day <= policy.local(timestamps.now()).date():
        raise CommandError(f"{day} is not in the future")
    alarms.arm(inv.db, rules, inv.case_id, "resolution", due_at=day,
               detail={"projected": day.isoformat(), "by": inv.actor})
    draft_id = status_update(inv.db, inv.ctx.svc, inv.case_id, day, inv.actor,
                             f"{inv.actor} set the projected date")
    return (f"projected resolution by {day}; the resolution clock now runs to "
            f"{policy.show(policy.at(day, policy.closes))}. The update to the reporter is "
            f"draft #{draft_id}: the chair sends it with #confirm {draft_id}")


# -- running ---------------------------------------------------------------------------

def seconds_to_next(db: Database) -> float:
    row = db.execute("SELECT min(due_at) FROM alarms WHERE state = 'pending'").fetchone()
    if not row or row[0] is None:
        return POLL
    # At least a second, so an alarm that fails does not spin.
    return min(max((timestamps.parse(row[0]) - timestamps.now()).total_seconds(), 1.0), POLL)


def catch_up(svc: Services) -> int:
    """Fire what fell due while mailflow was down, before it takes new mail."""
    db = store.connect(svc.cfg.db_path)
    try:
        return run_due(db, svc)
    finally:
        db.close()


def run_forever(svc: Services, stop: Event, on_output: Callable[[], None]) -> None:
    """The scheduler stage of ``mailflow serve``."""
    db = store.connect(svc.cfg.db_path)
    while not stop.is_set():
        try:
            if run_due(db, svc):
                on_output()
            wait = seconds_to_next(db)
        except Exception:
            log.exception("scheduler pass failed; retrying shortly")
            wait = POLL
        stop.wait(wait)
