"""The acknowledgement: one per case, at once, by the rules of RFC 3834."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mailflow import timestamps
from mailflow.case import cases, keys, sanctions
from mailflow.mail import render
from mailflow.mail.compose import Outgoing, compose
from mailflow.mail.tokens import split_address
from mailflow.outbound.queue import enqueue
from mailflow.pipeline.handlers.screen import return_path
from mailflow.store import audit

if TYPE_CHECKING:
    from mailflow.pipeline.context import Context

ACKNOWLEDGED_KINDS = ("report", "forward")
# Of the References the report carried, the acknowledgement repeats the newest few.
REFERENCES_KEPT = 20


def _plain(value: str) -> str:
    """A reason as a code for the audit log: no spaces, nothing long."""
    return re.sub(r"[^\w.:\-]+", "-", value)[:40]


def why_not_automatic_reply(ctx: Context) -> str | None:
    """The reason RFC 3834 (or our rules) forbids an automatic reply, or None."""
    rules = ctx.svc.rules.get("autoreply", {})
    p = ctx.parsed
    recipient = (ctx.envelope_from or "").lower()
    if not recipient:
        return "null or unknown envelope sender"
    if split_address(recipient, ctx.cfg.committee.domain):
        return "mail from our own address"
    local = recipient.split("@")[0]
    for word in rules.get("never_local_parts", []):
        if local == word:
            return f"sender {local}@ is a robot address"
    for prefix in rules.get("never_local_prefixes", []):
        if local.startswith(prefix):
            return f"sender {local}@ is a list or robot address"
    for suffix in rules.get("never_local_suffixes", []):
        if local.endswith(suffix):
            return f"sender {local}@ is a list or robot address"
    auto = p.header("Auto-Submitted").lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    precedence = p.header("Precedence").lower()
    if precedence in ("bulk", "junk", "list"):
        return f"Precedence: {precedence}"
    for name in p.msg:
        if name.lower().startswith("list-"):
            return f"{name} header (list mail)"
    for name in rules.get("automatic_headers", []):
        if p.msg.get(name) is not None:
            return f"{name} header (automatic mail)"
    return None


def _rate_limited(ctx: Context, recipient: str) -> bool:
    limit = ctx.svc.rules.get("autoreply", {}).get("per_sender_per_hour", 5)
    since = timestamps.stamp(timestamps.now() - timedelta(hours=1))
    sent = ctx.db.execute(
        "SELECT count(*) FROM outbound o JOIN outbound_rcpt r ON r.outbound_id = o.id "
        "WHERE o.kind = 'ack' AND r.rcpt = ? AND o.created_at >= ?", [recipient, since]
    ).fetchone()[0]
    return sent >= limit


def acknowledge(ctx: Context) -> None:
    """Acknowledge a new report to its sender at once, by the rules of RFC 3834."""
    if ctx.kind not in ACKNOWLEDGED_KINDS or not ctx.case_id:
        return
    case = cases.get(ctx.db, ctx.case_id)
    if case is None or case["acknowledged_at"]:
        return
    reason = why_not_automatic_reply(ctx)
    recipient = (ctx.envelope_from or "").lower()
    code = None
    if reason is None and _rate_limited(ctx, recipient):
        reason, code = f"rate limit for {recipient}", "rate-limit"
    if reason:
        audit.append(ctx.db, "mailflow", "no acknowledgement", ctx.case_id,
                     reason=code or _plain(reason))  # a code: the log names no one
        # The committee must know that the reporter has heard nothing from us.
        sanctions.flag_case(ctx.db, ctx.case_id, f"acknowledgement withheld: {reason}")
        ctx.flags.append(f"No acknowledgement was sent ({reason}): the reporter has heard "
                         "nothing from us; contact them personally.")
        return
    cfg = ctx.cfg
    reply_address = f"conduct+{ctx.svc.signer.case_token(ctx.case_id)}@{cfg.committee.domain}"
    # Only to a sender the trusted MTA verified does the answer repeat their words: an
    # envelope sender can be forged, and their words would then go to a stranger.
    verified = ctx.verdict is not None and ctx.verdict.sender_verified
    msg = _acknowledgement(ctx, case, recipient, reply_address, repeat=verified)
    # A report that came encrypted is answered encrypted; without a key for the
    # reporter, the answer says so and leaves out what their report said.
    sealed = keys.seal_for_reporter(ctx.svc, case, recipient, msg, msg["Subject"] or "")
    if sealed is None:
        sealed = _acknowledgement(ctx, case, recipient, reply_address, repeat=False,
                                  unencrypted=True)
    # RFC 3834 advises the null sender; with a return path instead (a signed address
    # that takes bounces and answers nothing), a bounce tells the committee that the
    # reporter was not reached.  Bounces sent to conduct@ are matched by Message-ID.
    sender = (return_path(ctx, ctx.case_id)
              if cfg.outbound.acknowledgement_sender == "return-path" else "")
    enqueue(ctx.db, sealed, kind="ack", rcpts=[recipient], envelope_from=sender,
            case_id=ctx.case_id)
    ctx.db.execute("UPDATE cases SET acknowledged_at = ? WHERE id = ?",
                   [timestamps.stamp(), ctx.case_id])


def _acknowledgement(ctx: Context, case: dict[str, Any], recipient: str, reply_address: str,
                     repeat: bool, unencrypted: bool = False) -> Outgoing:
    """The acknowledgement; ``repeat``: whether it may repeat the reporter's words (their
    name and subject); ``unencrypted``: they wrote encrypted, and there is no key for
    them to answer the same way."""
    cfg = ctx.cfg
    text = render.render(
        ctx.svc.templates, "acknowledgement",
        committee=cfg.committee, case=case, tag=cases.case_tag(cfg, case["id"]),
        reporter_name=ctx.parsed.from_name if repeat else "",
        subject=ctx.parsed.subject if repeat else "",
        reply_address=reply_address, urgent=bool(case["urgent"]), forwarded=ctx.kind == "forward",
        committee_key=keys.committee_fingerprint(ctx.svc),
        unencrypted=unencrypted,
        unreadable=ctx.opened is not None and ctx.opened.encrypted and not ctx.opened.decrypted,
    )
    return compose(
        cfg, from_=(cfg.committee.name, cfg.committee.conduct_address), to=[recipient],
        subject=text.subject, body=text.body, reply_to=reply_address,
        in_reply_to=ctx.parsed.message_id,
        references=[*ctx.parsed.references[-REFERENCES_KEPT:], ctx.parsed.message_id],
        headers={"Auto-Submitted": "auto-replied", "X-Mailflow-Case": case["id"]},
    )
