"""Grievances: the originator may ask for a review of what was decided, and a request
reopens the case as a grievance.  The notices promised the reporter "if they ask
for a review, we will let you know": a request arms the review-request clock, which
reminds the committee until the reporter has been written to (or called)."""

from __future__ import annotations

from mailflow import timestamps
from mailflow.case import cases
from mailflow.case.notices import notify_committee
from mailflow.case.record import reopen
from mailflow.clocks import alarms
from mailflow.pipeline.context import Context, Services
from mailflow.store import audit


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
    return status == cases.CLOSED and (ctx.sender or "").lower() in originators


def detect_grievance(ctx: Context) -> None:
    """Reopen the case as a grievance when the originator asks for a review (mail to
    the review address, or an originator writing on a closed case), and tell the
    committee."""
    if ctx.side != "conduct" or ctx.kind != "reply" or not ctx.case_id:
        return
    if not _asks_for_review(ctx):
        return
    before = cases.get(ctx.db, ctx.case_id) or {}
    if before.get("status") == cases.BOARD:
        ctx.flags.append("the originator asks for a review (the case is with the board)")
        return
    reopen(ctx.db, ctx.case_id, kind="grievance")
    requested = timestamps.stamp()
    cases.update_record(ctx.db, ctx.case_id, grievance_at=requested)
    # A new request (not more mail on a review under way) arms a clock of its own.
    further = before.get("kind") == "grievance" and before.get("status") == cases.OPEN
    told = alarms.start(ctx.db, ctx.svc.rules, ctx.case_id, "review", ref=requested) \
        if cases.reporters(ctx.db, ctx.case_id) and not further else []
    audit.append(ctx.db, "originator", "review requested: reopened as a grievance",
                 ctx.case_id)
    ctx.flags.append("the originator asks for a review: the case is reopened as a grievance")
    notify_committee(
        ctx, ctx.case_id, "Review requested: reopened as a grievance",
        f"{ctx.sender} asked for a review of case {ctx.case_id}; the case is open again,\n"
        "as a grievance.  Their mail follows on the list.  Review what was decided\n"
        "(#status) and agree on a response as for any case (#propose, #vote)."
        + ("\n\nThe reporter was promised to hear of a review request: tell them with\n"
           "  #send review-requested to=reporter\n(a clock reminds the committee until "
           "they have been written to)." if told else ""))
