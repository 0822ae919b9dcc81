"""Handler: the committee's copies.  Reports, reporter replies and member posts go to
the members who are on the case, never to anyone else.

Each member's copy has its own Reply-To, ``committee+<member token>@``: replying to it
proves to mailflow which member wrote (the token is signed and expires), and the
From is the committee's own address, so reply-all cannot reach the reporter.  Tokens
in what it passes on (the text, the attached original) are made bare addresses:
a member's token is theirs alone (:mod:`mailflow.mail.scrub`).

Each copy is rendered for its member: a new report shows the reporter's earlier
cases, less those that member is recused from (:func:`mailflow.case.abuse.histories`).

A report is copied whole.  A reply, from a reporter or a member, is copied as its new
text (everything the writer wrote, :mod:`mailflow.mail.quotes`) with any forwarded
messages; the text it quoted is left out and counted, since the members have it
already and the archive keeps the whole message.
"""

from __future__ import annotations

from typing import Any

from mailflow.case import abuse, cases
from mailflow.case.notices import case_root_id, deliver, list_headers, member_reply_address
from mailflow.commands.language import parse
from mailflow.mail import render
from mailflow.mail.compose import Outgoing, compose, header_safe
from mailflow.mail.parse import Forwarded
from mailflow.mail.scrub import scrub_message, scrub_relayed
from mailflow.mail.tokens import split_address
from mailflow.pipeline.context import Context

COPIED_KINDS = ("report", "forward", "reply", "member")
NEW_REPORT_KINDS = ("report", "forward")


def committee_subject(ctx: Context) -> str:
    cfg = ctx.cfg
    if not ctx.case_id:
        return header_safe(ctx.parsed.subject or "(no subject)")
    tag = cases.case_tag(cfg, ctx.case_id)
    if ctx.kind == "member":
        subject = ctx.parsed.subject
        return header_safe(subject if tag.lower() in subject.lower() else f"{tag} {subject}")
    case = cases.get(ctx.db, ctx.case_id) or {}
    title = case.get("codename", "") if cfg.committee.subject == "codename" else ctx.parsed.subject
    heading = {"report": "New report", "forward": "Forwarded report",
               "reply": "Mail on the case"}[ctx.kind]
    if ctx.kind == "reply":
        roles = [p["role"] for p in cases.people(ctx.db, ctx.case_id)
                 if p["address"] == (ctx.sender or "").lower()]
        if roles:
            heading = f"{roles[0].capitalize()} wrote"
    return header_safe(f"{tag} {heading}: {title}")


def _our_own(ctx: Context, message: Forwarded) -> bool:
    """A "forwarded" message that is our own mail quoted back (Outlook marks a reply's
    quote as it marks a forward): from our address, or under the case's subject tag."""
    ours = bool(message.from_addr and split_address(message.from_addr, ctx.cfg.committee.domain))
    return ours or bool(cases.tag_pattern(ctx.cfg).search(message.subject))


def _template_fields(ctx: Context, sender: str) -> dict[str, Any]:
    """What the committee-copy template shows, the same in every member's copy."""
    roles = cases.people(ctx.db, ctx.case_id) if ctx.case_id else []
    flags = list(ctx.flags)
    if ctx.kind != "member" and parse(ctx.parsed.new_text, ctx.svc.parts.commands).commands:
        flags.append("its lines starting with # were not applied: it is not a member's mail")
    quoted = ctx.parsed.quoted_text
    return dict(
        subject_line=committee_subject(ctx),
        committee=ctx.cfg.committee, kind=ctx.kind, case_id=ctx.case_id,
        sender=sender, sender_name=ctx.parsed.from_name,
        sender_role=next((p["role"] for p in roles if p["address"] == sender), None),
        subject=ctx.parsed.subject, date=ctx.parsed.date, body=ctx.parsed.text_with_forwards,
        new_text=ctx.parsed.new_text, quoted_lines=quoted.count("\n") + 1 if quoted else 0,
        people=roles, attachments=ctx.parsed.attachments, flags=flags,
        forwarded=[f for f in ctx.parsed.forwarded if not _our_own(ctx, f)],
    )


def copy_to_committee(ctx: Context) -> None:
    """Copy the message to each member deciding the case, with their own reply address."""
    if ctx.kind not in COPIED_KINDS:
        return
    cfg = ctx.cfg
    sender = (ctx.sender or "").lower()
    recipients = [m for m in cases.active_members(ctx.db, cfg, ctx.case_id) if m != sender]
    if not recipients:
        return
    fields = _template_fields(ctx, sender)
    display = (ctx.parsed.from_name or sender) if ctx.kind == "member" else "Conduct report"
    display = header_safe(display)
    refs = [case_root_id(cfg, ctx.case_id)] if ctx.case_id else []
    # The original goes along when it has attachments the text cannot show, or carries
    # a forwarded mail (whose own attachments, screenshots say, are inside it): by
    # reference to its spool row, which delivery streams (it may be 25 MB).  Neither it
    # nor the text carries the sender's token (or a #confirm code): those are theirs,
    # so an original that holds one goes as a rewritten copy instead.  A report that
    # came encrypted goes as the committee reads it: decrypted (the spool keeps it as
    # it came).
    attached = ctx.parsed.attachments or any(f.attached for f in ctx.parsed.forwarded)
    attach = ctx.spool_id if attached else None
    original = ctx.readable if ctx.opened and ctx.opened.decrypted else ctx.raw
    rewritten = scrub_message(original) if attached else original

    texts: dict[str, tuple[str, str]] = {}  # by the history shown: most share one
    histories = (abuse.histories(ctx.db, ctx.case_id, recipients)
                 if ctx.kind in NEW_REPORT_KINDS and ctx.case_id else {})

    def copy_for(member: str) -> Outgoing:
        history = histories.get(member, [])
        key = repr(history)
        if key not in texts:
            text = render.render(ctx.svc.templates, "committee-copy", **fields, history=history)
            texts[key] = scrub_relayed(text.subject), scrub_relayed(text.body)
        subject, body = texts[key]
        out = compose(
            cfg, from_=(f"{display} via {cfg.committee.name}", cfg.committee.committee_address),
            to=[cfg.committee.committee_address], subject=subject, body=body,
            reply_to=member_reply_address(ctx.svc, ctx.case_id, member),
            references=refs, headers=list_headers(cfg, ctx.case_id), attach_spool_id=attach,
        )
        return out.inlined(rewritten) if rewritten is not ctx.raw else out

    deliver(ctx.db, ctx.svc, ctx.case_id, recipients, copy_for, kind="relay",
            envelope_from=cfg.committee.committee_address,
            searchable=False)  # the message it relays is indexed


