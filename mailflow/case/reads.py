"""What the case domain reads of the archive: queries, and nothing that acts.

The case file (:mod:`.casefile`: ``#status`` and ``mailflow case show``) is made of
these.  The modules that act on a case (consensus, sanctions, mediation, resolution,
drafts, the fast path, the final report) import what they read from here.  They are
kept apart because acting loads mail composition, OpenPGP, the outbound queue and the
command machinery, and reading a case needs none of it: ``mailflow case show`` started
in five times ``mailflow ingest``'s time with them (bench/README.md).

Also here: the checks that can hold back closing a case (:data:`CLOSE_CHECKS`, which
the registry lists as its part).
"""

from __future__ import annotations

import json
from typing import Any

from mailflow import timestamps
from mailflow.case import cases
from mailflow.case.menu import SIGNOFF
from mailflow.store.sqlite import Database

# The determinations of the guidelines, as (column or role, label), in their order.
DETERMINATIONS = (
    ("what_happened", "what happened"),
    ("channel", "channel or event"),
    ("violation", "whether it is a violation"),
    ("originator", "originator(s)"),
    ("affected", "affected party(ies)"),
    ("ongoing", "whether it is ongoing"),
    ("safety", "threat to physical safety"),
    ("response", "required response"),
)
# The people the record names (rows of `people`), as opposed to its columns.
RECORD_ROLES = ("originator", "affected", "witness")
PERMANENT = "permanent"
# Interim bans: the event that ends one, as the registry and the notices say it.
INTERIM = {"signoff": "the committee's sign-off of the fast path",
           "review": "the committee's review of the case"}
# The officers' report (a draft's template), and why a case waits for it.
REPORT = "officers-report"
NOT_SENT = "the officers' report has not been sent (#report, then the chair's #confirm)"


def undetermined(db: Database, case_id: str) -> list[str]:
    """Labels of the determinations still missing, in the guidelines' order."""
    rec = cases.record(db, case_id)
    missing = []
    for key, label in DETERMINATIONS:
        known = cases.people(db, case_id, key) if key in RECORD_ROLES else rec[key]
        if not known:
            missing.append(label)
    return missing


def votes(db: Database, proposal_id: int) -> list[dict[str, Any]]:
    return list(db.query("SELECT member, vote, comment, at FROM votes WHERE proposal_id = ? "
                         "ORDER BY at, member", [proposal_id]))


def passed(db: Database, case_id: str, kind: str) -> dict[str, Any] | None:
    """The latest proposal of this kind that passed, unless a newer one is open."""
    rows = list(db.query("SELECT * FROM proposals WHERE case_id = ? AND kind = ? AND "
                         "status IN ('open', 'passed') ORDER BY id DESC LIMIT 1",
                         [case_id, kind]))
    return rows[0] if rows and rows[0]["status"] == "passed" else None


def get_draft(db: Database, draft_id: int) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM drafts WHERE id = ?", [draft_id]))
    if not rows:
        return None
    return {**rows[0], "recipients": json.loads(rows[0]["recipients"])}


def drafts_on_case(db: Database, case_id: str) -> list[dict[str, Any]]:
    return list(db.query("SELECT id, template, to_role, state, author, created_at, decided_by, "
                         "decided_at FROM drafts WHERE case_id = ? ORDER BY id", [case_id]))


def current_draft(db: Database, draft_id: int) -> dict[str, Any] | None:
    """The draft, or the one that replaced it by edits (``#edit``), as it now stands."""
    while True:
        draft = get_draft(db, draft_id)
        if draft is None or draft["state"] != "replaced":
            return draft
        newer = db.execute("SELECT id FROM drafts WHERE replaces = ?", [draft_id]).fetchone()
        if newer is None:
            return draft
        draft_id = newer[0]


def draft_state(db: Database, draft_id: int) -> str:
    """The state of a draft, following edits to the draft that replaced it."""
    draft = current_draft(db, draft_id)
    return draft["state"] if draft else "missing"


def latest_consultation(db: Database, case_id: str) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM consultations WHERE case_id = ? ORDER BY id DESC "
                         "LIMIT 1", [case_id]))
    return rows[0] if rows else None


def current_mediation(db: Database, case_id: str) -> dict[str, Any] | None:
    """The latest mediation proposal of the case, with its consents."""
    rows = list(db.query("SELECT * FROM mediations WHERE case_id = ? AND status != 'superseded'"
                         " ORDER BY id DESC LIMIT 1", [case_id]))
    if not rows:
        return None
    return {**rows[0], "consents": list(db.query(
        "SELECT party, role, draft_id, answer, proposed, answered_at, recorded_by, how "
        "FROM consents "
        "WHERE mediation_id = ? ORDER BY role DESC, party", [rows[0]["id"]]))}


def ban_status(ban: dict[str, Any]) -> str:
    """upcoming, current, expired or lifted, by the clock: a ban expires by itself."""
    stamp = timestamps.stamp()
    if ban["lifted_at"]:
        return "lifted"
    if ban["starts_at"] > stamp:
        return "upcoming"
    if ban["ends_at"] and ban["ends_at"] <= stamp:
        return "expired"
    return "current"


def describe_ban(ban: dict[str, Any]) -> dict[str, Any]:
    """A ban row with its state and the words templates use: start, end, duration."""
    starts = timestamps.parse(ban["starts_at"])
    ends = timestamps.parse(ban["ends_at"]) if ban["ends_at"] else None
    days = (ends.date() - starts.date()).days if ends else None
    interim = INTERIM.get(ban.get("until_event") or "") if ends is None else None
    return {
        **ban,
        "status": ban_status(ban),
        "permanent": ends is None and interim is None,
        "interim": interim is not None,
        "start": starts.date().isoformat(),
        "end": ends.date().isoformat() if ends else interim or PERMANENT,
        "duration": (f"{days} day{'s' * (days != 1)}" if days is not None
                     else "interim" if interim else PERMANENT),
        "spaces": "all community spaces" if ban["scope"] == "all"
                  else ban["scope"].replace(",", ", "),
    }


def bans(db: Database, case_id: str | None = None) -> list[dict[str, Any]]:
    where, args = ("WHERE case_id = ?", [case_id]) if case_id else ("", [])
    return [describe_ban(b) for b in db.query(f"SELECT * FROM bans {where} ORDER BY id", args)]


def case_flags(db: Database, case_id: str) -> list[str]:
    return [r[0] for r in db.execute("SELECT flag FROM case_flags WHERE case_id = ? ORDER BY id",
                                     [case_id])]


def notes(db: Database, case_id: str) -> list[dict[str, Any]]:
    """The case's records, in the order they were filed."""
    return [{**n, "participants": json.loads(n["participants"])}
            for n in db.query("SELECT * FROM notes WHERE case_id = ? ORDER BY id", [case_id])]


def clock_history(db: Database, case_id: str) -> list[dict[str, Any]]:
    """Every alarm of a case, in the order they were armed: for the case view."""
    return list(db.query("SELECT id, clock, ref, armed_at, due_at, state, fired_at, late, "
                         "outcome FROM alarms WHERE case_id = ? ORDER BY id", [case_id]))


def fast_path_unsigned(db: Database, case_id: str) -> str | None:
    """Close-blocker: the fast path was used and the committee has not signed it off."""
    if not cases.record(db, case_id)["severe_at"]:
        return None
    if passed(db, case_id, SIGNOFF):
        return None
    return "the clear-and-severe fast path is not signed off yet (#signoff)"


def report_not_sent(db: Database, case_id: str) -> str | None:
    """Close-blocker: no report sent since the case was opened or last reviewed."""
    sent = db.execute("SELECT max(decided_at) FROM drafts WHERE case_id = ? AND template = ? "
                      "AND state = 'sent'", [case_id, REPORT]).fetchone()[0]
    review = db.execute("SELECT grievance_at FROM case_record WHERE case_id = ?",
                        [case_id]).fetchone()
    if sent is None or (review and review[0] and sent < review[0]):
        return NOT_SENT
    return None


# Why a case cannot close yet: each check gives the reason, or None.
CLOSE_CHECKS = (
    fast_path_unsigned,  # the clear-and-severe fast path is not signed off
    report_not_sent,     # the officers' report has not been sent
)


def close_blockers(db: Database, case_id: str) -> list[str]:
    """Why the case cannot close yet, by each of :data:`CLOSE_CHECKS`."""
    return [why for check in CLOSE_CHECKS if (why := check(db, case_id))]
