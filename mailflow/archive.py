"""Filing messages into the archive: the parsed fields beside the raw bytes."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from . import audit, cases

if TYPE_CHECKING:
    from .pipeline import Context


def file_message(ctx: Context) -> None:
    p = ctx.parsed
    cur = ctx.db.execute(
        "INSERT INTO messages (spool_id, case_id, kind, received_at, envelope_from, from_addr,"
        " from_name, to_addrs, cc_addrs, subject, date, message_id, in_reply_to, refs, body_text,"
        " new_text, quoted_text, attachments, defects, flags)"
        " SELECT ?, ?, ?, received_at, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
        " FROM spool WHERE id = ?",
        [ctx.spool_id, ctx.case_id, ctx.kind, ctx.envelope_from, p.from_addr, p.from_name,
         json.dumps(p.to_addrs), json.dumps(p.cc_addrs), p.subject, p.date, p.message_id,
         p.in_reply_to[0] if p.in_reply_to else None, json.dumps(p.references), p.body_text,
         p.new_text, p.quoted_text, json.dumps(p.attachments), json.dumps(p.defects),
         json.dumps(ctx.flags), ctx.spool_id],
    )
    ctx.message_row = cur.lastrowid
    if ctx.case_id:
        cases.touch(ctx.db, ctx.case_id)
    audit.append(ctx.db, p.from_addr or ctx.envelope_from or "unknown", f"mail in: {ctx.kind}",
                 ctx.case_id, spool_id=ctx.spool_id, message_id=p.message_id, flags=ctx.flags)
