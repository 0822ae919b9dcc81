"""The one log line per message: which message (by ids an administrator can match with
the MTA's log), which case, and what was done.  Never text, subjects or the
addresses of the people who wrote."""

from __future__ import annotations

import re

from mailflow import logs
from mailflow.pipeline.context import Context
from mailflow.store.sqlite import Database

# The id the MTA in front gave the message, in its topmost Received header: Postfix
# writes "with ESMTP id 4XyZ1k2AbC", Exim "id 1rAbCd-000Xyz-Q1".
RECEIVED = re.compile(rb"^received:(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
QUEUE_ID = re.compile(rb"\bid\s+([A-Za-z0-9][A-Za-z0-9._-]{3,63})")
HEADER_END = re.compile(rb"\r?\n\r?\n")
FLAG_KEY = re.compile(r"[a-z][a-z-]*")

# What each kind of queued mail means, in the log's words.
DONE = {"ack": "acknowledged", "relay": "copied to {n} member(s)",
        "transcript": "transcript sent", "urgent": "{n} urgent alert(s)",
        "escalation": "escalated ({n})", "notice": "{n} notice(s) to members"}


def mta_queue_id(raw: bytes) -> str | None:
    end = HEADER_END.search(raw)
    received = RECEIVED.search(raw, 0, end.start() if end else len(raw))
    if received is None:
        return None
    found = QUEUE_ID.search(received.group(1))
    return found.group(1).decode("ascii") if found else None


def last_outbound(db: Database) -> int:
    return db.execute("SELECT coalesce(max(id), 0) FROM outbound").fetchone()[0]


def done(db: Database, ctx: Context, queued_after: int) -> str:
    """What the chain did with the message: the mail it queued (above ``queued_after``)."""
    counts = db.execute("SELECT kind, count(*) FROM outbound WHERE id > ? GROUP BY kind "
                        "ORDER BY min(id)", [queued_after]).fetchall()
    did = [DONE.get(kind, kind + " ({n})").format(n=n) for kind, n in counts]
    if ctx.kind == "held":
        did.insert(0, "held")
    if ctx.auth_failure:
        did.append("commands refused: no proof of the sender")
    return ", ".join(did) or "filed"


def line(ctx: Context, queued_after: int) -> str:
    case = f"case {ctx.case_id}{' (new)' if ctx.new_case else ''}" if ctx.case_id else "no case"
    # A flag's key only ("urgent", "ambiguous-thread"): some flags go on in prose.
    keys = sorted({k for k in (f.split(":")[0] for f in ctx.flags) if FLAG_KEY.fullmatch(k)})
    flags = f" [{','.join(keys)}]" if keys else ""
    return (f"spool {ctx.spool_id} mta-id {mta_queue_id(ctx.raw) or '-'} "
            f"msgid {logs.digest(ctx.parsed.message_id)} {case} {ctx.kind or '-'}{flags}: "
            f"{done(ctx.db, ctx, queued_after)}")
