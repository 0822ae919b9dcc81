"""The outbound queue: a message is queued in the same transaction as the change that
caused it, so a crash can neither lose it nor queue it twice."""

from __future__ import annotations

import json
from collections.abc import Iterable

from mailflow import store, timestamps
from mailflow.mail import quotes
from mailflow.mail.compose import Outgoing
from mailflow.mail.decode import addresses
from mailflow.mail.scrub import scrub_text
from mailflow.store import audit
from mailflow.store.sqlite import Database


def text_columns(msg: Outgoing) -> dict[str, str | None]:
    """The columns the archive indexes, read from what was composed, so that queueing
    a message never parses it back (that cost as much as composing it)."""
    sender = addresses([msg["From"] or ""])
    # A reply address in the text (the reporter's conduct+<token>) is not for searchers.
    reply = quotes.split(scrub_text(msg.text))
    return {"from_name": sender[0][0] if sender else "",
            "from_addr": sender[0][1] if sender else None,
            "to_addrs": json.dumps([a for _, a in addresses([msg["To"] or ""])]),
            "cc_addrs": json.dumps([a for _, a in addresses([msg["Cc"] or ""])]),
            "new_text": reply.new_text, "quoted_text": reply.quoted_text}


def enqueue(
    db: Database,
    msg: Outgoing,
    *,
    kind: str,
    rcpts: Iterable[str],
    envelope_from: str = "",
    case_id: str | None = None,
    searchable: bool = True,
) -> int:
    """Queue a message for delivery; call inside the caller's transaction.

    ``searchable``: the archive indexes it (its text columns are kept); False for a
    copy of a message that is indexed already."""
    rcpts = sorted({r.lower() for r in rcpts})
    if not rcpts:
        raise ValueError("a message needs at least one recipient")
    now = timestamps.stamp()
    columns = {"case_id": case_id, "kind": kind, "created_at": now,
               "message_id": (msg["Message-ID"] or "").strip("<>"), "envelope_from": envelope_from,
               "subject": msg["Subject"], "raw": msg.raw,
               "attach_spool_id": msg.attach_spool_id, "raw_tail": msg.tail,
               **(text_columns(msg) if searchable else {})}
    cur = db.execute(f"INSERT INTO outbound ({', '.join(columns)}) VALUES "
                     f"({', '.join('?' * len(columns))})", list(columns.values()))
    out_id = store.inserted(cur)
    # Acknowledgements go first: a reporter is waiting for one.
    priority = 0 if kind == "ack" else 1
    db.conn.executemany(
        "INSERT INTO outbound_rcpt (outbound_id, rcpt, next_attempt_at, priority) "
        "VALUES (?, ?, ?, ?)", [(out_id, r, now, priority) for r in rcpts],
    )
    audit.append(db, "mailflow", f"queued {kind}", case_id, outbound=out_id, rcpts=len(rcpts))
    return out_id


def next_due(db: Database) -> float | None:
    """Seconds until the next queued recipient is due (0 if one is due now)."""
    row = db.execute("SELECT min(next_attempt_at) FROM outbound_rcpt WHERE state='queued'"
                     ).fetchone()
    if not row or row[0] is None:
        return None
    return max((timestamps.parse(row[0]) - timestamps.now()).total_seconds(), 0.0)


def retry_now(db: Database) -> int:
    """Make every deferred recipient due now (``mailflow queue flush``); how many."""
    with store.transaction(db):
        return db.execute("UPDATE outbound_rcpt SET next_attempt_at = ? WHERE state = 'queued' "
                          "AND next_attempt_at > ?",
                          [timestamps.stamp(), timestamps.stamp()]).rowcount
