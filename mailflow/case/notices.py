"""mailflow's own mail to committee members: notices, transcripts, reminders, digests.

Each member's copy has its own Reply-To, ``committee+<member token>@``: replying to it
proves to mailflow which member wrote (the token is signed and expires), and the
From is the committee's own address, so reply-all cannot reach the reporter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta

import sqlite_utils

from mailflow import timestamps
from mailflow.case import cases
from mailflow.config import Config
from mailflow.mail.compose import compose
from mailflow.mail.scrub import scrub_text
from mailflow.outbound.queue import enqueue
from mailflow.pipeline.context import Context, Services

# What mail clients and mailflow put before a subject: replies and forwards (English
# and the common localised forms), "Transcript:", "Draft N to confirm:".
_PREFIX = re.compile(r"^(?:(?:re|fwd?|aw|wg|sv|antw|rif|tr|odp)(?:\[\d+\])?|transcript|"
                     r"draft \d+ to confirm)\s*:\s*", re.IGNORECASE)


def thread_subject(cfg: Config, subject: str) -> str:
    """The subject a thread started with: case tags, reply and forward prefixes,
    "Transcript:" and "Draft N to confirm:" taken off, spaces collapsed."""
    text = " ".join(cases.tag_pattern(cfg).sub(" ", subject or "").split())
    while (shorter := _PREFIX.sub("", text, count=1)) != text:
        text = shorter
    return text or "(no subject)"


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
    expires = (timestamps.now() + timedelta(days=days)).date()
    token = svc.signer.member_token(case_id, member, expires)
    return f"committee+{token}@{svc.cfg.committee.domain}"


def mail_members(db: sqlite_utils.Database, svc: Services, case_id: str | None,
                 members: list[str], *, subject: str,
                 body: str, kind: str, in_reply_to: str | None = None,
                 auto_submitted: str = "auto-generated", filed: bool = True,
                 verbatim: bool = False, quotes: Sequence[str] = ()) -> None:
    """Mailflow's own mail to members (transcripts, notices): one copy each, with that
    member's own Reply-To so that answering it is authenticated.

    It is not indexed for search: it is made of records indexed on their own, and a
    digest or a search transcript quotes other cases than the one it is filed under.
    ``filed``: False to keep it out of the case's record altogether; ``quotes``: the
    cases whose records it quotes (search results), whose purge removes it.
    The text carries no token address (the recipient's own is in the Reply-To), unless
    ``verbatim``: a draft shown to the chair exactly as it would be sent."""
    cfg = svc.cfg
    body = body if verbatim else scrub_text(body)
    tag = cases.case_tag(cfg, case_id) + " " if case_id else ""
    refs = [case_root_id(cfg, case_id)] if case_id else []
    for member in members:
        msg = compose(
            cfg, from_=(f"{cfg.committee.name} (mailflow)", cfg.committee.committee_address),
            to=[member], subject=f"{tag}{subject}"[:200], body=body,
            reply_to=member_reply_address(svc, case_id, member), in_reply_to=in_reply_to,
            references=refs,
            headers={**list_headers(cfg, case_id), "Auto-Submitted": auto_submitted},
        )
        out_id = enqueue(db, msg, kind=kind, rcpts=[member], envelope_from="",
                         case_id=case_id if filed else None, searchable=False)
        db.conn.executemany("INSERT INTO outbound_quotes (outbound_id, case_id) VALUES (?, ?)",
                            [(out_id, c) for c in quotes])


def notify_committee(ctx: Context, case_id: str, subject: str, body: str,
                     to: list[str] | None = None) -> None:
    """A notice from mailflow to the members deciding the case (never the recused)."""
    active = cases.active_members(ctx.db, ctx.cfg, case_id)
    members = [m for m in (to if to is not None else active) if m in active]
    if members:
        mail_members(ctx.db, ctx.svc, case_id, members, subject=subject, body=body.rstrip() + "\n",
                     kind="notice")
