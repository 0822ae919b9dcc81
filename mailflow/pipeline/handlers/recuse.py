"""Handler, before the relay: recuse the members named in mail to the conduct address."""

from __future__ import annotations

import re

from mailflow.case import cases
from mailflow.case.recusal import recuse
from mailflow.config import Config
from mailflow.pipeline.context import Context

# Conduct-side mail that can name a member.
SCANNED_KINDS = ("report", "forward", "reply")


def named_members(cfg: Config, text: str) -> dict[str, str]:
    """Members named in ``text``: {member: how (address or alias)}."""
    found: dict[str, str] = {}
    lowered = text.lower()  # a substring test first: the regex runs only where it can match
    for member in (m.lower() for m in cfg.committee.members):
        if member in lowered and re.search(
                rf"(?<![\w.%+\-]){re.escape(member)}(?![\w\-]|\.\w)", text, re.I):
            found[member] = "their address"
            continue
        aliases = next((a for m, a in cfg.committee.aliases.items() if m.lower() == member), [])
        for alias in aliases:
            if alias.lower() in lowered and re.search(
                    rf"(?<![\w@]){re.escape(alias)}(?!\w)", text, re.I):
                found[member] = f'"{alias}"'
                break
    return found


def recuse_named(ctx: Context) -> None:
    """Recuse the members named in mail to the conduct address, before any copy goes out.

    A report is read whole (it may quote the thread it is about); a reply only in its
    new text, since its quoted part is usually our own mail."""
    if ctx.side != "conduct" or ctx.kind not in SCANNED_KINDS or not ctx.case_id:
        return
    p = ctx.parsed
    texts = [p.subject, p.new_text if ctx.kind == "reply" else p.body_text]
    texts += [f"{f.from_name} {f.from_addr or ''} {f.subject}\n{f.text}" for f in p.forwarded]
    out = cases.recused(ctx.db, ctx.case_id)
    named = {m: f"named in mail to the conduct address by {how}"
             for m, how in named_members(ctx.cfg, "\n".join(texts)).items() if m not in out}
    if named:
        recuse(ctx, ctx.case_id, named, actor="mailflow")
        ctx.flags += [f"{m} was named in it and is recused" for m in named]
