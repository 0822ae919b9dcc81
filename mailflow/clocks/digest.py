"""The digest: to each member, the open cases they are on (never one they are recused
from), with what is due, what is overdue and what waits for them; and the held mail
waiting for the chair (never what names the member).

It is an alarm like any other (``DIGEST``), re-armed for the next digest time
each time it fires, so a restart neither skips nor repeats one.

It says only what is true: a clock already met is not listed, and every thing that
waits for the member comes with the exact command that does it (``#vote 3 agree``,
``#signoff``, ``#confirm 7``), which works when sent in reply to the case's mail.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mailflow import timestamps
from mailflow.case import cases, consensus, held, keys, severe
from mailflow.case.notices import mail_members
from mailflow.clocks import alarms
from mailflow.clocks.policy import Policy
from mailflow.commands.spec import CommandError
from mailflow.mail import render
from mailflow.responses.drafts import confirm_code
from mailflow.store import audit
from mailflow.store.sqlite import Database

if TYPE_CHECKING:
    from mailflow.pipeline.context import Services

HELD_LISTED = 20  # the newest held messages a digest lists (it says how many there are)


def send_all(db: Database, svc: Services, policy: Policy, now: datetime,
             late: bool) -> str:
    cfg = svc.cfg
    board = open_cases(db, policy, now)
    # The chair's copy anchors the audit log outside the archive (audit verify --head).
    newest = audit.head(db)
    audit_head = f"{newest[0]}:{newest[1][:23]}" if newest else ""
    sent = []
    for member in cfg.committee.members:
        entries = for_member(db, svc, board, member.lower())
        waiting = held.listing(db, hide_from=member)  # never what names them
        warnings = keys.expiry_warnings(svc.pgp_in_use(), cfg, member.lower(), now)
        busy = waiting or warnings or any(e["due"] or e["overdue"] or e["waiting"]
                                          for e in entries)
        if not busy and not policy.digest.send_empty:
            continue
        day = policy.local(now)
        text = render.render(svc.templates, "digest", committee=cfg.committee,
                             member=member, cases=entries, late=late, keys=warnings,
                             audit_head=audit_head if cfg.is_chair(member) else "",
                             day=f"{day:%A} {day.day} {day:%B %Y}",
                             held=[held.describe(r) for r in waiting[-HELD_LISTED:]],
                             held_count=len(waiting),
                             held_older=max(len(waiting) - HELD_LISTED, 0))
        mail_members(db, svc, None, [member.lower()], subject=text.subject,
                           body=text.body, kind="digest")
        sent.append(member.lower())
    return (f"sent digests to {', '.join(sent)}" if sent
            else "no member had anything due, overdue or waiting")


def open_cases(db: Database, policy: Policy, now: datetime
               ) -> list[dict[str, Any]]:
    """Every open case with what is due and overdue on it."""
    rows = db.query("SELECT id, codename, status, urgent FROM cases WHERE status NOT IN "
                    "(SELECT value FROM json_each(?)) ORDER BY year, seq",
                    [json.dumps(policy.closed_states)])
    out = []
    for case in rows:
        due, overdue = _clocks(db, policy, case["id"], now)
        out.append({**case, "due": due, "overdue": overdue, "bounced": bounced(db, case["id"])})
    return out


def bounced(db: Database, case_id: str) -> list[str]:
    """The case's mail that came back as bounced (the members were told at the time)."""
    return [f"{r[0]} to {r[1]}" for r in db.execute(
        "SELECT o.kind, r.rcpt FROM outbound o JOIN outbound_rcpt r ON r.outbound_id = o.id "
        "WHERE o.case_id = ? AND r.state = 'failed' AND r.last_error LIKE 'bounced:%' "
        "ORDER BY o.id", [case_id])]


def for_member(db: Database, svc: Services, board: list[dict[str, Any]],
               member: str) -> list[dict[str, Any]]:
    """The open cases ``member`` is on, never one they are recused from, each with what
    waits for them."""
    return [{**case, "waiting": waiting_for(db, svc, case["id"], member)} for case in board
            if member not in cases.recused(db, case["id"])]


def _clocks(db: Database, policy: Policy, case_id: str, now: datetime
            ) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    horizon = timestamps.stamp(policy.add(now, policy.digest.due_within))
    due: list[dict[str, str]] = []
    overdue: list[dict[str, str]] = []
    for alarm in db.query("SELECT * FROM alarms WHERE case_id = ? AND state = 'pending' "
                          "AND due_at <= ? ORDER BY due_at", [case_id, horizon]):
        if alarms.met(db, policy, alarm, now):
            continue
        spec = policy.clocks.get(alarm["clock"])
        item = {"when": policy.show(timestamps.parse(alarm["due_at"])),
                "what": spec.about if spec else alarm["clock"]}
        (overdue if alarm["due_at"] < timestamps.stamp(now) else due).append(item)
    # A clock that flags the case stays overdue until it ends (e.g. the reporter was
    # contacted, a response agreed), counted from the first time it ran out.
    seen = set()
    for alarm in db.query("SELECT * FROM alarms WHERE case_id = ? AND state = 'fired' "
                          "ORDER BY due_at", [case_id]):
        spec = policy.clocks.get(alarm["clock"])
        key = (alarm["clock"], alarm["ref"])
        if spec is None or "flag" not in spec.do or key in seen:
            continue
        seen.add(key)
        if alarms.ended(db, policy, alarm, spec, now) is None:
            overdue.append({"when": policy.show(timestamps.parse(alarm["due_at"])),
                            "what": spec.about})
    return due, overdue


def waiting_for(db: Database, svc: Services, case_id: str, member: str
                ) -> list[dict[str, str]]:
    """What the case waits for from this member: ``what`` in words and ``command``, the
    exact line that does it."""
    cfg = svc.cfg
    items = []
    for p in db.query("SELECT id, kind, response, detail FROM proposals WHERE case_id = ? AND "
                      "status = 'open' AND id NOT IN (SELECT proposal_id FROM votes WHERE "
                      "member = ?) ORDER BY id", [case_id, member]):
        if p["kind"] == consensus.SIGNOFF:
            items.append({"what": "your sign-off of the clear-and-severe fast path "
                                  f"(sign-off item {p['id']})",
                          "command": "#signoff agree", "or": "#signoff object <why>"})
        else:
            items.append({"what": f"your vote on proposal {p['id']}: {consensus.what(p)}",
                          "command": f"#vote {p['id']} agree",
                          "or": f"#vote {p['id']} object <why>"})
    if cases.acting_chair(db, cfg, case_id) == member:
        for d in db.query("SELECT id, case_id, template, to_role FROM drafts WHERE "
                          "case_id = ? AND state = 'pending' ORDER BY id", [case_id]):
            try:
                severe.hold_notice(db, d)
                after = ""
            except CommandError:  # a fast-path notice: its instruction comes first
                after = ", after the instruction to the moderators above"
            items.append({"what": f"your confirmation of draft {d['id']} ({d['template']} "
                                  f"to the {d['to_role']}){after}",
                          # Its code, as in the draft's mail: the digest is the chair's.
                          "command": f"#confirm {d['id']} "
                                     f"{confirm_code(svc, case_id, d['id'], member)}",
                          "or": f"#discard {d['id']}"})
    return items
