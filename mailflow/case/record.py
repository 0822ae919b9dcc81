"""The case record: what the guidelines say the committee must determine.

What happened, where (channel or event), whether it is a violation, the originators,
the affected parties, whether it is ongoing or threatens anyone's physical safety,
and the required response (set by consensus, see ``consensus``).  People are rows of
the ``people`` table with a role, never free text.

Also here: closing and reopening a case, which the close checks of
:data:`mailflow.case.reads.CLOSE_CHECKS` may hold back, and ``#status``, which replies
with the case file (:mod:`mailflow.case.casefile`).
"""

from __future__ import annotations

from email.utils import parseaddr

from mailflow import timestamps
from mailflow.case import cases
from mailflow.case.casefile import case_file, format_record
from mailflow.case.reads import RECORD_ROLES, close_blockers
from mailflow.commands.spec import CommandError, Invocation, command
from mailflow.mail.decode import ADDR_SPEC
from mailflow.store.sqlite import Database

YES_NO = ("yes", "no")

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
         states=(cases.OPEN,))
def _what(inv: Invocation) -> str:
    if not inv.cmd.args:
        raise CommandError("say what happened: #what <one line>")
    cases.update_record(inv.db, inv.case_id, what_happened=inv.cmd.args)
    return "recorded what happened"


@command("channel", summary="record the communication channel or event where it happened",
         usage="#channel <channel or event>", example="#channel ITK forum, thread 'Release 6'",
         states=(cases.OPEN,))
def _channel(inv: Invocation) -> str:
    if not inv.cmd.args:
        raise CommandError("say where: #channel <channel or event>")
    cases.update_record(inv.db, inv.case_id, channel=inv.cmd.args)
    return f"channel or event: {inv.cmd.args}"


def _yes_no(inv: Invocation, column: str, label: str) -> str:
    value = inv.cmd.args.lower()
    if value not in YES_NO:
        raise CommandError(f"#{inv.cmd.word} takes yes or no, not {inv.cmd.args!r}")
    cases.update_record(inv.db, inv.case_id, **{column: value})
    if column in ("ongoing", "safety") and value == "yes":
        # The same flag triage sets: urgent cases run the urgent clocks.
        inv.db.execute("UPDATE cases SET urgent = 1 WHERE id = ?", [inv.case_id])
    return f"{label}: {value}"


@command("violation", summary="record whether the incident is a Code of Conduct violation",
         usage="#violation yes|no", example="#violation yes", states=(cases.OPEN,))
def _violation(inv: Invocation) -> str:
    return _yes_no(inv, "violation", "violation")


@command("ongoing", summary="record whether the situation is ongoing (yes marks the case "
         "urgent)", usage="#ongoing yes|no", example="#ongoing no", states=(cases.OPEN,))
def _ongoing(inv: Invocation) -> str:
    return _yes_no(inv, "ongoing", "ongoing")


@command("safety", summary="record whether anyone's physical safety is threatened (yes marks "
         "the case urgent)", usage="#safety yes|no", example="#safety no", states=(cases.OPEN,))
def _safety(inv: Invocation) -> str:
    return _yes_no(inv, "safety", "threat to physical safety")


def add_party(inv: Invocation, role: str) -> str:
    address, name = parse_person(inv.cmd.args)
    if not cases.add_person(inv.db, inv.case_id, role, address, name, actor=inv.actor):
        return f"{inv.cmd.args} was already recorded as {role}"
    result = f"{role}: {inv.cmd.args}"
    if address and inv.cfg.is_member(address):
        from mailflow.case.recusal import recuse  # recusal builds on this module

        result += ". " + recuse(inv.ctx, inv.case_id, {address: f"recorded as {role}"},
                                actor=inv.actor)
    return result


@command("originator", summary="add an originator: who violated the Code and originated the "
         "incident (a member named here is recused)",
         usage="#originator <address | Name <address> | name or handle>",
         example="#originator Sam Example <sam@example.net>", states=(cases.OPEN,))
def _originator(inv: Invocation) -> str:
    return add_party(inv, "originator")


@command("affected", summary="add an affected party",
         usage="#affected <address | Name <address> | name or handle>",
         example="#affected @newcomer42 on the chat", states=(cases.OPEN,))
def _affected(inv: Invocation) -> str:
    return add_party(inv, "affected")


@command("witness", summary="add a witness",
         usage="#witness <address | Name <address> | name or handle>",
         example="#witness Kim <kim@example.net>", states=(cases.OPEN,))
def _witness(inv: Invocation) -> str:
    return add_party(inv, "witness")


@command("remove", summary="take a person off the case in one role (a correction)",
         usage="#remove originator|affected|witness <address or name as recorded>",
         example="#remove witness kim@example.net", states=(cases.OPEN,))
def _remove(inv: Invocation) -> str:
    role, _, who = inv.cmd.args.partition(" ")
    if role.lower() not in RECORD_ROLES:
        raise CommandError(f"#remove takes a role ({', '.join(RECORD_ROLES)}), then who")
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


@command("close", summary="close the case (refused while anything blocks it, e.g. a fast "
         "path not yet signed off)", usage="#close [why]",
         example="#close resolved: reprimand delivered", states=(cases.OPEN,))
def _close(inv: Invocation) -> str:
    blockers = close_blockers(inv.db, inv.case_id)
    if blockers:
        raise CommandError("the case cannot close yet: " + "; ".join(blockers))
    inv.db.execute("UPDATE cases SET status = ? WHERE id = ?", [cases.CLOSED, inv.case_id])
    cases.update_record(inv.db, inv.case_id, closed_at=timestamps.stamp())
    return "case closed"


@command("reopen", summary="reopen a closed case", usage="#reopen [why]",
         example="#reopen the originator came back under a new name", states=(cases.CLOSED,))
def _reopen(inv: Invocation) -> str:
    reopen(inv.db, inv.case_id)
    return "case reopened"


def reopen(db: Database, case_id: str, kind: str | None = None) -> None:
    db.execute("UPDATE cases SET status = ?, kind = coalesce(?, kind) WHERE id = ?",
               [cases.OPEN, kind, case_id])
    cases.update_record(db, case_id, closed_at=None)


# ---------------------------------------------------------------------------------------
# The case file, by mail.


@command("status", summary="reply with the case record, what is still undetermined, the "
         "decisions and votes, and the records filed on the case", usage="#status",
         example="#status")
def _status(inv: Invocation) -> str:
    case = cases.get(inv.db, inv.case_id) or {}
    head = f"Case {inv.case_id} ({case.get('codename')}): {case.get('status')}, {case.get('kind')}"
    return head + "\n\n" + format_record(case_file(inv.db, inv.cfg, inv.case_id))
