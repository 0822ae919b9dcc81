"""The private committee list: reports, reporter replies and member posts go to the
members who are on the case, never to anyone else.

Each member's copy has its own Reply-To, ``committee+<member token>@``: replying to it
proves to mailflow which member wrote (the token is signed and expires), and the
From is the committee's own address, so reply-all cannot reach the reporter.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from . import cases, clock, outbound, render

if TYPE_CHECKING:
    import sqlite_utils

    from .config import Config
    from .pipeline import Context, Services

RELAYED_KINDS = ("report", "forward", "reply", "member")


def list_headers(cfg: Config, case_id: str | None) -> dict[str, str]:
    headers = {
        "List-Id": f"{cfg.committee.name} <committee.{cfg.committee.domain}>",
        "List-Post": f"<mailto:{cfg.committee.committee_address}>",
        "Precedence": "list",
    }
    if case_id:
        headers["X-Mailflow-Case"] = case_id
    return headers


def case_root_id(cfg: Config, case_id: str) -> str:
    """A Message-ID every relayed mail of a case refers to, so mail clients thread them."""
    return f"case-{case_id}@{cfg.committee.domain}"


def member_reply_address(svc: Services, case_id: str | None, member: str) -> str:
    days = svc.cfg.security.member_token_days
    expires = (clock.now() + timedelta(days=days)).date()
    token = svc.signer.member_token(case_id, member, expires)
    return f"committee+{token}@{svc.cfg.committee.domain}"


def committee_subject(ctx: Context) -> str:
    cfg = ctx.cfg
    if not ctx.case_id:
        return ctx.parsed.subject or "(no subject)"
    tag = cases.case_tag(cfg, ctx.case_id)
    if ctx.kind == "member":
        subject = ctx.parsed.subject
        return subject if tag.lower() in subject.lower() else f"{tag} {subject}".strip()
    case = cases.get(ctx.db, ctx.case_id) or {}
    title = case.get("codename", "") if cfg.committee.subject == "codename" else ctx.parsed.subject
    heading = {"report": "New report", "forward": "Report forwarded by the board",
               "reply": "Mail on the case"}[ctx.kind]
    if ctx.kind == "reply":
        roles = [p["role"] for p in cases.people(ctx.db, ctx.case_id)
                 if p["address"] == (ctx.sender or "").lower()]
        if roles:
            heading = f"{roles[0].capitalize()} wrote"
    return f"{tag} {heading}: {title}"


def relay(ctx: Context) -> None:
    if ctx.kind not in RELAYED_KINDS:
        return
    cfg = ctx.cfg
    sender = (ctx.sender or "").lower()
    recipients = [m for m in cases.active_members(ctx.db, cfg, ctx.case_id) if m != sender]
    if not recipients:
        return
    roles = cases.people(ctx.db, ctx.case_id) if ctx.case_id else []
    role = next((p["role"] for p in roles if p["address"] == sender), None)
    text = render.render(
        ctx.svc.templates, "relay", subject_line=committee_subject(ctx),
        committee=cfg.committee, kind=ctx.kind, case_id=ctx.case_id,
        sender=sender, sender_name=ctx.parsed.from_name, sender_role=role,
        subject=ctx.parsed.subject, date=ctx.parsed.date, body=ctx.parsed.body_text,
        new_text=ctx.parsed.new_text, people=roles, attachments=ctx.parsed.attachments,
        flags=ctx.flags, forwarded=ctx.parsed.forwarded,
    )
    display = (ctx.parsed.from_name or sender) if ctx.kind == "member" else "Conduct report"
    refs = [case_root_id(cfg, ctx.case_id)] if ctx.case_id else []
    # The original goes along when it has attachments the text cannot show.
    attach = ctx.raw if ctx.parsed.attachments else None
    for member in recipients:
        msg = outbound.compose(
            cfg, from_=(f"{display} via {cfg.committee.name}", cfg.committee.committee_address),
            to=[cfg.committee.committee_address], subject=text.subject, body=text.body,
            reply_to=member_reply_address(ctx.svc, ctx.case_id, member),
            references=refs, headers=list_headers(cfg, ctx.case_id), attach=attach,
        )
        outbound.enqueue(ctx.db, msg, kind="relay", rcpts=[member],
                         envelope_from=cfg.committee.committee_address, case_id=ctx.case_id,
                         searchable=False)  # the message it relays is indexed


def mail_members(db: sqlite_utils.Database, svc: Services, case_id: str | None,
                 members: list[str], *, subject: str,
                 body: str, kind: str, in_reply_to: str | None = None,
                 auto_submitted: str = "auto-generated") -> None:
    """Mailflow's own mail to members (transcripts, notices): one copy each, with that
    member's own Reply-To so that answering it is authenticated."""
    cfg = svc.cfg
    tag = cases.case_tag(cfg, case_id) + " " if case_id else ""
    refs = [case_root_id(cfg, case_id)] if case_id else []
    for member in members:
        msg = outbound.compose(
            cfg, from_=(f"{cfg.committee.name} (mailflow)", cfg.committee.committee_address),
            to=[member], subject=f"{tag}{subject}"[:200], body=body,
            reply_to=member_reply_address(svc, case_id, member), in_reply_to=in_reply_to,
            references=refs,
            headers={**list_headers(cfg, case_id), "Auto-Submitted": auto_submitted},
        )
        outbound.enqueue(db, msg, kind=kind, rcpts=[member], envelope_from="",
                         case_id=case_id)
