"""Handler: start the clocks a message calls for."""

from __future__ import annotations

from mailflow.clocks import alarms
from mailflow.pipeline.context import Context


def start_clocks(ctx: Context) -> None:
    """After the commands: a new case starts the clocks that start
    with a report (and, if an event delegate opened it without the event incident
    report form, the delegate's); then the clocks the case's records call for."""
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
