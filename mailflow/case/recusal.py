"""Recusal and conflicts of interest.

A recused member receives nothing further of the case (relays, notices and drafts
go to the members deciding it, see ``cases.active_members``) and their votes no
longer count.  Recusal is by ``#recuse``, or automatic: a member named in mail to
the conduct address (by address, or by an alias in ``committee.aliases``) or
recorded as a party is recused before that mail is relayed, and the chair is told.
A recusal is not undone by mail.

If the chair is recused, the other members are asked to name a substitute chair
(``#chair <member>``).  If every member is recused, the case goes to the board:
its status becomes "board" and the board is told, without any identity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailflow.case import cases, consensus
from mailflow.case.notices import notify_committee
from mailflow.commands.spec import CommandError, Invocation, command
from mailflow.mail import render
from mailflow.mail.compose import compose
from mailflow.outbound.queue import enqueue
from mailflow.store import audit

if TYPE_CHECKING:
    from mailflow.pipeline.context import Context


def recuse(ctx: Context, case_id: str, members: dict[str, str], actor: str) -> str:
    """Take members off the case ({member: reason}); returns what happened, for a
    transcript.  All are recused before anyone is told, so that a notice never reaches
    a member recused by the same mail."""
    db, cfg = ctx.db, ctx.cfg
    chair_before = cases.acting_chair(db, cfg, case_id)
    already = cases.recused(db, case_id)
    new = {m.lower(): why for m, why in members.items() if m.lower() not in already}
    if not new:
        return f"{', '.join(members)} {'was' if len(members) == 1 else 'were'} already recused"
    for member, reason in new.items():
        cases.add_person(db, case_id, "recused", member, actor=actor)
        audit.append(db, actor, "recused", case_id, member=member,
                     reason=audit.fingerprint(db, reason))
    result = "; ".join(f"{m} is recused ({why})" for m, why in new.items())
    if not cases.active_members(db, cfg, case_id):
        _to_the_board(ctx, case_id)
        return result + "; every member is now recused, so the case goes to the board"
    consensus.settle_all(ctx, case_id)   # their votes no longer count
    chair = cases.acting_chair(db, cfg, case_id)
    if chair is None:
        if chair_before:  # else they were asked already
            notify_committee(
                ctx, case_id, "The chair is recused: name a substitute",
                f"{chair_before} is recused from case {case_id} ({new[chair_before]}).\n"
                "Chair commands and drafts need a chair: name a substitute by replying\n"
                "with  #chair <member address>")
        return result + "; the members are asked to name a substitute chair (#chair <member>)"
    if actor == "mailflow" or set(new) != {actor}:
        notify_committee(ctx, case_id, f"{', '.join(new)} recused",
                         "".join(f"{m} is recused from case {case_id}: {why}.\n"
                                 for m, why in new.items())
                         + "They receive nothing further of it and their votes do not count.",
                         to=[chair])
        result += "; the chair is told"
    return result


def _to_the_board(ctx: Context, case_id: str) -> None:
    cfg = ctx.cfg
    ctx.db.execute("UPDATE cases SET status = ? WHERE id = ?", [cases.BOARD, case_id])
    audit.append(ctx.db, "mailflow", "every member recused: case goes to the board", case_id)
    if not cfg.committee.board:
        return
    case = cases.get(ctx.db, case_id) or {}
    text = render.render(ctx.svc.templates, "board-escalation", committee=cfg.committee,
                         case_id=case_id, codename=case.get("codename", ""),
                         opened_at=case.get("opened_at", ""))
    msg = compose(cfg, from_=(cfg.committee.name, cfg.committee.conduct_address),
                           to=cfg.committee.board, subject=text.subject, body=text.body,
                           headers={"Auto-Submitted": "auto-generated",
                                    "X-Mailflow-Case": case_id})
    enqueue(ctx.db, msg, kind="escalation", rcpts=cfg.committee.board,
                     envelope_from=cfg.committee.conduct_address, case_id=case_id)


@command("recuse", summary="recuse yourself from the case: you receive nothing further of it "
         "and your votes no longer count", usage="#recuse [reason]",
         example="#recuse I work with the originator")
def _recuse(inv: Invocation) -> str:
    return recuse(inv.ctx, inv.case_id, {inv.actor: inv.cmd.args or "recused themselves"},
                  actor=inv.actor)


@command("chair", summary="name a substitute chair for this case (when the chair is recused "
         "or away)", usage="#chair <member address>", example="#chair m2@example.org",
         states=(cases.OPEN,))
def _chair(inv: Invocation) -> str:
    member = inv.cmd.args.strip().strip("<>").lower()
    if not inv.cfg.is_member(member):
        raise CommandError(f"{member or '(nobody)'} is not a committee member")
    if member in cases.recused(inv.db, inv.case_id):
        raise CommandError(f"{member} is recused from this case")
    if cases.acting_chair(inv.db, inv.cfg, inv.case_id) == member:
        return f"{member} already chairs this case"
    inv.db.execute("DELETE FROM people WHERE case_id = ? AND role = 'acting-chair' AND "
                   "address = ?", [inv.case_id, member])  # re-naming makes them the latest
    cases.add_person(inv.db, inv.case_id, "acting-chair", member, actor=inv.actor)
    notify_committee(inv.ctx, inv.case_id, f"{member} chairs this case",
                     f"{inv.actor} named {member} substitute chair of case {inv.case_id}.")
    return f"{member} chairs this case"
