"""Handler: start the clocks a message calls for."""

from __future__ import annotations

from mailflow.clocks import alarms
from mailflow.pipeline.context import Context


def start_clocks(ctx: Context) -> None:
    """Start the clocks a new case calls for (a report's; a delegate's, if an event
    delegate opened it without the incident report form), then those the case's
    records call for, and close the clocks this message met.  After the commands,
    which may have changed the records."""
    if not ctx.case_id:
        return
    db, rules, case_id = ctx.db, ctx.svc.rules, ctx.case_id
    if ctx.new_case:
        alarms.start(db, rules, case_id, "report")
        sender = (ctx.sender or "").lower()
        delegates = {d.lower() for d in ctx.cfg.committee.delegates}
        if sender in delegates and not db.execute(
                "SELECT 1 FROM notes WHERE case_id = ? AND kind = 'event-report'",
                [case_id]).fetchone():
            alarms.start(db, rules, case_id, "delegate", ref=sender)
    alarms.reconcile(db, rules, case_id)
    alarms.close_met(db, rules, case_id)
