"""Handler, before threading: the mail that is not simply a report or a reply.

- Mail the chair released from held (:mod:`mailflow.case.held`) goes on as mail to
  the conduct address, without being screened again.
- A bounce, recognised by structure (:mod:`mailflow.mail.bounces`), is matched to the
  mail mailflow sent: by the return path of an acknowledgement, or by the Message-ID
  of the returned copy.  A failed recipient is marked failed in ``outbound_rcpt`` and
  the committee on the case is told (say, that the acknowledgement to the reporter
  bounced).  A bounce of nothing mailflow sent is held.
- On the conduct side, the trusted MTA's verdicts (:mod:`mailflow.mail.verdicts`) are
  read; suspected spam is held: no case, no acknowledgement, no copy, no clocks.
"""

from __future__ import annotations

from mailflow.case import held
from mailflow.case.notices import notify_committee
from mailflow.mail import bounces, verdicts
from mailflow.mail.bounces import Bounce, Failure
from mailflow.pipeline.context import Context
from mailflow.pipeline.handlers.recuse import named_members
from mailflow.store import audit

RETURN_PURPOSE = "return"
# What each kind of outbound mail is, for the committee's notice.
SENT_AS = {"ack": "the acknowledgement to the reporter", "relay": "the committee's copy",
           "response": "mail sent on the chair's #confirm", "escalation": "the mail to the board"}


def return_path(ctx: Context, case_id: str) -> str:
    """The envelope sender of the case's acknowledgement: bounces of it come back here."""
    token = ctx.svc.signer.sign(case_id, RETURN_PURPOSE)
    return f"conduct+{token}@{ctx.cfg.committee.domain}"


def _return_case(ctx: Context) -> str | None:
    """The case whose return path this mail was sent to, if it was."""
    fields = ctx.svc.signer.unsign(ctx.token) if ctx.side == "conduct" and ctx.token else None
    return fields[0] if fields and len(fields) == 2 and fields[1] == RETURN_PURPOSE else None


def screen(ctx: Context) -> None:
    """Released held mail, bounces and suspected spam, before threading."""
    release = held.released(ctx.db, ctx.spool_id)
    if release:
        if ctx.side == "committee":
            ctx.token = None  # a committee token says nothing on the conduct side
        ctx.side, ctx.released = "conduct", True
        ctx.flags.append(f"released from held ({release['reason']}) by {release['decided_by']}")
    else:
        bounce = bounces.recognise(ctx.parsed.msg, null_sender=ctx.envelope_from == "",
                                   to_return_path=_return_case(ctx) is not None)
        if bounce:
            ctx.kind = "bounce"
            if not ctx.quiet:
                _file_bounce(ctx, bounce)
            return
    if ctx.side != "conduct" or ctx.quiet:
        return
    ctx.verdict = verdicts.read(ctx.parsed.msg, authserv_id=ctx.cfg.security.trusted_authserv_id,
                                rules=ctx.svc.rules.get("spam", {}),
                                envelope_from=ctx.envelope_from, from_addr=ctx.sender)
    if ctx.verdict.spam and not ctx.released:
        ctx.kind = "held"
        hold(ctx, "spam", list(ctx.verdict.reasons))


def hold(ctx: Context, reason: str, detail: list[str]) -> None:
    """Hold this message; the members it names will never see it listed."""
    p = ctx.parsed
    text = "\n".join([p.subject, p.body_text, *(f"{f.from_addr} {f.subject}\n{f.text}"
                                                for f in p.forwarded)])
    held_id = held.hold(ctx.db, ctx.spool_id, reason, detail,
                        list(named_members(ctx.cfg, text)))
    ctx.flags.append(f"held ({reason}) as #{held_id}")


def _sent_to(ctx: Context, bounce: Bounce) -> list[tuple[int, str | None, str, str]]:
    """(outbound id, case, kind, recipient) of the mail this bounce is about."""
    ids = list(bounce.returned_ids)
    marks = ", ".join("?" * len(ids))
    rows = ctx.db.execute(
        "SELECT o.id, o.case_id, o.kind, r.rcpt FROM outbound o JOIN outbound_rcpt r ON "
        f"r.outbound_id = o.id WHERE o.message_id IN ({marks or 'NULL'}) OR (o.case_id = ? "
        "AND o.kind = 'ack') ORDER BY o.id", [*ids, _return_case(ctx)]).fetchall()
    named = {f.recipient for f in bounce.failures}
    hits = [r for r in rows if r[3] in named]
    # A recipient rewritten on the way (an alias, a forward) comes back under another
    # address; a message to one recipient is still that one.
    return hits or (rows if len({(r[0], r[3]) for r in rows}) == 1 else [])


def _file_bounce(ctx: Context, bounce: Bounce) -> None:
    sent = _sent_to(ctx, bounce)
    if not sent:
        hold(ctx, "bounce", [f.describe() for f in bounce.failures])
        return
    ctx.case_id = next((case for _, case, _, _ in sent if case), None)
    failures = {f.recipient: f for f in bounce.failures}
    for out_id, case_id, kind, rcpt in sent:
        failure = failures.get(rcpt) or (bounce.failures[0] if bounce.failures else
                                         Failure(rcpt, "failed"))
        what = f"{SENT_AS.get(kind, f'mailflow mail ({kind})')} ({rcpt})"
        ctx.flags.append(f"{bounce.shape} notice: {what}: {failure.describe()}")
        if failure.action != "failed":
            continue  # delayed (the MTA keeps trying) or delivered: nothing to do
        ctx.db.execute("UPDATE outbound_rcpt SET state = 'failed', last_error = ? WHERE "
                       "outbound_id = ? AND rcpt = ?",
                       [f"bounced: {failure.describe()}", out_id, rcpt])
        audit.append(ctx.db, "mailflow", "delivery bounced", case_id, outbound=out_id)
        if case_id:
            _tell_committee(ctx, case_id, kind, what, failure)


def _tell_committee(ctx: Context, case_id: str, kind: str, what: str,
                    failure: Failure) -> None:
    advice = ("The reporter may not know that their report arrived: reach them another way\n"
              "if the case gives one." if kind == "ack" else
              "Whoever it was for has not received it.")
    notify_committee(ctx, case_id, f"Mail bounced: {SENT_AS.get(kind, 'mailflow mail')}",
                     f"{what[0].upper()}{what[1:]} bounced.\n\n"
                     f"What the receiving mail server said: {failure.describe()}\n\n{advice}")
