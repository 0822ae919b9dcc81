"""The case record: what the guidelines say the committee must determine.

What happened, where (channel or event), whether it is a violation, the originators,
the affected parties, whether it is ongoing or threatens anyone's physical safety,
and the required response (set by consensus, see ``consensus``).  People are rows of
the ``people`` table with a role, never free text.

Also here: closing and reopening a case, the close-blockers other modules register
in :data:`CLOSE_CHECKS`, the grievance (an originator asking for a review reopens
the case), and :func:`notify_committee` for mailflow's own notices to the members.
"""

from __future__ import annotations

from collections.abc import Callable
from email.utils import parseaddr
from typing import TYPE_CHECKING, Any

import sqlite_utils

from . import audit, cases, clock
from .commands import CommandError, Invocation, command
from .message import ADDR_SPEC
from .relay import mail_members

if TYPE_CHECKING:
    from .pipeline import Context, Services

# Why a case cannot close yet: each check returns the reason, or None.  Other modules
# append theirs (the severe path's sign-off, the final report having been sent, ...).
CLOSE_CHECKS: list[Callable[[sqlite_utils.Database, str], str | None]] = []

YES_NO = ("yes", "no")
PERSON_ROLES = ("originator", "affected", "witness")
# Statuses a case can be in.  "board": every member is recused, the board has it.
OPEN, CLOSED, BOARD = "open", "closed", "board"
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


def record(db: sqlite_utils.Database, case_id: str) -> dict[str, Any]:
    """The case's record (all undetermined before anything was recorded)."""
    rows = list(db.query("SELECT * FROM case_record WHERE case_id = ?", [case_id]))
    if rows:
        return rows[0]
    return {**dict.fromkeys(db.table("case_record").columns_dict), "case_id": case_id}


def update(db: sqlite_utils.Database, case_id: str, **fields: Any) -> None:
    db.execute("INSERT OR IGNORE INTO case_record (case_id, updated_at) VALUES (?, ?)",
               [case_id, clock.stamp()])
    names = ", ".join(f"{k} = ?" for k in fields)
    db.execute(f"UPDATE case_record SET {names}, updated_at = ? WHERE case_id = ?",
               [*fields.values(), clock.stamp(), case_id])
    cases.touch(db, case_id)


def undetermined(db: sqlite_utils.Database, case_id: str) -> list[str]:
    """Labels of the determinations still missing, in the guidelines' order."""
    rec = record(db, case_id)
    missing = []
    for key, label in DETERMINATIONS:
        known = cases.people(db, case_id, key) if key in PERSON_ROLES else rec[key]
        if not known:
            missing.append(label)
    return missing


def notify_committee(ctx: Context, case_id: str, subject: str, body: str,
                     to: list[str] | None = None) -> None:
    """A notice from mailflow to the members deciding the case (never the recused)."""
    active = cases.active_members(ctx.db, ctx.cfg, case_id)
    members = [m for m in (to if to is not None else active) if m in active]
    if members:
        mail_members(ctx.db, ctx.svc, case_id, members, subject=subject, body=body.rstrip() + "\n",
                     kind="notice")


def parse_person(text: str) -> tuple[str, str]:
    """(address, name) from ``Name <address>``, ``address`` or a name or handle."""
    text = text.strip()
    if "<" in text:
        name, address = parseaddr(text)
        if not ADDR_SPEC.match(address):
            raise CommandError(f"{address!r} is not an email address")
        return address.lower(), name.strip()
    if "@" in text and " " not in text and ADDR_SPEC.match(text):
        return text.lower(), ""
    if not text:
        raise CommandError("say who: an address, Name <address>, or a name or handle")
    return "", text


# ---------------------------------------------------------------------------------------
# The determinations.

@command("what", summary="record what happened, in one line (replaces the earlier statement)",
         usage="#what <what happened>",
         example="#what repeated insults towards a newcomer in the #dev chat on 3 May",
         states=(OPEN,))
def _what(inv: Invocation) -> str:
    if not inv.cmd.args:
        raise CommandError("say what happened: #what <one line>")
    update(inv.db, inv.case_id, what_happened=inv.cmd.args)
    return "recorded what happened"


@command("channel", summary="record the communication channel or event where it happened",
         usage="#channel <channel or event>", example="#channel ITK forum, thread 'Release 6'",
         states=(OPEN,))
def _channel(inv: Invocation) -> str:
    if not inv.cmd.args:
        raise CommandError("say where: #channel <channel or event>")
    update(inv.db, inv.case_id, channel=inv.cmd.args)
    return f"channel or event: {inv.cmd.args}"


def _yes_no(inv: Invocation, column: str, label: str) -> str:
    value = inv.cmd.args.lower()
    if value not in YES_NO:
        raise CommandError(f"#{inv.cmd.word} takes yes or no, not {inv.cmd.args!r}")
    update(inv.db, inv.case_id, **{column: value})
    if column in ("ongoing", "safety") and value == "yes":
        # The same flag triage sets: urgent cases run the urgent clocks.
        inv.db.execute("UPDATE cases SET urgent = 1 WHERE id = ?", [inv.case_id])
    return f"{label}: {value}"


@command("violation", summary="record whether the incident is a Code of Conduct violation",
         usage="#violation yes|no", example="#violation yes", states=(OPEN,))
def _violation(inv: Invocation) -> str:
    return _yes_no(inv, "violation", "violation")


@command("ongoing", summary="record whether the situation is ongoing (yes marks the case "
         "urgent)", usage="#ongoing yes|no", example="#ongoing no", states=(OPEN,))
def _ongoing(inv: Invocation) -> str:
    return _yes_no(inv, "ongoing", "ongoing")


@command("safety", summary="record whether anyone's physical safety is threatened (yes marks "
         "the case urgent)", usage="#safety yes|no", example="#safety no", states=(OPEN,))
def _safety(inv: Invocation) -> str:
    return _yes_no(inv, "safety", "threat to physical safety")


def add_party(inv: Invocation, role: str) -> str:
    address, name = parse_person(inv.cmd.args)
    if not cases.add_person(inv.db, inv.case_id, role, address, name, actor=inv.actor):
        return f"{inv.cmd.args} was already recorded as {role}"
    result = f"{role}: {inv.cmd.args}"
    if address and inv.cfg.is_member(address):
        from .recusal import recuse  # recusal builds on this module

        result += ". " + recuse(inv.ctx, inv.case_id, {address: f"recorded as {role}"},
                                actor=inv.actor)
    return result


@command("originator", summary="add an originator: who violated the Code and originated the "
         "incident (a member named here is recused)",
         usage="#originator <address | Name <address> | name or handle>",
         example="#originator Sam Example <sam@example.net>", states=(OPEN,))
def _originator(inv: Invocation) -> str:
    return add_party(inv, "originator")


@command("affected", summary="add an affected party",
         usage="#affected <address | Name <address> | name or handle>",
         example="#affected @newcomer42 on the chat", states=(OPEN,))
def _affected(inv: Invocation) -> str:
    return add_party(inv, "affected")


@command("witness", summary="add a witness",
         usage="#witness <address | Name <address> | name or handle>",
         example="#witness Kim <kim@example.net>", states=(OPEN,))
def _witness(inv: Invocation) -> str:
    return add_party(inv, "witness")


@command("remove", summary="take a person off the case in one role (a correction)",
         usage="#remove originator|affected|witness <address or name as recorded>",
         example="#remove witness kim@example.net", states=(OPEN,))
def _remove(inv: Invocation) -> str:
    role, _, who = inv.cmd.args.partition(" ")
    if role.lower() not in PERSON_ROLES:
        raise CommandError(f"#remove takes a role ({', '.join(PERSON_ROLES)}), then who")
    address, name = parse_person(who)
    cur = inv.db.execute(
        "DELETE FROM people WHERE case_id = ? AND role = ? AND "
        "((? != '' AND address = ?) OR (? = '' AND name = ?))",
        [inv.case_id, role.lower(), address, address, address, name])
    if not cur.rowcount:
        raise CommandError(f"nobody recorded as {role.lower()} matches {who.strip()!r}")
    return f"removed {who.strip()} as {role.lower()}"


# ---------------------------------------------------------------------------------------
# Closing and reopening.

def close_blockers(db: sqlite_utils.Database, case_id: str) -> list[str]:
    return [why for check in CLOSE_CHECKS if (why := check(db, case_id))]


@command("close", summary="close the case (refused while anything blocks it, e.g. a fast "
         "path not yet signed off)", usage="#close [why]",
         example="#close resolved: reprimand delivered", states=(OPEN,))
def _close(inv: Invocation) -> str:
    blockers = close_blockers(inv.db, inv.case_id)
    if blockers:
        raise CommandError("the case cannot close yet: " + "; ".join(blockers))
    inv.db.execute("UPDATE cases SET status = ? WHERE id = ?", [CLOSED, inv.case_id])
    update(inv.db, inv.case_id, closed_at=clock.stamp())
    return "case closed"


@command("reopen", summary="reopen a closed case", usage="#reopen [why]",
         example="#reopen the originator came back under a new name", states=(CLOSED,))
def _reopen(inv: Invocation) -> str:
    reopen(inv.db, inv.case_id)
    return "case reopened"


def reopen(db: sqlite_utils.Database, case_id: str, kind: str | None = None) -> None:
    db.execute("UPDATE cases SET status = ?, kind = coalesce(?, kind) WHERE id = ?",
               [OPEN, kind, case_id])
    update(db, case_id, closed_at=None)


# ---------------------------------------------------------------------------------------
# Grievances: the originator may ask for a review.

def review_address(svc: Services, case_id: str) -> str:
    """Where the originator asks for a review: a signed purpose token of the case."""
    token = svc.signer.sign(case_id, "review")
    return f"conduct+{token}@{svc.cfg.committee.domain}"


def _asks_for_review(ctx: Context) -> bool:
    fields = ctx.svc.signer.unsign(ctx.token) if ctx.token else None
    if fields and fields[1:] == ["review"]:
        return True
    originators = {p["address"] for p in cases.people(ctx.db, ctx.case_id or "", "originator")}
    status = (cases.get(ctx.db, ctx.case_id or "") or {}).get("status")
    return status == CLOSED and (ctx.sender or "").lower() in originators


def detect_grievance(ctx: Context) -> None:
    """Pipeline handler: mail to the review address, or an originator writing on a closed
    case, reopens the case as a grievance and tells the committee."""
    if ctx.side != "conduct" or ctx.kind != "reply" or not ctx.case_id:
        return
    if not _asks_for_review(ctx):
        return
    if (cases.get(ctx.db, ctx.case_id) or {}).get("status") == BOARD:
        ctx.flags.append("the originator asks for a review (the case is with the board)")
        return
    reopen(ctx.db, ctx.case_id, kind="grievance")
    update(ctx.db, ctx.case_id, grievance_at=clock.stamp())
    audit.append(ctx.db, ctx.sender or "unknown", "review requested: reopened as a grievance",
                 ctx.case_id)
    ctx.flags.append("the originator asks for a review: the case is reopened as a grievance")
    notify_committee(
        ctx, ctx.case_id, "Review requested: reopened as a grievance",
        f"{ctx.sender} asked for a review of case {ctx.case_id}; the case is open again,\n"
        "as a grievance.  Their mail follows on the list.  Review what was decided\n"
        "(#status) and agree on a response as for any case (#propose, #vote).")
