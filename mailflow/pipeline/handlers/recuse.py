"""Handler, before the relay: recuse the members named in mail to the conduct address.

Names are matched on folded text (:mod:`mailflow.mail.normalise`: encoded words,
Unicode look-alikes, accents, case, invisible characters and line breaks do not hide
a name), in every header a reader sees and every text or HTML part
(:mod:`mailflow.mail.texts`).  A report is read whole (it may quote the thread it is
about); a reply, in everything its writer wrote, above, between or below the quote.
"""

from __future__ import annotations

from mailflow.case import cases
from mailflow.case.recusal import recuse
from mailflow.config import Config
from mailflow.mail import texts
from mailflow.mail.normalise import fold, whole
from mailflow.pipeline.context import Context

# Conduct-side mail that can name a member.
SCANNED_KINDS = ("report", "forward", "reply")


def named_members(cfg: Config, text: str) -> dict[str, str]:
    """Members named in ``text``: {member: how (address or alias)}."""
    folded = fold(text)
    found: dict[str, str] = {}
    for member in (m.lower() for m in cfg.committee.members):
        if whole(member).search(folded):
            found[member] = "their address"
            continue
        aliases = next((a for m, a in cfg.committee.aliases.items() if m.lower() == member), [])
        alias = next((a for a in aliases if whole(a).search(folded)), None)
        if alias is not None:
            found[member] = f'"{alias}"'
    return found


def read_texts(ctx: Context) -> list[str]:
    """What recusal reads of a conduct-side mail."""
    msg = ctx.parsed.msg
    # A reply's quoted part is usually our own mail: only what its writer wrote counts.
    parts = texts.parts(msg, new_only=ctx.kind == "reply")
    forwarded = [f.from_addr or "" for f in ctx.parsed.forwarded]
    return [*texts.shown_headers(msg), *parts, *forwarded]


def recuse_named(ctx: Context) -> None:
    """Recuse the members named in mail to the conduct address, before any copy goes out.

    A report is read whole (it may quote the thread it is about); a reply only in its
    new text, since its quoted part is usually our own mail."""
    if ctx.side != "conduct" or ctx.kind not in SCANNED_KINDS or not ctx.case_id:
        return
    out = cases.recused(ctx.db, ctx.case_id)
    text = "\n".join(read_texts(ctx))
    named = {m: f"named in mail to the conduct address by {how}"
             for m, how in named_members(ctx.cfg, text).items() if m not in out}
    if named:
        recuse(ctx, ctx.case_id, named, actor="mailflow")
        ctx.flags += [f"{m} was named in it and is recused" for m in named]
