"""Telling the reporter, and carrying the response out.

Once a response is agreed, but before it is enacted, the reporter is told what the
committee will do and invited to give feedback (``#consult``, a draft the chair
confirms).  The reporter's replies from then until enactment are filed as feedback.
``#enact`` refuses until the consultation was actually sent.

``#reply`` is the one way a member's words reach the reporter, and it too is a
draft the chair confirms: nothing else a member writes ever leaves the committee.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailflow import timestamps
from mailflow.case import cases, consensus
from mailflow.case.calls import file_note
from mailflow.case.reads import draft_state, latest_consultation, passed
from mailflow.commands.spec import CommandError, Invocation, command
from mailflow.responses import drafts
from mailflow.store.sqlite import Database

if TYPE_CHECKING:
    from mailflow.pipeline.context import Context


def consulted(db: Database, case_id: str, proposal_id: int) -> str | None:
    """Why the reporter does not count as consulted on this proposal, or None."""
    c = latest_consultation(db, case_id)
    if c is None or c["proposal_id"] != proposal_id:
        return "the reporter has not been told the agreed response yet: #consult first"
    state = draft_state(db, c["draft_id"])
    if state != "sent":
        return (f"the consultation of the reporter (draft {c['draft_id']}) is {state}, not sent:"
                " the chair must #confirm it first")
    return None


def _agreed(inv: Invocation) -> dict:
    proposal = passed(inv.db, inv.case_id, consensus.RESPONSE)
    if proposal is None:
        raise CommandError("the committee has not agreed on a response yet (#propose, #vote)")
    return proposal


@command("consult", summary="draft the mail telling the reporter the agreed response and "
         "inviting their feedback (the chair confirms it); their replies are filed as feedback",
         usage="#consult", example="#consult", states=(cases.OPEN,))
def _consult(inv: Invocation) -> str:
    proposal = _agreed(inv)
    response = consensus.describe(proposal["response"], proposal["detail"])
    draft_id = drafts.create_draft(inv.db, inv.svc, case_id=inv.case_id, template="consultation",
                                   to_role="reporter", context={"response": response},
                                   author=inv.actor)
    inv.db.execute("INSERT INTO consultations (case_id, proposal_id, draft_id, author, at) "
                   "VALUES (?, ?, ?, ?, ?)",
                   [inv.case_id, proposal["id"], draft_id, inv.actor, timestamps.stamp()])
    return (f"consultation of the reporter on {response} drafted (draft {draft_id}); "
            "once the chair confirms it, #enact is possible")


@command("enact", summary="record that the agreed response is being carried out; refused "
         "until the reporter was consulted (#consult, confirmed by the chair)",
         usage="#enact [how]", example="#enact reprimand sent by the chair", states=(cases.OPEN,))
def _enact(inv: Invocation) -> str:
    proposal = _agreed(inv)
    why_not = consulted(inv.db, inv.case_id, proposal["id"])
    if why_not:
        raise CommandError(why_not)
    rec = cases.record(inv.db, inv.case_id)
    if rec["enacted_proposal"] == proposal["id"]:
        raise CommandError(f"this response was already enacted ({rec['enacted_at']})")
    cases.update_record(inv.db, inv.case_id, enacted_at=timestamps.stamp(), enacted_by=inv.actor,
           enacted_proposal=proposal["id"])
    return (f"enacted: {consensus.describe(proposal['response'], proposal['detail'])}. "
            "Its mails go out with #send, bans are recorded with #ban")


@command("reply", block=True, summary="draft a mail to the reporter with your text (the lines "
         "after it, up to #end); it goes out when the chair confirms it",
         usage="#reply\n    text ...\n    #end",
         example="#reply\nThank you; could you tell us the date of the chat messages?\n#end")
def _reply(inv: Invocation) -> str:
    text = inv.block_text("reply")
    draft_id = drafts.create_draft(inv.db, inv.svc, case_id=inv.case_id,
                                   template="reply-to-reporter", to_role="reporter",
                                   context={"text": text}, author=inv.actor)
    return f"reply to the reporter drafted (draft {draft_id}) for the chair to confirm"


def file_feedback(ctx: Context) -> None:
    """File the reporter's mail between the consultation and the enactment as their
    feedback on the proposed response."""
    if ctx.side != "conduct" or ctx.kind != "reply" or not ctx.case_id:
        return
    if (ctx.sender or "").lower() not in cases.reporters(ctx.db, ctx.case_id):
        return
    c = latest_consultation(ctx.db, ctx.case_id)
    if c is None or draft_state(ctx.db, c["draft_id"]) != "sent":
        return
    if cases.record(ctx.db, ctx.case_id)["enacted_proposal"] == c["proposal_id"]:
        return
    note_id = file_note(ctx.db, ctx.case_id, kind="feedback", author=(ctx.sender or "").lower(),
                        text=ctx.parsed.new_text or ctx.parsed.body_text, spool_id=ctx.spool_id)
    ctx.flags.append(f"filed as the reporter's feedback on the proposed response (#{note_id})")
