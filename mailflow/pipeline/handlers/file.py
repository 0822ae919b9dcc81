"""Filing messages into the archive: the parsed fields beside the raw bytes."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mailflow.case import cases, held
from mailflow.mail.scrub import scrub_text
from mailflow.store import audit

if TYPE_CHECKING:
    from mailflow.mail.parse import Parsed
    from mailflow.pipeline.context import Context


def parsed_columns(p: Parsed) -> dict[str, Any]:
    """The columns of ``messages`` that come from parsing the raw bytes alone (so
    ``mailflow reindex`` can recompute them); the rest is history of the pipeline.
    Token addresses are made bare: what is searched, shown and exported carries none
    (the raw bytes keep them, for the record)."""
    return {
        "from_addr": p.from_addr, "from_name": p.from_name,
        "to_addrs": json.dumps([scrub_text(a) for a in p.to_addrs]),
        "cc_addrs": json.dumps([scrub_text(a) for a in p.cc_addrs]),
        "subject": scrub_text(p.subject), "date": p.date, "message_id": p.message_id,
        "in_reply_to": p.in_reply_to[0] if p.in_reply_to else None,
        "refs": json.dumps(p.references), "body_text": scrub_text(p.body_text),
        "new_text": scrub_text(p.new_text), "quoted_text": scrub_text(p.quoted_text),
        "attachments": json.dumps(p.attachments), "defects": json.dumps(p.defects),
        "forwarded_text": scrub_text(p.forwarded_text),
    }


def file_message(ctx: Context) -> None:
    """File the message in the archive: its parsed fields beside the raw bytes."""
    p = ctx.parsed
    columns = {"spool_id": ctx.spool_id, "case_id": ctx.case_id, "kind": ctx.kind,
               "envelope_from": ctx.envelope_from, **parsed_columns(p),
               "flags": json.dumps(ctx.flags)}
    # Held mail the chair released comes through again: its row is updated.
    ctx.db.execute(
        f"INSERT INTO messages (received_at, {', '.join(columns)}) SELECT received_at, "
        f"{', '.join('?' * len(columns))} FROM spool WHERE id = ? ON CONFLICT(spool_id) DO "
        "UPDATE SET case_id = excluded.case_id, kind = excluded.kind, flags = excluded.flags",
        [*columns.values(), ctx.spool_id],
    )
    if ctx.released:
        held.filed(ctx.db, ctx.spool_id, ctx.case_id)
    if ctx.case_id:
        cases.touch(ctx.db, ctx.case_id)
    audit.append(ctx.db, ctx.audit_actor, f"mail in: {ctx.kind}", ctx.case_id,
                 spool_id=ctx.spool_id, flags=len(ctx.flags))
